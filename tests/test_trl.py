"""vbon.trl: the vBoN reward log F_hat(r) as a TRL reward function (and a 2-step RLOOTrainer run)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from vbon.objectives import beta_from_n
from vbon.reference import ReferenceCache, import_authors_jsonl
from vbon.trl import VBoNRewardFunction, vbon_reward_function

# Reference rewards per prompt, in draw order (p2 has ties).
REF = {
    "p0": [3.0, 0.0, 2.0, 1.0],
    "p1": [40.0, 10.0, 30.0, 20.0],
    "p2": [5.0, -1.0, 5.0, -1.0],
}


class NumberReward:
    """A deterministic stand-in for a reward model: a completion "1.5" has reward 1.5."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def __call__(self, prompts, completions, eos=None):
        self.calls.append({"prompts": list(prompts), "completions": list(completions), "eos": eos})
        return np.array([float(c) for c in completions])


@pytest.fixture
def cache(tmp_path: Path) -> ReferenceCache:
    path = tmp_path / "ref.jsonl"
    with path.open("w") as f:
        for prompt, rewards in REF.items():
            f.write(json.dumps({"prompt": prompt, "responses": [""] * 4, "rewards": rewards}))
            f.write("\n")
    return import_authors_jsonl(path, tmp_path / "caches", task="toy")


def test_returns_log_f_hat_of_known_rewards(cache: ReferenceCache) -> None:
    rm = NumberReward()
    reward = vbon_reward_function(cache, rm, n=8)
    prompts = ["p0", "p0", "p0", "p0", "p1", "p2", "p2"]
    completions = ["1.5", "-7", "3", "99", "25", "5", "-1"]
    out = reward(prompts=prompts, completions=completions)

    assert isinstance(out, list) and all(type(x) is float for x in out)
    rows = np.array([0, 0, 0, 0, 1, 2, 2])
    expected = cache.cdf().log_cdf(np.array([float(c) for c in completions]), rows)
    np.testing.assert_array_equal(out, expected)
    # F_hat(t) = (1 + #{r_m < t}) / (M + 1), strict: a tie does not count as below.
    by_hand = np.log(np.array([3, 1, 4, 5, 3, 3, 1]) / 5)
    np.testing.assert_allclose(out, by_hand, rtol=0, atol=1e-12)
    assert min(out) >= -math.log(5) and max(out) <= 0.0
    assert rm.calls[0]["prompts"] == prompts and rm.calls[0]["eos"] is None


def test_beta_max_m_smoothing_and_config(cache: ReferenceCache) -> None:
    reward = vbon_reward_function(cache.directory, NumberReward(), n=5, max_m=2)
    assert isinstance(reward, VBoNRewardFunction)
    assert reward.beta == beta_from_n(5) == 0.25
    # max_m keeps the first draws: p0 -> [3, 0], so 1.5 is above one of two.
    assert reward(["p0"], ["1.5"]) == pytest.approx([math.log(2 / 3)])
    np.testing.assert_array_equal(
        reward(["p1", "p2"], ["35", "0"]),
        cache.cdf(2).log_cdf(np.array([35.0, 0.0]), np.array([1, 2])),
    )
    none = vbon_reward_function(cache, NumberReward(), n=5, smoothing="none")
    assert none(["p0", "p0"], ["1.5", "-7"]) == [math.log(2 / 4), -math.inf]

    kwargs = reward.rloo_config_kwargs()
    assert kwargs == {"beta": 0.25, "normalize_advantages": False}  # imported: no sampling
    ds = reward.dataset()
    assert ds["prompt"] == ["p0", "p1", "p2"] and ds["prompt_index"] == [0, 1, 2]
    with pytest.raises(ValueError, match="n: must be an integer >= 2"):
        vbon_reward_function(cache, NumberReward(), n=1)
    with pytest.raises(ValueError, match="smoothing"):
        vbon_reward_function(cache, NumberReward(), n=4, smoothing="laplace")


def test_unknown_prompt_is_a_clear_error(cache: ReferenceCache) -> None:
    reward = vbon_reward_function(cache, NumberReward(), n=4)
    long_prompt = "an unseen review prefix " * 20
    with pytest.raises(ValueError, match="is not in the reference cache") as err:
        reward(["p0", long_prompt], ["1", "2"])
    message = str(err.value)
    assert "an unseen review prefix" in message and "..." in message
    assert long_prompt not in message and len(message) < 400


def test_prompt_index_column(cache: ReferenceCache) -> None:
    rm = NumberReward()
    reward = vbon_reward_function(cache, rm, n=4)
    by_text = reward(["p2", "p1"], ["5", "25"])
    assert reward(["p2", "p1"], ["5", "25"], prompt_index=[2, 1], trainer_state=None) == by_text
    with pytest.raises(ValueError, match="row 0 of the reference cache is 'p0'"):
        reward(["p2"], ["5"], prompt_index=[0])
    with pytest.raises(ValueError, match="outside the reference cache's 3 prompts"):
        reward(["p2"], ["5"], prompt_index=[3])


def test_conversational_format(cache: ReferenceCache) -> None:
    rm = NumberReward()
    reward = vbon_reward_function(cache, rm, n=4)
    prompts = [[{"role": "user", "content": "p0"}], [{"role": "user", "content": "p2"}]]
    completions = [
        [{"role": "assistant", "content": "1.5"}],
        [{"role": "assistant", "content": "5"}],
    ]
    out = reward(prompts, completions, prompt_index=[0, 2])
    assert out == reward(["p0", "p2"], ["1.5", "5"])
    assert rm.calls[0]["prompts"] == ["p0", "p2"]  # the reward model sees the cache's prompts
    assert rm.calls[0]["completions"] == ["1.5", "5"]
    with pytest.raises(ValueError, match="prompt_index column"):
        reward(prompts, completions)


def test_eos_flags_and_eos_score(cache: ReferenceCache) -> None:
    ids = [[7, 8, 0], [7, 8, 9]]  # the first stopped at EOS (id 0), the second ran out
    rm = NumberReward()
    reward = vbon_reward_function(cache, rm, n=4, eos_token_id=0, eos_score=-20.0)
    out = reward(["p0", "p0"], ["1.5", "1.5"], completion_ids=ids)
    # log F_hat comes from log1p(count) - log1p(M): equal to log(3/5) up to rounding only.
    assert out == pytest.approx([math.log(3 / 5), -20.0], rel=1e-12, abs=1e-15)
    np.testing.assert_array_equal(rm.calls[0]["eos"], [True, False])
    with pytest.raises(ValueError, match="completion_ids: required with eos_score"):
        reward(["p0"], ["1.5"])
    with pytest.raises(ValueError, match="eos_token_id: required with eos_score"):
        vbon_reward_function(cache, rm, n=4, eos_score=-20.0)

    # Without eos_token_id, a reward that takes completion_ids (vbon's RewardModel, Task.reward_fn)
    # gets TRL's ids and decides EOS with its own tokenizer.
    seen = {}

    def reward_with_ids(prompts, completions, eos=None, completion_ids=None):
        seen.update(eos=eos, completion_ids=completion_ids)
        return np.zeros(len(completions))

    vbon_reward_function(cache, reward_with_ids, n=4)(["p1", "p1"], ["a", "b"], completion_ids=ids)
    assert seen == {"eos": None, "completion_ids": ids}


def test_bad_reward_outputs(cache: ReferenceCache) -> None:
    short = vbon_reward_function(cache, lambda p, c, eos=None: np.zeros(1), n=4)
    with pytest.raises(ValueError, match="reward_fn: returned shape"):
        short(["p0", "p1"], ["1", "2"])
    nan = vbon_reward_function(cache, lambda p, c, eos=None: np.full(len(c), np.nan), n=4)
    with pytest.raises(ValueError, match="NaN"):
        nan(["p0"], ["1"])


# -- TRL itself (optional extra) ---------------------------------------------------------------------


def _tiny_lm(path: Path):
    """A 1-layer GPT-2 over a 6-word vocabulary, saved like a hub model (TRL reloads it as the
    reference model from its path)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    words = {"<eos>": 0, "x": 1, "y": 2, "z": 3, "w": 4, "v": 5}
    backend = Tokenizer(models.WordLevel(words, unk_token="<eos>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.decoder = decoders.WordPiece(prefix="##")  # joins tokens with spaces
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<eos>", pad_token="<eos>")
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(words), n_embd=16, n_layer=1, n_head=2, n_positions=64,
        bos_token_id=0, eos_token_id=0, pad_token_id=0,
    )  # fmt: skip
    GPT2LMHeadModel(config).save_pretrained(path)
    tok.save_pretrained(path)
    model = GPT2LMHeadModel.from_pretrained(path).eval()
    return model, tok


@pytest.mark.slow
def test_two_rloo_steps_with_trl(tmp_path: Path) -> None:
    trl = pytest.importorskip("trl")
    from vbon.reference import ReferenceSpec, build_reference_cache

    model_dir = tmp_path / "tiny-lm"
    model, tok = _tiny_lm(model_dir)
    calls: list[dict] = []

    def count_y(prompts, completions, eos=None):
        calls.append({"prompts": list(prompts), "eos": eos})
        return np.array([c.split().count("y") - 0.1 * len(c.split()) for c in completions])

    prompts = ["x y", "z w x", "w", "y z", "v x w", "x x"]
    spec = ReferenceSpec(
        task="toy", split="train", policy=str(model_dir), reward="count-y", m=8,
        max_new_tokens=6, temperature=1.0, top_k=0, top_p=1.0, seed=1, shard_size=8,
    )  # fmt: skip
    cache = build_reference_cache(
        prompts, spec, model=model, tokenizer=tok, reward_fn=count_y,
        root=tmp_path / "ref", progress=False,
    )  # fmt: skip
    calls.clear()

    reward = vbon_reward_function(cache, count_y, n=5, eos_token_id=tok.eos_token_id)
    kwargs = reward.rloo_config_kwargs()
    assert kwargs["beta"] == 0.25 and kwargs["max_completion_length"] == 6
    args = trl.RLOOConfig(
        output_dir=str(tmp_path / "out"), max_steps=2, per_device_train_batch_size=4,
        num_generations=2, learning_rate=1e-3, logging_steps=1, save_strategy="no",
        report_to="none", use_cpu=True, bf16=False, disable_tqdm=True, seed=0,
        **kwargs,
    )  # fmt: skip
    trainer = trl.RLOOTrainer(
        model=str(model_dir), reward_funcs=reward, args=args,
        train_dataset=reward.dataset(), processing_class=tok,
    )  # fmt: skip
    trainer.train()

    assert trainer.state.global_step == 2
    assert len(calls) >= 2 and all(set(c["prompts"]) <= set(prompts) for c in calls)
    assert all(np.asarray(c["eos"]).dtype == bool for c in calls)  # from TRL's completion_ids
    logs = [h for h in trainer.state.log_history if "rewards/vbon_log_F/mean" in h]
    assert len(logs) == 2
    for h in logs:
        assert -math.log(9) - 1e-6 <= h["rewards/vbon_log_F/mean"] <= 1e-6
        assert "kl" in h  # beta > 0: the reference model and the KL-in-reward are active
