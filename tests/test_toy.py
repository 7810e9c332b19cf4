"""The toy worlds: the grammar and posts, the build (cache, atomicity, determinism) and the quality bars."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from vbon.models import load_causal_lm, load_reward_model
from vbon.toy import (
    SENTIMENT,
    TLDR,
    SentimentSettings,
    TldrSettings,
    build_world,
    world_dir,
    world_key,
)
from vbon.toy import posts as P
from vbon.toy import reviews as R
from vbon.toy.build import sample

TINY_SENTIMENT = SentimentSettings(
    n_train=300,
    n_test=60,
    n_short=40,
    vocab_size=500,
    lm_steps=3,
    lm_batch=8,
    clf_steps=3,
    clf_batch=8,
    n_quality=8,
)
TINY_TLDR = TldrSettings(
    n_sft=120, n_groups=30, n_valid=10, n_test=20, n_pairs_test=10, vocab_size=500, sft_steps=3, sft_batch=8,
    rm_steps=3, rm_batch=2, n_quality=8, quality_m=4,
)  # fmt: skip


# -- the review grammar --------------------------------------------------------------------------


def test_generated_reviews_parse_with_their_labels() -> None:
    texts, labels = R.generate_reviews(1500, seed=3)
    parses = [R.parse_review(t) for t in texts]
    assert all(p.ok for p in parses)
    assert [p.label for p in parses] == labels.tolist()
    assert 0.4 < labels.mean() < 0.6
    assert 2 <= np.mean([p.n_sentences for p in parses]) <= 4


def test_grammar_is_deterministic_and_wide() -> None:
    assert R.generate_reviews(50, seed=1)[0] == R.generate_reviews(50, seed=1)[0]
    assert R.generate_reviews(50, seed=1)[0] != R.generate_reviews(50, seed=2)[0]
    assert len(R.vocabulary()) > 1000
    assert not set(R.POS_ADJ) & set(R.NEG_ADJ)


@pytest.mark.parametrize(
    ("sentence", "polarity"),
    [
        ("The acting was great.", 1),
        ("The acting was not great.", -1),
        ("The acting was not very awful.", 1),
        ("The plot was awful, but the cast was great.", 1),
        ("The plot was great, but the cast was not great.", -1),
        ("I did not hate this film.", 1),
        ("I would not recommend it to anyone.", -1),
        ("I give it two out of ten.", -1),
        ("I give it five out of ten.", 0),
        ("It was directed by Mary Smith.", 0),
        ("What an awful film!", -1),
    ],
)
def test_sentence_polarity(sentence: str, polarity: int) -> None:
    assert R.parse_sentence(sentence) == polarity


def test_parser_rejects_text_outside_the_language() -> None:
    assert not R.parse_review("The acting was banana.").ok
    assert not R.parse_review("The acting was great").ok  # no full stop
    assert not R.parse_review("").ok
    assert R.parse_review("The acting was great. What a dull film!").label is None  # no net opinion
    with pytest.raises(ValueError, match="polarity"):
        R.sentence(np.random.default_rng(0), 2)


# -- the TL;DR posts ---------------------------------------------------------------------------------


def test_posts_have_the_tldr_format_and_state_their_facts() -> None:
    for post in P.generate_posts(50, seed=0):
        prompt = post.prompt()
        assert prompt.startswith(f"SUBREDDIT: r/{post.subreddit}\nTITLE: ")
        assert "\nPOST: " in prompt and prompt.endswith("\nTL;DR:")
        body = prompt.split("\nPOST: ")[1]
        assert all(
            getattr(post, f) in body.lower() for f in ("person", "duration", "issue", "when")
        )
        assert post.ask[1:] in body


def test_the_judge_reads_what_the_writer_wrote() -> None:
    """Every grammar summary's judgement agrees with the writer's intent: an invented detail
    is read as one, and a summary without one reads clean (2000 summaries of each writer)."""
    rng = np.random.default_rng(5)
    for style in (P.SFT_STYLE, P.PAIR_STYLE):
        for post in P.generate_posts(2000, seed=9):
            s = P.write_summary(post, rng, style)
            assert (s.kind == "wrong") == (s.wrong > 0), (s.kind, s.text, post.prompt())
            assert s.text.startswith(" ") and "\n" not in s.text


def test_summaries_vary_and_sometimes_ramble() -> None:
    rng = np.random.default_rng(0)
    posts = P.generate_posts(100, seed=2)
    distinct = [len({P.write_summary(p, rng).text for _ in range(32)}) / 32 for p in posts]
    words = [P.write_summary(p, rng).judgement.words for p in posts for _ in range(10)]
    assert np.mean(distinct) > 0.9
    assert 0.05 < np.mean(np.array(words) > 40) < 0.3  # long enough to run past 50 tokens


def test_preferences_follow_coverage_faithfulness_length_and_eos() -> None:
    rng = np.random.default_rng(0)
    post = P.generate_posts(1, seed=0)[0]
    best = P.summarize(post, "best", rng)
    assert best.judgement.correct == frozenset(P.FACTS) and best.wrong == 0
    score = {
        k: P.preference_score(P.summarize(post, k, rng), True) for k in ("best", "vague", "wrong")
    }
    assert score["best"] == sum(P.FACT_WEIGHT.values())
    assert score["best"] > score["wrong"] and score["best"] > score["vague"]
    assert score["wrong"] < score["best"] - P.WRONG_COST + 1e-9  # the person is swapped: -1 - 2
    rambled = best.text + " " + " ".join(P.RAMBLE)
    assert P.preference_score(rambled, True, post) < score["best"]
    assert P.preference_score(best, False) == score["best"] - P.NO_EOS_COST
    with pytest.raises(ValueError, match="kind"):
        P.summarize(post, "excellent", rng)
    with pytest.raises(ValueError, match="post"):
        P.preference_score(best.text, True)
    pairs = P.preference_pairs(P.generate_posts(200, seed=1), seed=2)
    gaps = [
        P.preference_score(x.chosen, x.chosen_eos) - P.preference_score(x.rejected, x.rejected_eos)
        for x in pairs
    ]
    assert min(gaps) >= 1.0
    assert [x.chosen.text for x in pairs] == [
        x.chosen.text for x in P.preference_pairs(P.generate_posts(200, 1), 2)
    ]
    groups = P.preference_groups(P.generate_posts(50, seed=3), seed=4)
    assert all(len(g.summaries) == 6 for g in groups)
    assert any(g.summaries[-1].kind == "wrong" for g in groups)  # the minimal pairs


def test_pair_accuracy_counts_pairs_a_fact_apart_among_finished_summaries() -> None:
    from vbon.toy.quality import pair_accuracy

    hidden = np.array([[3.5, 2.5, 2.0, 3.4]])
    ended = np.array([[True, True, True, False]])
    # Pairs at least 1 apart among the finished: (0, 1), (0, 2); the RM orders the first right.
    rewards = np.array([[1.0, 0.5, 2.0, 9.0]])
    assert pair_accuracy(rewards, hidden, ended) == 0.5
    assert np.isnan(pair_accuracy(rewards, hidden, np.zeros_like(ended)))


# -- the build: cache, atomicity, determinism --------------------------------------------------------


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path / "model.safetensors"))


def test_tiny_build_layout_noop_and_determinism(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a 3-step build misses the quality bars, by design
        a = build_world(SENTIMENT, settings=TINY_SENTIMENT, cache=tmp_path / "a", verbose=False)
        b = build_world(SENTIMENT, settings=TINY_SENTIMENT, cache=tmp_path / "b", verbose=False)
        t = build_world(TLDR, settings=TINY_TLDR, cache=tmp_path / "a", verbose=False)
    assert a.path == world_dir(SENTIMENT, TINY_SENTIMENT, tmp_path / "a")
    for world in (a, t):
        for sub in ("policy", "reward"):
            assert (world.path / sub / "model.safetensors").is_file()
            assert (world.path / sub / "tokenizer.json").is_file()
        assert json.loads((world.path / "quality.json").read_text())["metrics"]
        assert json.loads((world.path / "settings.json").read_text())["world"] == world.name
    assert list(a.load_data()["train"].features) == ["text", "label"]
    assert list(t.load_data()) == ["train", "valid", "test"]
    assert list(t.load_data()["test"].features) == ["prompt", "label"]
    # Same seed, same weights; nothing left behind but the worlds and their locks.
    for sub in ("policy", "reward"):
        ta, tb = _tensors(a.path / sub), _tensors(b.path / sub)
        assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)
    assert sorted(
        p.name for p in (tmp_path / "a" / "toy").iterdir() if not p.name.endswith(".lock")
    ) == sorted([a.path.name, t.path.name])
    # A second call is a no-op.
    stamp = (a.path / "quality.json").stat().st_mtime_ns
    start = time.perf_counter()
    again = build_world(SENTIMENT, settings=TINY_SENTIMENT, cache=tmp_path / "a", verbose=False)
    assert time.perf_counter() - start < 1.0
    assert again.path == a.path and (a.path / "quality.json").stat().st_mtime_ns == stamp


def test_settings_change_the_key_and_bad_names_are_refused() -> None:
    assert world_key(SENTIMENT) != world_key(SENTIMENT, SentimentSettings(seed=1))
    assert world_key(SENTIMENT) != world_key(TLDR)
    with pytest.raises(ValueError, match="world"):
        world_key("toy-chess")
    with pytest.raises(ValueError, match="settings"):
        world_key(SENTIMENT, TINY_TLDR)


@pytest.mark.slow
def test_concurrent_builds_build_once(tmp_path: Path) -> None:
    code = (
        "import warnings, sys; warnings.simplefilter('ignore');"
        "from vbon.toy import SentimentSettings, build_world;"
        f"w = build_world('{SENTIMENT}', settings={TINY_SENTIMENT!r}, cache=sys.argv[1], verbose=False);"
        "print(w.path)"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True, env=env
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=300)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert outs[0] == outs[1]
    entries = [p.name for p in (tmp_path / "toy").iterdir() if not p.name.endswith(".lock")]
    assert entries == [Path(outs[0]).name]


# -- the default worlds meet the quality bars -------------------------------------------------------


def test_sentiment_world_quality(toy_worlds) -> None:
    world = toy_worlds[SENTIMENT]
    m = world.quality["metrics"]
    print(json.dumps(m, indent=1))
    assert m["classifier_heldout_accuracy"] >= 0.95
    assert 0.2 <= m["reference_positive_fraction"] <= 0.8
    assert m["sample_parse_rate"] >= 0.6
    assert m["tokenizer_vocab_size"] >= 2000
    assert all(world.quality["passed"].values())

    # Re-measured here on fresh data, through the public loaders.
    clf = load_reward_model(world.reward_path, device="cpu", output="prob", batch_size=128)
    texts, labels = R.generate_reviews(1000, seed=12345)
    assert np.mean((clf([""] * len(texts), texts) > 0.5) == labels.astype(bool)) >= 0.95
    lm, tok = load_causal_lm(world.policy_path, device="cpu")
    prompts = [t[: t.index(" ", 12)] for t in texts[:128]]
    completions, _ = sample(lm, tok, prompts, max_new_tokens=40, temperature=1.0, seed=7)
    assert 0.2 <= np.mean(clf(prompts, completions) > 0.5) <= 0.8
    free, ended = sample(lm, tok, [tok.bos_token] * 96, max_new_tokens=96, temperature=1.0, seed=8)
    assert ended.mean() > 0.9
    assert np.mean([R.parse_review(t).ok for t in free]) >= 0.6


def test_tldr_world_quality(toy_worlds) -> None:
    """The world behaves like summarisation (issue 17): re-measured here on posts the build did
    not use, through the public loaders, at the task's sampling settings."""
    from vbon.toy.build import TLDR_EOS_PENALTY
    from vbon.toy.quality import reward_model_checks, summary_statistics

    world = toy_worlds[TLDR]
    m = world.quality["metrics"]
    print(json.dumps(m, indent=1))
    assert all(world.quality["passed"].values())

    rm = load_reward_model(world.reward_path, device="cpu", batch_size=64)
    lm, tok = load_causal_lm(world.policy_path, device="cpu")
    posts = P.generate_posts(32, seed=999)
    stats = summary_statistics(lm, tok, rm, posts, m=32, seed=3, eos_penalty=TLDR_EOS_PENALTY)
    # Bars of vbon.toy.build.TLDR_BARS; measured on the build's 32 x 32 samples: distinct 0.96,
    # RM-score mode 0.06, EOS 0.90, sample pair accuracy 0.88. Each bar is several SEs away
    # (over 32 prompts: distinct SE ~0.01, mode ~0.01, EOS ~0.01, pair accuracy ~0.02).
    assert stats["sft_distinct_share"] >= 0.75
    assert stats["sft_mode_reward_share"] <= 0.10
    assert 0.70 <= stats["sft_eos_rate"] <= 0.95
    assert stats["rm_min_finished_minus_penalty"] > 0
    assert stats["rm_sample_pair_accuracy"] >= 0.8

    checks = reward_model_checks(rm, P.generate_posts(200, seed=998)).set_index("change")
    print(checks)
    # Coverage, brevity and invented claims: measured 1.0 on 200 posts; a swapped person, issue
    # or ask of another post: 0.66-0.86, each interval above 1/2.
    assert (checks.loc[checks["dimension"] != "faithfulness", "accuracy"] >= 0.95).all()
    assert checks.loc["claim invented", "accuracy"] >= 0.95
    assert (checks["low"] > 0.5).all()
    pairs = P.preference_pairs(P.generate_posts(400, seed=999), seed=998)
    prompts = [x.post.prompt() for x in pairs]
    r_c = rm(prompts, [x.chosen.text for x in pairs], eos=[x.chosen_eos for x in pairs])
    r_r = rm(prompts, [x.rejected.text for x in pairs], eos=[x.rejected_eos for x in pairs])
    assert np.mean(r_c > r_r) >= 0.85  # measured 0.90 on the build's 1000 pairs (SE 0.015 here)
