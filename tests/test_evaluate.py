"""Metrics (vbon.evaluate) and sampling/log-probs (vbon.generation) on an enumerable world.

A tiny GPT-2 over a 3-token vocabulary generating exactly 3 tokens has 27 possible completions,
so pi_ref, pi_theta, KL, win rates and BoN can all be computed exactly and compared with the
Monte Carlo estimators.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from vbon import bon
from vbon.evaluate import (
    bon_evaluate,
    evaluate_policy,
    frontier_counts,
    kl_estimates,
    mean_se,
    pareto_frontier,
    win_rate,
    win_rates,
)
from vbon.generation import Completions, completion_logprobs, draw_tokens, sample

VOCAB = 3
LENGTH = 3


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    words = {"a": 0, "b": 1, "c": 2}
    backend = Tokenizer(models.WordLevel(words, unk_token="a"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    # No EOS: every completion has exactly LENGTH tokens. The pad id only fills attention-masked
    # prompt positions, so it may coincide with a real token here.
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="a")


def tiny_lm(seed: int) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=VOCAB,
        n_embd=16,
        n_layer=1,
        n_head=2,
        n_positions=16,
        bos_token_id=None,
        eos_token_id=None,
    )
    model = GPT2LMHeadModel(config).eval()
    with torch.no_grad():  # sharpen the random init so the two models differ visibly
        model.lm_head.weight.mul_(8.0)
    model.generation_config.eos_token_id = None
    return model


@pytest.fixture(scope="module")
def world():
    tok = tiny_tokenizer()
    ref, pol = tiny_lm(0), tiny_lm(1)
    prompt = "b c"
    seqs = torch.tensor(list(itertools.product(range(VOCAB), repeat=LENGTH)))
    prompt_ids = torch.tensor([[1, 2]]).repeat(len(seqs), 1)
    every = Completions(
        prompt_index=np.zeros(len(seqs), dtype=np.int64),
        prompt_ids=prompt_ids,
        prompt_mask=torch.ones_like(prompt_ids),
        token_ids=seqs,
        mask=torch.ones_like(seqs, dtype=torch.bool),
        ended=np.zeros(len(seqs), dtype=bool),
        texts=[""] * len(seqs),
    )
    p_ref = completion_logprobs(ref, every).exp().double().numpy()
    p_pol = completion_logprobs(pol, every).exp().double().numpy()
    reward = (seqs * torch.tensor([9, 3, 1])).sum(1).double().numpy()  # injective
    return {
        "tok": tok,
        "ref": ref,
        "pol": pol,
        "prompt": prompt,
        "p_ref": p_ref,
        "p_pol": p_pol,
        "reward": reward,
        "seqs": seqs,
    }


def reward_of(world, completions: Completions) -> np.ndarray:
    return (completions.token_ids * torch.tensor([9, 3, 1])).sum(1).double().numpy()


def test_enumeration_is_a_distribution(world) -> None:
    assert world["p_ref"].sum() == pytest.approx(1.0, abs=1e-5)
    assert world["p_pol"].sum() == pytest.approx(1.0, abs=1e-5)


def test_sampling_matches_model_probabilities(world) -> None:
    c = sample(
        world["pol"],
        world["tok"],
        [world["prompt"]],
        3000,
        max_new_tokens=LENGTH,
        seed=0,
        batch_size=512,
    )
    assert c.token_ids.shape == (3000, LENGTH) and bool(c.mask.all())
    index = (c.token_ids * torch.tensor([9, 3, 1])).sum(1).numpy()
    freq = np.bincount(index, minlength=27) / 3000
    p = world["p_pol"] / world["p_pol"].sum()
    se = np.sqrt(p * (1 - p) / 3000)
    assert np.all(np.abs(freq - p) < 5 * se + 1e-3)


def test_draw_tokens_frequencies_and_zero_probability_tokens() -> None:
    """draw_tokens (one uniform per row against the float64 CDF) samples softmax(logits / T):
    frequencies within 5 standard errors, tokens of probability 0 never drawn."""
    torch.manual_seed(0)
    logits = torch.tensor([[2.0, -float("inf"), 0.0, 1.0, -float("inf")]]).repeat(40_000, 1)
    for temperature in (1.0, 0.5):
        p = torch.softmax(logits[0] / temperature, -1).double().numpy()
        got = draw_tokens(logits, temperature).numpy()
        freq = np.bincount(got, minlength=5) / len(got)
        se = np.sqrt(p * (1 - p) / len(got))
        assert freq[1] == 0 and freq[4] == 0
        assert np.all(np.abs(freq - p) < 5 * se + 1e-12), (freq, p)


def test_padded_batch_samples_each_prompt_from_its_own_distribution(world) -> None:
    """Prompts of different lengths share a left-padded batch: the shorter prompt's samples
    must follow pi(. | its prompt), which only holds if the decoding loop's position ids count
    from the first real token (its attention mask must skip the padding too, an error this tiny
    world is too weak to show)."""
    seqs = world["seqs"]
    model = tiny_lm(2)
    with torch.no_grad():  # positions matter: a shifted prompt moves the distribution (TV 0.3)
        model.transformer.wpe.weight.mul_(20.0)
    short = Completions(
        prompt_index=np.zeros(len(seqs), dtype=np.int64),
        prompt_ids=torch.tensor([[2]]).repeat(len(seqs), 1),  # "c"
        prompt_mask=torch.ones(len(seqs), 1, dtype=torch.long),
        token_ids=seqs,
        mask=torch.ones_like(seqs, dtype=torch.bool),
        ended=np.zeros(len(seqs), dtype=bool),
        texts=[""] * len(seqs),
    )
    temperature = 1.5
    p = completion_logprobs(model, short, temperature=temperature).exp().double().numpy()
    c = sample(
        model,
        world["tok"],
        ["c", "b c a b a"],
        3000,
        max_new_tokens=LENGTH,
        temperature=temperature,
        seed=3,
        batch_size=6000,  # one batch holds both prompts, the short one left-padded
    )
    rows = c.prompt_index == 0
    index = (c.token_ids[torch.from_numpy(rows)] * torch.tensor([9, 3, 1])).sum(1).numpy()
    freq = np.bincount(index, minlength=27) / rows.sum()
    se = np.sqrt(p * (1 - p) / rows.sum())
    assert np.all(np.abs(freq - p / p.sum()) < 5 * se + 1e-3)


def test_kl_estimators_agree_with_exact(world) -> None:
    p, q = world["p_pol"], world["p_ref"]
    exact = float(np.sum(p * np.log(p / q)))
    c = sample(
        world["pol"],
        world["tok"],
        [world["prompt"]],
        4000,
        max_new_tokens=LENGTH,
        seed=1,
        batch_size=1000,
    )
    lp = completion_logprobs(world["pol"], c, per_token=True)
    lr = completion_logprobs(world["ref"], c, per_token=True)
    est = kl_estimates(lp, lr, c.mask)
    # Samples are independent here (one prompt), so the plain standard error applies.
    for name in ("k1", "k3"):
        flat = mean_se(
            (lp - lr).sum(1) if name == "k1" else (torch.expm1(lr - lp) + (lp - lr)).sum(1)
        )
        assert abs(est[name].mean - exact) < 4 * flat.se, (name, est[name], exact)
    print(f"exact KL {exact:.4f}; k1 {est['k1'].mean:.4f}; k3 {est['k3'].mean:.4f}")


def test_win_rate_agrees_with_exact(world) -> None:
    r, p, q = world["reward"], world["p_pol"], world["p_ref"]
    exact = float(
        np.sum(
            p[:, None] * q[None, :] * ((r[:, None] > r[None, :]) + 0.5 * (r[:, None] == r[None, :]))
        )
    )
    ref = sample(
        world["ref"],
        world["tok"],
        [world["prompt"]],
        3000,
        max_new_tokens=LENGTH,
        seed=2,
        batch_size=1000,
    )
    pol = sample(
        world["pol"],
        world["tok"],
        [world["prompt"]],
        3000,
        max_new_tokens=LENGTH,
        seed=3,
        batch_size=1000,
    )
    ref_rewards = reward_of(world, ref)[None, :]
    est = win_rate(reward_of(world, pol)[None, :], ref_rewards)
    per_sample = win_rates(reward_of(world, pol)[None, :], ref_rewards)[0]
    assert abs(est.mean - exact) < 4 * per_sample.std() / np.sqrt(3000) + 0.01


def test_bon_evaluation_agrees_with_exact(world) -> None:
    q, r = world["p_ref"] / world["p_ref"].sum(), world["reward"]
    pool = sample(
        world["ref"],
        world["tok"],
        [world["prompt"]] * 40,
        16,
        max_new_tokens=LENGTH,
        seed=4,
        batch_size=640,
    )
    cache = sample(
        world["ref"],
        world["tok"],
        [world["prompt"]] * 40,
        200,
        max_new_tokens=LENGTH,
        seed=5,
        batch_size=2000,
    )
    pool_r = reward_of(world, pool).reshape(40, 16)
    pool_lp = completion_logprobs(world["ref"], pool).double().numpy().reshape(40, 16)
    table = bon_evaluate(
        pool_r, pool_lp, reward_of(world, cache).reshape(40, 200), [1, 2, 4, 16], n_resamples=16
    )
    for _, row in table.iterrows():
        n = int(row["N"])
        exact_kl = bon.kl_bon_ref(q, r, n)
        exact_win = bon.bon_win_rate(q, r, n)
        exact_reward = float(np.sum(bon.bon_pmf(q, r, n) * r))
        print(f"N={n}: KL estimate {row['kl']:.3f} +- {row['kl_se']:.3f}, exact {exact_kl:.3f}")
        assert row["kl"] == pytest.approx(exact_kl, abs=0.1 + 4 * row["kl_se"]), (
            n,
            row["kl"],
            exact_kl,
        )
        assert row["win_rate"] == pytest.approx(exact_win, abs=0.03 + 4 * row["win_rate_se"])
        assert row["reward"] == pytest.approx(exact_reward, abs=4 * row["reward_se"] + 0.3)
        assert row["kl_bound"] == pytest.approx(bon.kl_bon_bound(n))
    # (Not asserted monotone in N: here the top sequence has most of pi_ref's mass, so the exact
    # KL saturates after N = 4 and the estimates of N = 4 and 16 differ by noise only.)
    assert table.loc[0, "kl"] == pytest.approx(0.0, abs=1e-12)  # a logsumexp of log-gammas


def test_sampling_settings_are_respected_and_validated(world) -> None:
    c = sample(world["ref"], world["tok"], ["b", "b c a"], 2, max_new_tokens=2, seed=0)
    assert c.token_ids.shape == (4, 2)
    assert c.prompt_index.tolist() == [0, 0, 1, 1]
    g1 = sample(world["ref"], world["tok"], ["b c"], 2, max_new_tokens=3, greedy=True)
    assert torch.equal(g1.token_ids[0], g1.token_ids[1])
    s1 = sample(world["ref"], world["tok"], ["b c"], 4, max_new_tokens=3, seed=7)
    s2 = sample(world["ref"], world["tok"], ["b c"], 4, max_new_tokens=3, seed=7)
    assert torch.equal(s1.token_ids, s2.token_ids)
    for kwargs, name in [
        ({"temperature": 0.0}, "temperature"),
        ({"top_k": -1}, "top_k"),
        ({"top_p": 0.0}, "top_p"),
        ({"max_new_tokens": 0}, "max_new_tokens"),
    ]:
        args = {"max_new_tokens": 3} | kwargs
        with pytest.raises(ValueError, match=name):
            sample(world["ref"], world["tok"], ["b"], 1, **args)


def test_eos_handling_and_text_stripping() -> None:
    words = {"<eos>": 0, "x": 1, "y": 2}
    backend = Tokenizer(models.WordLevel(words, unk_token="<eos>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<eos>", pad_token="<eos>")
    torch.manual_seed(0)
    model = GPT2LMHeadModel(
        GPT2Config(
            vocab_size=3,
            n_embd=8,
            n_layer=1,
            n_head=2,
            n_positions=32,
            bos_token_id=0,
            eos_token_id=0,
        )
    ).eval()
    with torch.no_grad():
        model.lm_head.weight.zero_()
        model.lm_head.weight[0] = 0.05  # EOS a bit more likely, so some samples stop early
    c = sample(model, tok, ["x y"], 200, max_new_tokens=6, seed=0, batch_size=200)
    lengths = c.lengths
    assert c.ended.any() and (~c.ended).any()
    assert np.all(lengths[c.ended] <= 6) and np.all(lengths[~c.ended] == 6)
    for i in np.flatnonzero(c.ended)[:20]:
        ids = c.token_ids[i][c.mask[i]].tolist()
        assert ids[-1] == 0 and 0 not in ids[:-1]  # the mask stops at the first EOS
        assert c.texts[i] == " ".join({1: "x", 2: "y"}[t] for t in ids[:-1])


def test_logprobs_equal_manual_computation_with_padding(world) -> None:
    c = sample(
        world["pol"], world["tok"], ["b", "b c a b"], 3, max_new_tokens=3, seed=0, temperature=0.7
    )
    got = completion_logprobs(world["pol"], c, temperature=0.7, batch_size=2)
    for i in range(len(c)):
        p = c.prompt_ids[i][c.prompt_mask[i].bool()].tolist()
        y = c.token_ids[i][c.mask[i]].tolist()
        with torch.no_grad():
            logits = world["pol"](torch.tensor([p + y])).logits[0] / 0.7
        lo = torch.log_softmax(logits, -1)
        manual = sum(lo[len(p) - 1 + t, y[t]].item() for t in range(len(y)))
        assert got[i].item() == pytest.approx(manual, abs=1e-4)


def test_pareto_frontier_and_counts() -> None:
    df = pd.DataFrame(
        {
            "method": ["vbon", "vbon", "kl_rl", "kl_rl", "bon_sft", "kl_rl"],
            "kl": [1.0, 2.0, 1.5, 0.5, 3.0, 1.0],
            "reward": [0.5, 0.9, 0.6, 0.1, 0.8, 0.4],
        }
    )
    mask = pareto_frontier(df["kl"], df["reward"])
    assert mask.tolist() == [True, True, True, True, False, False]
    counts = frontier_counts(df)
    assert counts.to_dict() == {"vbon": 2, "kl_rl": 2, "bon_sft": 0}
    # Exact duplicates count once.
    assert pareto_frontier([1.0, 1.0], [2.0, 2.0]).tolist() == [True, False]


def test_win_rate_variants_and_errors() -> None:
    ref = np.array([[1.0, 2.0, 3.0]])
    assert win_rates(np.array([[2.0]]), ref).tolist() == [[0.5]]  # beats 1, ties 2: (1 + .5)/3
    assert win_rates(np.array([[1.0]]), ref, method="first").tolist() == [[0.0]]  # tie loses
    assert win_rates(np.array([[1.5]]), ref, method="first").tolist() == [[1.0]]
    with pytest.raises(ValueError, match="method"):
        win_rates(np.array([[1.0]]), ref, method="mean")
    with pytest.raises(ValueError, match="n_grid"):
        bon_evaluate(np.zeros((1, 4)), np.zeros((1, 4)), ref, [8])


def test_evaluate_policy_end_to_end(world) -> None:
    p, q, r = world["p_pol"], world["p_ref"], world["reward"]
    exact_kl = float(np.sum(p * np.log(p / q)))
    exact_reward = float(np.sum(p * r) / p.sum())
    ref = sample(
        world["ref"],
        world["tok"],
        [world["prompt"]] * 50,
        100,
        max_new_tokens=LENGTH,
        seed=8,
        batch_size=1000,
    )
    cache = reward_of(world, ref).reshape(50, 100)

    def reward_fn(prompts, completions, eos=None):
        ids = [["abc".index(ch) for ch in text.replace(" ", "")] for text in completions]
        return np.array([np.dot(x, [9, 3, 1]) for x in ids], dtype=float)

    # A tokenizer whose pad token is not a model token, so decoded texts keep every "a"; all
    # prompts are equal, so no padding id ever reaches the model.
    words = {"a": 0, "b": 1, "c": 2, "<pad>": 3}
    backend = Tokenizer(models.WordLevel(words, unk_token="<pad>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>")
    out = evaluate_policy(
        world["pol"],
        world["ref"],
        tok,
        [world["prompt"]] * 50,
        reward_fn,
        cache,
        k=20,
        max_new_tokens=LENGTH,
        batch_size=500,
    )
    assert out.rewards.shape == (50, 20)
    assert out.kl_k3.mean == pytest.approx(exact_kl, abs=5 * out.kl_k3.se + 0.01)
    assert out.reward.mean == pytest.approx(exact_reward, abs=5 * out.reward.se + 0.05)
    assert set(out.as_dict()) >= {"reward", "win_rate", "kl", "kl_se", "eos_rate", "length"}


def test_task_level_bon_and_policy_evaluation(toy_worlds, tmp_path, monkeypatch):
    """The analysis notebooks' calls, on toy-sentiment: BoN from a fresh pool, a saved policy."""
    import torch

    from vbon import paths
    from vbon.evaluate import evaluate_bon_on_task, evaluate_policy_on_task
    from vbon.tasks import get_task

    monkeypatch.setattr(paths, "runs_dir", lambda profile: tmp_path / profile)
    task = get_task("imdb", "smoke", max_new_tokens=8)
    threads = torch.get_num_threads()
    table, pool = evaluate_bon_on_task(
        task, [1, 2, 4], prompts=4, m=8, pool_size=6, n_resamples=3, progress=False
    )
    assert torch.get_num_threads() == threads  # the smoke profile's one thread is restored
    assert table["N"].tolist() == [1, 2, 4]
    # (No KL <= bound check: with M = 8, F_hat saturates at 1 for samples that beat every
    # reference sample, which biases the KL estimate of BoN up when N is not << M.)
    assert table["win_rate"].is_monotonic_increasing and (table["kl"] >= 0).all()
    assert pool.rewards.shape == pool.ref_logprobs.shape == (4, 6) and len(pool.texts[0]) == 6
    best = pool.best_of(4)
    np.testing.assert_array_equal(best, np.argmax(pool.rewards[:, :4], axis=1))
    with pytest.raises(ValueError, match="n: 7 exceeds"):
        pool.best_of(7)
    # N = 1 is pi_ref: KL 0, and its reward is the pool's mean up to the resampling.
    assert table["kl"].iloc[0] == pytest.approx(0.0, abs=1e-12)

    # pi_ref evaluated as a "trained" policy: KL 0 (same model), win rate near 1/2.
    policy = evaluate_policy_on_task(task.policy_id, task, prompts=4, m=8, k=4, progress=False)
    assert policy.kl_k3.mean == pytest.approx(0.0, abs=1e-6)
    assert 0.2 < policy.win_rate.mean < 0.8 and len(policy.texts) == 16


def test_shared_prefill_and_compaction_draw_what_a_plain_loop_draws(toy_worlds) -> None:
    """The sampler shares one prefill among a prompt's samples and drops ended rows from the
    batch; the draws stay those of a plain loop (same uniforms, same rows), on the toy TL;DR
    policy whose summaries end at many different lengths."""
    from vbon import generation
    from vbon.models import load_causal_lm

    model, tok = load_causal_lm(toy_worlds["toy-tldr"].policy_path, device="cpu")
    data = toy_worlds["toy-tldr"].load_data()["test"]["prompt"][:3]
    rows = [tok(p, add_special_tokens=False)["input_ids"] for p in data for _ in range(8)]
    ids, att = generation._left_padded(rows, tok.pad_token_id)
    kw = {
        "max_new_tokens": 50,
        "temperature": 0.7,
        "eos": [tok.eos_token_id],
        "pad": tok.pad_token_id,
    }
    torch.manual_seed(3)
    fast, logprobs = generation._decode(model, ids, att, **kw)
    torch.manual_seed(3)
    plain = generation.plain_decode(model, ids, att, **kw)
    ended_at = (fast == tok.eos_token_id).int().argmax(1)
    assert len(set(ended_at.tolist())) > 5  # rows end at many lengths: compaction happened
    assert torch.equal(fast, plain)
    # The log-probabilities summed while decoding are those of a separate forward pass.
    out = generation.sample(model, tok, data, 8, max_new_tokens=50, temperature=0.7, seed=3)
    again = generation.completion_logprobs(model, out, temperature=0.7)
    np.testing.assert_allclose(out.logprobs.numpy(), again.double().numpy(), atol=1e-3)
