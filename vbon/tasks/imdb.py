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

from vbon._checks import check_int
from vbon.models import load_tokenizer
from vbon.tasks.base import (
    TOY_PROFILES,
    SamplingConfig,
    Task,
    check_profile,
    check_source,
    load_dataset_dict,
    pick,
    resolve_revisions,
    split_overrides,
)

NAME = "imdb"
HUB_DATASET = "stanfordnlp/imdb"
HUB_POLICY = "lvwerra/gpt2-imdb"
HUB_REWARD = "lvwerra/distilbert-imdb"

# The commit each hub source of the paper profile is loaded at (override with
# policy_revision=, reward_revision=, dataset_revision=). Each is the head of its repository's
# main branch as last seen in public records (the hub itself was unreachable when they were
# pinned):
# - lvwerra/gpt2-imdb f1bfd81 "upload flax model" (2021-05-23): the parent of the unmerged
#   safetensors PR (refs/pr/1, 2023-03-16) in huggingface.co/lvwerra/gpt2-imdb/commits/refs%2Fpr%2F1;
# - lvwerra/distilbert-imdb 0fc02cd "Update README.md" (2023-01-25): the parent of the unmerged
#   librarian-bot PR in huggingface.co/lvwerra/distilbert-imdb/commits/588e728..., and the
#   snapshot directory of a third-party Hugging Face cache;
# - stanfordnlp/imdb e628166: the commit main resolved to in the spiceai/cookbook
#   huggingface/README.md walkthrough (and in a test there asserting it is still main).
HUB_REVISIONS = {
    HUB_POLICY: "f1bfd819c6bee6c18fa5f95bfe88d9198839a435",
    HUB_REWARD: "0fc02cd68445b599a9cb2da2368050e7fb31d29a",
    HUB_DATASET: "e6281661ce1c48d982bc483cf8a173c1bbeb5d31",
}

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


def _sources(profile: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """Each role's hub id, path or object: the hub's on the paper profile; on smoke only the
    ones given (the toy world's own have no revision)."""
    if profile != "paper":
        given = {"policy": "policy_id", "reward": "reward_id", "dataset": "dataset"}
        out = {role: overrides[key] for role, key in given.items() if key in overrides}
        if "reference_id" in overrides or "policy" in out:
            out["reference"] = overrides.get("reference_id", out.get("policy"))
        return out
    policy = overrides.get("policy_id", HUB_POLICY)
    return {
        "policy": policy,
        "reference": overrides.get("reference_id", policy),
        "reward": overrides.get("reward_id", HUB_REWARD),
        "dataset": overrides.get("dataset", HUB_DATASET),
    }


def revisions(profile: str = "smoke", **overrides: Any) -> dict[str, str]:
    """The hub revision of each role that ``make_task(profile, **overrides)`` would load, as
    ``{"<role>_revision": sha}`` (what a paper-profile ``TrainConfig`` records)."""
    out = resolve_revisions(profile, _sources(profile, overrides), overrides, HUB_REVISIONS)
    return {f"{role}_revision": rev for role, rev in out.items()}


def make_task(profile: str = "smoke", **overrides: Any) -> Task:
    """The IMDB task for ``profile`` (``smoke``: toy-sentiment world; ``paper``: hub ids).

    Every override is checked (naming it) before a world, tokenizer or dataset is loaded.
    """
    check_profile(profile)
    split_overrides(overrides, OVERRIDES, NAME)
    o = dict(overrides)
    seed = check_int(o.pop("seed", 0), "seed", minimum=0)
    for name in ("policy_id", "reference_id", "reward_id"):
        if name in o:
            o[name] = check_source(o[name], name)
    sampling = SamplingConfig(
        max_new_tokens=o.pop("max_new_tokens", 40),
        temperature=o.pop("temperature", 1.0),
        top_k=o.pop("top_k", 0),
        top_p=o.pop("top_p", 1.0),
    )
    output = o.pop("output", "logit")
    if output not in ("logit", "prob"):
        raise ValueError(
            f"output: must be 'logit' (the authors' code) or 'prob' (the paper's text), got {output!r}"
        )
    lo = check_int(o.pop("min_prompt_tokens", 2), "min_prompt_tokens", minimum=1)
    hi = check_int(o.pop("max_prompt_tokens", 8), "max_prompt_tokens", minimum=1)
    if lo > hi:
        raise ValueError(f"min_prompt_tokens: {lo} exceeds max_prompt_tokens = {hi}")
    n_train = check_int(o.pop("n_train", 5000), "n_train", minimum=1, allow_none=True)
    n_test = check_int(o.pop("n_test", 512), "n_test", minimum=1, allow_none=True)
    pins = resolve_revisions(profile, _sources(profile, overrides), overrides, HUB_REVISIONS)
    for role in ("policy", "reference", "reward", "dataset"):
        o.pop(f"{role}_revision", None)
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

    ds, source = load_dataset_dict(
        default_source if user_dataset is None else user_dataset,
        columns=("text", "label"),
        splits=("train", "test"),
        revision=pins.get("dataset"),
    )
    tok = load_tokenizer(policy_id, revision=pins.get("policy"))
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
        revisions=pins,
    )
