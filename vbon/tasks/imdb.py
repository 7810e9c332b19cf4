"""IMDB sentiment control (paper section 5): continue a review prefix; reward = POSITIVE logit.

- paper: prompts from ``stanfordnlp/imdb`` (5000 from train, 512 from test, a random prefix of
  2..8 policy tokens each), policy/reference ``lvwerra/gpt2-imdb``, reward
  ``lvwerra/distilbert-imdb``.
- smoke: the same construction on the toy-sentiment world's corpus and models.

Generation: 40 new tokens, temperature 1, top_k 0, top_p 1. The classifier scores the whole text,
prompt + completion, as the authors' code and TRL's sentiment example do.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from vbon.models import load_tokenizer
from vbon.tasks.base import (
    TOY_PROFILES,
    SamplingConfig,
    Task,
    check_profile,
    load_dataset_dict,
    pick,
    split_overrides,
)

NAME = "imdb"
HUB_DATASET = "stanfordnlp/imdb"
HUB_POLICY = "lvwerra/gpt2-imdb"
HUB_REWARD = "lvwerra/distilbert-imdb"

OVERRIDES = (
    "policy_id",
    "reference_id",
    "reward_id",
    "dataset",
    "n_train",
    "n_test",
    "min_prompt_tokens",
    "max_prompt_tokens",
    "seed",
    "max_new_tokens",
    "temperature",
    "top_k",
    "top_p",
    "output",
    "cache",
)


def prefix_prompts(
    texts: Sequence[str],
    tokenizer: Any,
    n: int | None,
    *,
    seed: int | Sequence[int],
    min_tokens: int = 2,
    max_tokens: int = 8,
    param: str = "n",
) -> list[str]:
    """``n`` prompts: a random prefix of ``min_tokens..max_tokens`` (inclusive) policy tokens of
    ``n`` distinct random texts. Deterministic in ``seed``; ``n=None`` uses every text.
    ``param`` names ``n`` in error messages."""
    if not 1 <= min_tokens <= max_tokens:
        raise ValueError(f"need 1 <= min_tokens <= max_tokens, got {min_tokens} and {max_tokens}")
    rng = np.random.default_rng(seed)
    idx = pick(n, len(texts), rng, param)
    lengths = rng.integers(min_tokens, max_tokens + 1, size=len(idx))
    # IMDB reviews carry HTML line breaks; a prompt should not start with markup fragments.
    chosen = [" ".join(texts[int(i)].replace("<br />", " ").split()) for i in idx]
    ids = tokenizer(chosen, add_special_tokens=False, truncation=True, max_length=max_tokens)[
        "input_ids"
    ]
    return [
        tokenizer.decode(x[: int(k)], skip_special_tokens=True, clean_up_tokenization_spaces=False)
        for x, k in zip(ids, lengths, strict=True)
    ]


def make_task(profile: str = "smoke", **overrides: Any) -> Task:
    """The IMDB task for ``profile`` (``smoke``: toy-sentiment world; ``paper``: hub ids)."""
    check_profile(profile)
    split_overrides(overrides, OVERRIDES, NAME)
    o = dict(overrides)
    seed = int(o.pop("seed", 0))
    user_dataset = o.pop("dataset", None)
    if profile in TOY_PROFILES:
        from vbon.toy import SENTIMENT, build_world

        world = build_world(SENTIMENT, cache=o.pop("cache", None))
        policy_id, reward_id = str(world.policy_path), str(world.reward_path)
        default_source, default_id = str(world.data_path), f"{SENTIMENT}/{world.path.name}"
    else:
        o.pop("cache", None)
        policy_id, reward_id = HUB_POLICY, HUB_REWARD
        default_source = default_id = HUB_DATASET
    policy_id = str(o.pop("policy_id", policy_id))
    reward_id = str(o.pop("reward_id", reward_id))
    reference_id = str(o.pop("reference_id", policy_id))

    sampling = SamplingConfig(
        max_new_tokens=o.pop("max_new_tokens", 40),
        temperature=o.pop("temperature", 1.0),
        top_k=o.pop("top_k", 0),
        top_p=o.pop("top_p", 1.0),
    )
    output = o.pop("output", "logit")
    if output not in ("logit", "prob"):
        raise ValueError(
            f"output must be 'logit' (the authors' code) or 'prob' (the paper's text), got {output!r}"
        )
    lo, hi = int(o.pop("min_prompt_tokens", 2)), int(o.pop("max_prompt_tokens", 8))
    if not 1 <= lo <= hi:
        raise ValueError(f"need 1 <= min_prompt_tokens <= max_prompt_tokens, got {lo} and {hi}")
    ds, source = load_dataset_dict(
        default_source if user_dataset is None else user_dataset,
        columns=("text", "label"),
        splits=("train", "test"),
    )
    tok = load_tokenizer(policy_id)
    n_train, n_test = o.pop("n_train", 5000), o.pop("n_test", 512)
    common = {"min_tokens": lo, "max_tokens": hi}
    train = prefix_prompts(
        ds["train"]["text"], tok, n_train, seed=(seed, 0), param="n_train", **common
    )
    test = prefix_prompts(ds["test"]["text"], tok, n_test, seed=(seed, 1), param="n_test", **common)
    return Task(
        name=NAME,
        profile=profile,
        policy_id=policy_id,
        reward_id=reward_id,
        reference_id=reference_id,
        dataset_id=default_id if user_dataset is None else source,
        train_prompts=train,
        test_prompts=test,
        sampling=sampling,
        reward_kwargs={
            "kind": "classifier",
            "label": "POSITIVE",
            "output": output,
            "include_prompt": True,
        },
        seed=seed,
    )
