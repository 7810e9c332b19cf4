"""Reddit TL;DR summarization (paper section 6): continue ``...\\nTL;DR:``; reward = RM score.

- paper: prompts from ``CarperAI/openai_summarize_tldr`` (columns prompt, label; splits train,
  valid, test), Pythia SFT policy and reward model of Huang et al. (2.8B by default; the 1B and
  410M releases for one-GPU runs via ``variant=`` or explicit ``policy_id=`` / ``reward_id=``).
- smoke: the toy-tldr world's posts and models.

Generation: 50 new tokens, temperature 0.7, top_k 0, top_p 1. A completion that did not end with
EOS gets ``eos_penalty`` (default -1, the authors' PPO value) instead of its RM score; over-long
posts are cut at a word boundary so that the ``TL;DR:`` cue survives.
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

NAME = "tldr"
HUB_DATASET = "CarperAI/openai_summarize_tldr"
CUE = "\nTL;DR:"
VARIANTS = {
    "2.8b": (
        "cleanrl/EleutherAI_pythia-2.8b-deduped__sft__tldr",
        "cleanrl/EleutherAI_pythia-2.8b-deduped__reward__tldr",
    ),
    "1b": (
        "cleanrl/EleutherAI_pythia-1b-deduped__sft__tldr",
        "cleanrl/EleutherAI_pythia-1b-deduped__reward__tldr",
    ),
    "410m": ("mnoukhov/pythia410m-sft-tldr", "mnoukhov/pythia410m-rm-tldr6.9b"),
}

OVERRIDES = (
    "policy_id",
    "reference_id",
    "reward_id",
    "variant",
    "dataset",
    "n_train",
    "n_test",
    "max_prompt_tokens",
    "seed",
    "max_new_tokens",
    "temperature",
    "top_k",
    "top_p",
    "eos_penalty",
    "cache",
)


def truncate_prompt(prompt: str, tokenizer: Any, max_tokens: int) -> str:
    """``prompt`` cut to at most ``max_tokens`` tokens by shortening the post, keeping ``TL;DR:``.

    The post is cut at a word boundary (no half words) and the ``\\nTL;DR:`` suffix re-attached.
    """

    def n_tokens(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    if n_tokens(prompt) <= max_tokens:
        return prompt
    cut = prompt.rfind(CUE)
    if cut < 0:
        raise ValueError(f"prompt does not end with {CUE!r}: {prompt[-60:]!r}")
    head, suffix = prompt[:cut], prompt[cut:]
    budget = max_tokens - n_tokens(suffix)
    if budget < 1:
        raise ValueError(f"max_prompt_tokens={max_tokens} leaves no room for the post")
    ids = tokenizer(head, add_special_tokens=False)["input_ids"][:budget]
    head = tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
    # Drop the last (possibly split) word, and keep dropping while re-tokenisation overshoots.
    while True:
        head = head[: max(0, max(head.rfind(" "), head.rfind("\n")))].rstrip()
        if n_tokens(head + suffix) <= max_tokens or not head:
            return head + suffix


def make_prompts(
    prompts: Sequence[str],
    tokenizer: Any,
    n: int | None,
    *,
    seed: int | Sequence[int],
    max_tokens: int,
    param: str = "n",
) -> list[str]:
    """``n`` distinct random prompts (all, shuffled, if None), each truncated to ``max_tokens``.
    ``param`` names ``n`` in error messages."""
    if max_tokens < 8:
        raise ValueError(f"max_prompt_tokens must be >= 8, got {max_tokens}")
    idx = pick(n, len(prompts), np.random.default_rng(seed), param)
    return [truncate_prompt(prompts[int(i)], tokenizer, max_tokens) for i in idx]


def make_task(profile: str = "smoke", **overrides: Any) -> Task:
    """The TL;DR task for ``profile`` (``smoke``: toy-tldr world; ``paper``: hub ids)."""
    check_profile(profile)
    split_overrides(overrides, OVERRIDES, NAME)
    o = dict(overrides)
    seed = int(o.pop("seed", 0))
    user_dataset = o.pop("dataset", None)
    variant = o.pop("variant", None)
    if profile in TOY_PROFILES:
        if variant is not None:
            raise ValueError("variant selects the paper's hub models; it needs profile='paper'")
        from vbon.toy import TLDR, build_world

        world = build_world(TLDR, cache=o.pop("cache", None))
        policy_id, reward_id = str(world.policy_path), str(world.reward_path)
        default_source, default_id = str(world.data_path), f"{TLDR}/{world.path.name}"
        max_prompt = 256
    else:
        o.pop("cache", None)
        variant = "2.8b" if variant is None else variant
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {sorted(VARIANTS)}, got {variant!r}")
        policy_id, reward_id = VARIANTS[variant]
        default_source = default_id = HUB_DATASET
        max_prompt = 512
    policy_id = str(o.pop("policy_id", policy_id))
    reward_id = str(o.pop("reward_id", reward_id))
    reference_id = str(o.pop("reference_id", policy_id))
    sampling = SamplingConfig(
        max_new_tokens=o.pop("max_new_tokens", 50),
        temperature=o.pop("temperature", 0.7),
        top_k=o.pop("top_k", 0),
        top_p=o.pop("top_p", 1.0),
        eos_penalty=o.pop("eos_penalty", -1.0),
    )
    ds, source = load_dataset_dict(
        default_source if user_dataset is None else user_dataset,
        columns=("prompt", "label"),
        splits=("train", "valid", "test"),
    )
    tok = load_tokenizer(policy_id)
    max_prompt = int(o.pop("max_prompt_tokens", max_prompt))
    train = make_prompts(
        ds["train"]["prompt"],
        tok,
        o.pop("n_train", None),
        seed=(seed, 0),
        max_tokens=max_prompt,
        param="n_train",
    )
    test = make_prompts(
        ds["test"]["prompt"],
        tok,
        o.pop("n_test", 512),
        seed=(seed, 1),
        max_tokens=max_prompt,
        param="n_test",
    )
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
        reward_kwargs={"kind": "sequence"},
        seed=seed,
    )
