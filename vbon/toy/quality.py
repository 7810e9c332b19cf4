"""What makes the toy-tldr world behave like summarisation, measured.

The build records these in ``quality.json`` (its bars), notebook 05 reports them from the
reference caches with intervals, and the tests assert them:

- ``summary_statistics``: how varied pi_ref's summaries of one post are (distinct texts, the
  most frequent reward's share), how often they end within the token budget, whether the EOS
  penalty lies below every finished summary's reward, and how closely the reward model follows
  the hidden judgement of ``vbon.toy.posts`` on them;
- ``reward_model_checks``: minimal pairs, one per post, that differ in one thing only: a fact
  left out (coverage), sentences added (brevity), a detail invented (faithfulness). The reward
  model should prefer the better summary of each;
- ``world_posts``: the ``Post`` behind each prompt of the world's data, for the judgement.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from vbon.toy import posts as P

__all__ = ["summary_statistics", "pair_accuracy", "reward_model_checks", "world_posts"]


def pair_accuracy(rewards: np.ndarray, hidden: np.ndarray, ended: np.ndarray) -> float:
    """Share of same-prompt pairs of finished summaries whose hidden judgements differ by at
    least 1 (a key fact, or an invented detail) that the rewards order the same way.

    ``rewards``, ``hidden``, ``ended``: (prompts, M) arrays.
    """
    dh = hidden[:, :, None] - hidden[:, None, :]
    dr = rewards[:, :, None] - rewards[:, None, :]
    both = ended[:, :, None] & ended[:, None, :]
    pairs = both & (dh >= 1.0)
    return float((dr[pairs] > 0).mean()) if pairs.any() else float("nan")


def summary_statistics(
    policy: Any,
    tokenizer: Any,
    reward: Callable[..., np.ndarray],
    posts: Sequence[P.Post],
    *,
    m: int = 32,
    seed: int = 0,
    max_new_tokens: int = 50,
    temperature: float = 0.7,
    eos_penalty: float,
) -> dict[str, Any]:
    """The world's statistics on ``m`` samples of ``policy`` per post at the task's settings
    (``reward`` scores finished summaries; the penalty is checked against them)."""
    from scipy.stats import spearmanr

    from vbon.generation import sample

    prompts = [p.prompt() for p in posts]
    out = sample(
        policy,
        tokenizer,
        prompts,
        m,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        seed=seed,
    )
    shape = (len(posts), m)
    texts = np.array(out.texts, dtype=object).reshape(shape)
    ended = np.asarray(out.ended).reshape(shape)
    rewards = reward([prompts[i] for i in out.prompt_index], out.texts, eos=out.ended)
    rewards = np.asarray(rewards, dtype=float).reshape(shape)
    judged = [[P.judge(p, t) for t in row] for p, row in zip(posts, texts, strict=True)]
    hidden = np.array(
        [
            [P.preference_score(t, bool(e), p) for t, e in zip(row, ends, strict=True)]
            for p, row, ends in zip(posts, texts, ended, strict=True)
        ]
    )
    finished = rewards[ended]
    return {
        "sft_distinct_share": float(np.mean([len(set(row)) / m for row in texts])),
        "sft_mode_reward_share": float(
            np.mean([np.unique(r, return_counts=True)[1].max() / m for r in rewards])
        ),
        "sft_eos_rate": float(ended.mean()),
        "sft_mean_words": float(np.mean([len(t.split()) for t in out.texts])),
        "sft_coverage": float(np.mean([j.coverage for row in judged for j in row])),
        "sft_wrong_rate": float(np.mean([j.wrong > 0 for row in judged for j in row])),
        "rm_judge_spearman": float(spearmanr(finished, hidden[ended]).statistic),
        "rm_sample_pair_accuracy": pair_accuracy(rewards, hidden, ended),
        "rm_mean_finished": float(finished.mean()),
        "rm_sd_finished": float(finished.std()),
        "rm_min_finished_minus_penalty": float(finished.min() - eos_penalty),
        "examples": [
            f"{prompts[i][-60:]}{texts[i][0]}  [r = {rewards[i][0]:.2f}]" for i in range(5)
        ],
    }


def _minimal_pairs(post: P.Post, rng: np.random.Generator) -> dict[tuple[str, str], str]:
    """Worse versions of the post's best summary, each by one change: (dimension, change) -> text."""
    best = P.best_summary(post)
    p = post
    return {
        ("coverage", "issue left out"): f" my {p.person} {P._pick(rng, P.VAGUE_ISSUE)}, {p.ask}?",
        ("coverage", "person left out"): f" {P._pick(rng, P.VAGUE_SUBJECT)} {p.issue}, {p.ask}?",
        ("coverage", "ask left out"): f" my {p.person} {p.issue}{P._pick(rng, P.ENDINGS)}",
        ("brevity", "three sentences added"): best.text
        + " "
        + " ".join(P.RAMBLE[i] for i in rng.permutation(len(P.RAMBLE))[:3]),
        ("faithfulness", "claim invented"): best.text.rstrip("?")
        + " "
        + P._pick(rng, P.INVENTED)
        + "?",
        ("faithfulness", "person of another post"): P.corrupt(p, best, rng, "person").text,
        ("faithfulness", "issue of another post"): P.corrupt(p, best, rng, "issue").text,
        ("faithfulness", "ask of another post"): P.corrupt(p, best, rng, "ask").text,
    }


def reward_model_checks(
    reward: Callable[..., np.ndarray], posts: Sequence[P.Post], *, seed: int = 0
) -> pd.DataFrame:
    """For each kind of minimal pair, the share of ``posts`` where ``reward`` scores the best
    summary above its worse version, with a 95% Wilson interval (scipy) over the posts.

    Returns one row per change: dimension, change, accuracy, low, high, posts, and the mean
    reward difference (best minus worse).
    """
    from scipy.stats import binomtest

    rng = np.random.default_rng(seed)
    variants = [_minimal_pairs(p, rng) for p in posts]
    prompts = [p.prompt() for p in posts]
    best = np.asarray(
        reward(prompts, [P.best_summary(p).text for p in posts], eos=[True] * len(posts)),
        dtype=float,
    )
    rows = []
    for key in variants[0]:
        worse = np.asarray(
            reward(prompts, [v[key] for v in variants], eos=[True] * len(posts)), dtype=float
        )
        wins = int((best > worse).sum())
        ci = binomtest(wins, len(posts)).proportion_ci(0.95, method="wilson")
        rows.append(
            {
                "dimension": key[0],
                "change": key[1],
                "accuracy": wins / len(posts),
                "low": ci.low,
                "high": ci.high,
                "posts": len(posts),
                "reward difference": float((best - worse).mean()),
            }
        )
    return pd.DataFrame(rows)


def world_posts(world: Any = None) -> dict[str, P.Post]:
    """The ``Post`` behind every prompt of the toy-tldr world's train, valid and test splits
    (``prompt text -> Post``), regenerated from the world's settings as its build drew them."""
    from vbon.toy.build import TLDR, TldrSettings, build_world

    world = build_world(TLDR, verbose=False) if world is None else world
    import json

    s = TldrSettings(**json.loads((world.path / "settings.json").read_text())["settings"])
    posts = (
        P.generate_posts(s.n_sft, (s.seed, 1))
        + P.generate_posts(s.n_valid, (s.seed, 5))
        + P.generate_posts(s.n_test, (s.seed, 6))
    )
    return {p.prompt(): p for p in posts}
