"""Each option that reproduces a setting of the authors' code changes what it says it changes.

Direct, cheap checks (a parameter set, an optimiser's hyperparameters, the tokens of a prompt or
a target, a loss mask, a score), no training runs; and the defaults of the smoke profile keep
the run identities of cached runs.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from transformers import (
    DistilBertConfig,
    DistilBertForSequenceClassification,
    GPT2Config,
    GPT2LMHeadModel,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    GPTNeoXForSequenceClassification,
    PreTrainedTokenizerFast,
)

from vbon.train.config import TrainConfig

WORDS = [
    "SUBREDDIT: r/advice TITLE: my friend forgot my birthday POST: we have been friends for",
    "years and she did not even text me so I feel sad about it and do not know what to say",
    "the film was good and the acting was great but the plot was dull",
] * 10


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    from vbon.toy.train import EOS, train_bpe

    backend = train_bpe(WORDS, 300, [EOS, "<|pad|>"])
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=EOS,
        eos_token=EOS,
        pad_token="<|pad|>",
        model_max_length=64,
    )


def _gpt2(n_layer: int = 4) -> GPT2LMHeadModel:
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=50, n_positions=32, n_embd=16, n_layer=n_layer, n_head=2)
    return GPT2LMHeadModel(cfg).eval()


def _enum_config(tmp_path, **kw) -> TrainConfig:
    base = dict(
        task="enumerable",
        output_dir=str(tmp_path),
        steps=1,
        lr=1e-3,
        eval_every=0,
        evaluate=False,
        progress=False,
        cpu_threads=1,
    )
    return TrainConfig(**{**base, **kw})


def _paper(**kw) -> TrainConfig:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unpinned hub revisions
        return TrainConfig(profile="paper", **kw)


# -- configuration -------------------------------------------------------------------------------
def test_smoke_run_identities_are_unchanged():
    """Fields added for the authors' options stay out of the identity at their defaults: the
    names (hashes) of runs cached before them are the same."""
    assert TrainConfig().fingerprint() == "cf039165"
    assert TrainConfig(task="enumerable").fingerprint() == "2ba1353d"
    assert TrainConfig(algorithm="ppo").fingerprint() == "f462a566"
    assert TrainConfig(method="bon_sft", n=4).fingerprint() == "75e3e696"
    smoke = TrainConfig()
    assert (smoke.vf_coef, smoke.adam_betas, smoke.adam_eps) == (1.0, (0.9, 0.95), 1e-8)
    assert (smoke.weight_decay, smoke.max_grad_norm) == (1e-6, 1.0)
    # An option away from its default is part of the identity.
    assert TrainConfig(trainable="authors").fingerprint() != smoke.fingerprint()
    assert TrainConfig(adam_eps=1e-5).fingerprint() != smoke.fingerprint()


def test_paper_tldr_ppo_is_the_authors():
    c = _paper(task="tldr")
    assert (c.algorithm, c.lr, c.num_layers_unfrozen, c.vf_coef) == ("ppo", 3e-6, 8, 0.2)
    assert (c.adam_betas, c.adam_eps, c.weight_decay) == ((0.9, 0.999), 1e-5, 0.01)
    assert c.max_grad_norm == 0.0  # no clipping
    # 4 rows per forward, 16 per optimiser step: 128 rollouts x 4 epochs = 32 updates per phase.
    assert (c.batch_prompts, c.mini_batch_size, c.micro_batch_size) == (128, 16, 4)
    assert c.ppo_epochs * c.rows_per_phase // c.mini_batch_size == 32
    # One pass over the 4096 default train prompts; never the whole split by default.
    assert (c.max_train_prompts, c.steps) == (4096, 32)
    assert _paper(task="tldr", max_train_prompts=1000).steps == 8
    every = _paper(task="tldr", max_train_prompts=0)
    assert every.max_train_prompts == 0 and every.steps == 912  # ceil(116722 / 128)
    assert _paper(task="tldr", steps=5).steps == 5  # explicit wins
    # IMDB paper: trlx's sentiment settings, and no clipping either.
    imdb = _paper(task="imdb")
    assert (imdb.vf_coef, imdb.adam_betas, imdb.adam_eps, imdb.weight_decay) == (
        1.0,
        (0.9, 0.95),
        1e-8,
        1e-6,
    )
    assert imdb.max_grad_norm == 0.0 and imdb.steps == 100 and imdb.mini_batch_size == 32


def test_bad_option_values_name_the_field():
    for kw, name in [
        ({"trainable": "all"}, "trainable"),
        ({"sft_recipe": "theirs"}, "sft_recipe"),
        ({"whiten_advantages": "trlx"}, "whiten_advantages"),
        ({"adam_eps": 0.0}, "adam_eps"),
        ({"max_grad_norm": -1.0}, "max_grad_norm"),
        ({"max_train_prompts": -1}, "max_train_prompts"),
    ]:
        with pytest.raises(ValueError, match=name):
            TrainConfig(**kw)


def test_cli_flags_reach_the_new_fields():
    import argparse

    from vbon.train.args import add_train_arguments, config_from_args

    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    flags = [
        "--trainable=authors",
        "--sft-recipe=authors",
        "--adam-eps=1e-5",
        "--max-grad-norm=0",
        "--whiten-advantages=authors",
    ]
    c = config_from_args(parser.parse_args(flags))
    assert (c.trainable, c.sft_recipe, c.adam_eps, c.max_grad_norm) == (
        "authors",
        "authors",
        1e-5,
        0,
    )
    assert c.whiten_advantages == "authors"
    off = config_from_args(parser.parse_args(["--whiten-advantages=false"]))
    assert off.whiten_advantages is False


# -- optimiser and clipping ---------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:Detected call of")  # optimizer.step is replaced
def test_optimiser_gets_the_configured_hyperparameters(tmp_path):
    from vbon.train.loop import _Run

    config = _enum_config(
        tmp_path, adam_betas=(0.9, 0.999), adam_eps=1e-5, weight_decay=0.01, max_grad_norm=0
    )
    run = _Run(config, None)
    group = run.ctx.optimizer.param_groups[0]
    assert (group["betas"], group["eps"], group["weight_decay"]) == ((0.9, 0.999), 1e-5, 0.01)

    # max_grad_norm=0: the gradients reach the optimiser unscaled, and their norm is logged.
    params = [p for p in run.ctx.module.parameters() if p.requires_grad]
    for p in params:
        p.grad = torch.full_like(p, 10.0)
    seen: list[torch.Tensor] = []
    run.ctx.optimizer.step = lambda *a, **k: seen.extend(p.grad.clone() for p in params)
    norm = run.ctx.clip_and_step()
    assert all(torch.all(g == 10.0) for g in seen)
    assert norm == pytest.approx(10.0 * sum(p.numel() for p in params) ** 0.5, rel=1e-4)


@pytest.mark.filterwarnings("ignore:Detected call of")  # optimizer.step is replaced
def test_default_clipping_still_clips(tmp_path):
    from vbon.train.loop import _Run

    run = _Run(_enum_config(tmp_path), None)  # smoke: max_grad_norm 1.0
    params = [p for p in run.ctx.module.parameters() if p.requires_grad]
    for p in params:
        p.grad = torch.full_like(p, 10.0)
    seen: list[torch.Tensor] = []
    run.ctx.optimizer.step = lambda *a, **k: seen.extend(p.grad.clone() for p in params)
    run.ctx.clip_and_step()
    total = torch.sqrt(sum((g.double() ** 2).sum() for g in seen))
    assert float(total) == pytest.approx(1.0, rel=1e-4)


# -- trainable parts and the drifting reference ---------------------------------------------------
def test_authors_freezing_trains_the_position_embedding():
    from vbon.train.modeling import freeze_bottom, trunk_trains

    ours, theirs = _gpt2(), _gpt2()
    assert freeze_bottom(ours, 2) == freeze_bottom(theirs, 2, rule="authors") == 2
    trains = {n for n, p in theirs.named_parameters() if p.requires_grad}
    base = {n for n, p in ours.named_parameters() if p.requires_grad}
    assert trains - base == {"transformer.wpe.weight"}
    assert "transformer.wte.weight" not in trains  # the token embedding (tied head) stays frozen
    assert {"transformer.ln_f.weight", "transformer.h.3.attn.c_attn.weight"} <= trains & base
    assert not any(n.startswith(("transformer.h.0.", "transformer.h.1.")) for n in trains)
    assert trunk_trains(theirs) and not trunk_trains(ours)
    # Pythia-like (rotary positions, untied head): both rules train the same parameters.
    torch.manual_seed(0)
    neox = GPTNeoXConfig(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=3,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
        tie_word_embeddings=False,
    )
    a, b = GPTNeoXForCausalLM(neox), GPTNeoXForCausalLM(neox)
    freeze_bottom(a, 1)
    freeze_bottom(b, 1, rule="authors")
    assert {n for n, p in a.named_parameters() if p.requires_grad} == {
        n for n, p in b.named_parameters() if p.requires_grad
    }
    assert not trunk_trains(b)


def test_shared_trunk_reference_drifts_with_the_policy():
    from vbon.train.modeling import freeze_bottom, shared_reference

    ids = torch.tensor([[1, 2, 3, 4, 5]])
    for share_trunk in (False, True):
        policy = _gpt2()
        freeze_bottom(policy, 2, rule="authors")
        reference = shared_reference(policy, share_trunk=share_trunk)
        assert policy.transformer.wpe.weight.requires_grad  # sharing keeps it trainable
        assert not any(
            p.requires_grad
            for p in reference.parameters()
            if p is not policy.transformer.wpe.weight
        )
        same = reference.transformer.wpe.weight is policy.transformer.wpe.weight
        assert same == share_trunk
        # The top blocks are the reference's own copy in both cases.
        assert (
            reference.transformer.h[3].mlp.c_fc.weight
            is not policy.transformer.h[3].mlp.c_fc.weight
        )
        before = reference(ids).logits.clone()
        with torch.no_grad():
            policy.transformer.wpe.weight.add_(0.5)  # a training step on the trunk
        moved = not torch.allclose(reference(ids).logits, before)
        assert moved == share_trunk


def test_run_with_authors_trainable_uses_a_drifting_reference(tmp_path):
    from vbon.train.loop import _Run

    run = _Run(_enum_config(tmp_path, trainable="authors", num_layers_unfrozen=1), None)
    policy, ref, evaluation = run.ctx.policy, run.ctx.reference, run.eval_reference
    assert policy.transformer.wpe.weight.requires_grad
    assert ref.transformer.wpe.weight is policy.transformer.wpe.weight
    assert evaluation.transformer.wpe.weight is not policy.transformer.wpe.weight
    assert not run.trunk.usable  # the trunk trains: its activations are not replayed
    names = {id(p) for p in run.ctx.optimizer.param_groups[0]["params"]}
    assert id(policy.transformer.wpe.weight) in names
    default = _Run(_enum_config(tmp_path / "d", num_layers_unfrozen=1), None)
    assert not default.ctx.policy.transformer.wpe.weight.requires_grad
    assert default.eval_reference is default.ctx.reference and default.trunk.usable


# -- advantage whitening --------------------------------------------------------------------------
def test_authors_whitening_includes_padding():
    from vbon.train.ppo import masked_whiten, padded_whiten

    torch.manual_seed(0)
    mask = torch.tensor([[1, 1, 1, 0, 0, 0], [1, 1, 0, 0, 0, 0]], dtype=torch.bool)
    x = torch.randn(2, 6) * mask  # GAE leaves 0 past each row's end
    out = padded_whiten(x, mask.float())
    head = x[:, :3]  # up to the longest completion, padding included
    expected = (head - head.mean()) / torch.sqrt(head.var(unbiased=True) + 1e-8)
    torch.testing.assert_close(out[:, :3], expected)
    torch.testing.assert_close(out[:, 3:], x[:, 3:])
    ours = masked_whiten(x, mask)
    assert not torch.allclose(ours[mask], out[mask])  # the padding changes the moments
    assert float(ours[mask].mean()) == pytest.approx(0.0, abs=1e-6)


# -- BoN-SFT recipe -------------------------------------------------------------------------------
def test_authors_sft_recipe_fills_its_settings():
    c = TrainConfig(method="bon_sft", n=4, sft_recipe="authors")
    assert (c.lr, c.batch_prompts, c.steps, c.num_layers_unfrozen) == (5e-6, 8, 625, -1)
    explicit = TrainConfig(method="bon_sft", n=4, sft_recipe="authors", lr=1e-4)
    assert explicit.lr == 1e-4 and explicit.steps == 625
    assert TrainConfig(method="bon_sft", n=4).steps == 30  # vbon's stays the profile's


def test_authors_sft_loss_covers_prompt_and_completion_without_eos(tokenizer):
    from vbon.train.bon_sft import sft_batch

    prompts, targets = ["the film was", "years and"], [" good", " she did not"]
    p_ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    t_ids = tokenizer(targets, add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    ours = sft_batch(tokenizer, prompts, targets, [True, False])
    assert ours[2][0][: len(t_ids[0]) + 1].tolist() == t_ids[0] + [eos]  # EOS is a target
    theirs = sft_batch(tokenizer, prompts, targets, [True, False], whole_text=True)
    prompt_ids, prompt_mask, token_ids, mask = theirs
    for j in range(2):
        whole = p_ids[j] + t_ids[j]
        assert prompt_ids[j, prompt_mask[j].bool()].tolist() == whole[:1]
        assert token_ids[j, mask[j]].tolist() == whole[1:]  # every later token, no EOS
    assert eos not in token_ids[mask].tolist()


def test_authors_sft_trains_with_dropout_on(tmp_path, monkeypatch):
    import vbon.train.bon_sft as bon_sft
    from vbon.train.common import Timer
    from vbon.train.loop import _Run

    modes: list[bool] = []
    original = bon_sft.sequence_logprobs

    def spy(model, *args, **kwargs):
        # Dropout layers' mode (the wrapper module itself is always "training").
        modes.append(any(m.training for m in model.modules() if isinstance(m, torch.nn.Dropout)))
        return original(model, *args, **kwargs)

    monkeypatch.setattr(bon_sft, "sequence_logprobs", spy)
    for recipe in ("vbon", "authors"):
        config = _enum_config(
            tmp_path / recipe, method="bon_sft", n=4, m=64, sft_recipe=recipe, batch_prompts=8
        )
        run = _Run(config, None)
        if recipe == "authors":
            assert all(p.requires_grad for p in run.ctx.policy.parameters())  # all layers
        run.ctx.clip_and_step = lambda: 0.0
        bon_sft.bon_sft_step(run.ctx, 0, Timer(torch.device("cpu")))
        assert modes and all(m == (recipe == "authors") for m in modes)
        assert not run.ctx.policy.training  # back in eval mode for sampling
        modes.clear()


# -- TL;DR reward (EOS) and prompts ---------------------------------------------------------------
@pytest.fixture(scope="module")
def neox_rm(tokenizer) -> GPTNeoXForSequenceClassification:
    torch.manual_seed(2)
    return GPTNeoXForSequenceClassification(
        GPTNeoXConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=64,
            num_labels=1,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
    ).eval()


def test_authors_eos_rule_appends_eos_and_penalises_only_a_cut_eos(tokenizer, neox_rm):
    from vbon.models import SequenceReward

    prompts = ["the film was", "years and she did not even text me so I feel sad about it"]
    completions = [" good and the acting", " and do not know what to say"]
    ended = np.array([False, False])  # neither emitted EOS
    ours = SequenceReward(neox_rm, tokenizer, eos_penalty=-20.0)
    assert np.all(ours(prompts, completions, eos=ended) == -20.0)
    eos = tokenizer.eos_token_id
    ids = tokenizer([p + c for p, c in zip(prompts, completions, strict=True)])["input_ids"]
    limit = len(ids[0]) + 1  # the first fits with its EOS, the second loses its EOS to the cut
    assert len(ids[1]) + 1 > limit
    theirs = SequenceReward(
        neox_rm, tokenizer, eos_penalty=-20.0, eos_rule="authors", authors_max_tokens=limit
    )
    scores = theirs(prompts, completions)  # no EOS flags needed: EOS goes after every sample
    assert scores[0] == pytest.approx(float(ours.score_ids([ids[0] + [eos]])[0]), abs=1e-5)
    assert scores[0] != -20.0 and scores[1] == -20.0


def test_tldr_task_options_are_checked():
    from vbon.tasks import get_task

    with pytest.raises(ValueError, match="eos_rule"):
        get_task("tldr", "smoke", eos_rule="always")
    with pytest.raises(ValueError, match="prompt_style"):
        get_task("tldr", "smoke", prompt_style="theirs")


def test_authors_prompt_format(tokenizer):
    from vbon.tasks.tldr import authors_prompt, make_prompts, truncate_prompt

    post = " ".join(WORDS[:2] * 3)
    prompt = f"  {post}  \nTL;DR:"
    theirs = authors_prompt(prompt, tokenizer, max_tokens=20)
    assert theirs.endswith("\nTL;DR:") and theirs == theirs.strip()
    n = len(tokenizer(theirs, add_special_tokens=False)["input_ids"])
    assert n <= 20
    head = tokenizer(theirs[: -len("\nTL;DR:")], add_special_tokens=False)["input_ids"]
    assert len(head) <= 15  # the post is cut to max_tokens - 5 tokens
    assert theirs != truncate_prompt(prompt, tokenizer, 20)  # ours cuts at a word boundary
    pool = [f"{w}\nTL;DR:" for w in WORDS[:3]]
    in_order = make_prompts(
        pool, tokenizer, 2, seed=0, max_tokens=64, style="authors", in_order=True
    )
    assert in_order == [authors_prompt(p, tokenizer, 64) for p in pool[:2]]  # valid[0:2]


# -- IMDB: p(POS) beside the logit ---------------------------------------------------------------
def test_classifier_gives_p_pos_beside_the_logit_by_label_name(tokenizer):
    from vbon.evaluate import score_with_extras
    from vbon.models import ClassifierReward

    torch.manual_seed(1)
    id2label = {0: "POSITIVE", 1: "NEGATIVE"}  # POSITIVE first: found by name, not position
    model = DistilBertForSequenceClassification(
        DistilBertConfig(
            vocab_size=len(tokenizer),
            max_position_embeddings=64,
            n_layers=1,
            n_heads=2,
            dim=32,
            hidden_dim=64,
            pad_token_id=tokenizer.pad_token_id,
            id2label=id2label,
            label2id={v: k for k, v in id2label.items()},
        )
    ).eval()
    rm = ClassifierReward(model, tokenizer)
    prompts, completions = ["the film was", "the plot"], [" good", " was dull"]
    rewards, extras = rm.score_with_extras(prompts, completions)
    enc = tokenizer(
        [p + c for p, c in zip(prompts, completions, strict=True)],
        padding=True,
        return_tensors="pt",
    )
    with torch.no_grad():
        logits = model(**enc).logits.double()
    np.testing.assert_allclose(rewards, logits[:, 0].numpy(), rtol=1e-5)
    np.testing.assert_allclose(extras["p_pos"], logits.softmax(-1)[:, 0].numpy(), rtol=1e-5)
    np.testing.assert_array_equal(rm(prompts, completions), rewards)  # training reward unchanged
    same, none = score_with_extras(
        lambda p, c, eos=None: np.ones(len(p)), prompts, completions, None
    )
    assert none == {} and np.all(same == 1.0)


def test_evaluations_report_p_pos_with_its_standard_error():
    from vbon.evaluate import MeanSE, PolicyEvaluation, bon_evaluate

    ev = PolicyEvaluation(
        reward=MeanSE(1.0, 0.1, 4),
        win_rate=MeanSE(0.5, 0.1, 4),
        kl_k1=MeanSE(0.0, 0.0, 4),
        kl_k3=MeanSE(0.0, 0.0, 4),
        eos_rate=0.0,
        mean_length=3.0,
        rewards=np.zeros((4, 1)),
        texts=[],
        extras={"p_pos": MeanSE(0.7, 0.05, 4)},
    )
    row = ev.as_dict()
    assert (row["p_pos"], row["p_pos_se"], row["reward"]) == (0.7, 0.05, 1.0)
    rng = np.random.default_rng(0)
    rewards = rng.standard_normal((5, 8))
    table = bon_evaluate(
        rewards,
        np.full((5, 8), -3.0),
        rng.standard_normal((5, 16)),
        [1, 4],
        extras={"p_pos": 1 / (1 + np.exp(-rewards))},
    )
    assert {"p_pos", "p_pos_se"} <= set(table.columns)
    assert table["p_pos"].iloc[1] > table["p_pos"].iloc[0]  # BoN picks by the logit
