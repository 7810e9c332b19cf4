"""Reddit TL;DR summarization (paper section 6): continue ``...\\nTL;DR:``; reward = RM score.

- paper: prompts from ``CarperAI/openai_summarize_tldr`` (columns prompt, label; splits train,
  valid, test), Pythia SFT policy and reward model of Huang et al. (2.8B by default; the 1B and
  410M releases for one-GPU runs via ``variant=`` or explicit ``policy_id=`` / ``reward_id=``).
- smoke: the toy-tldr world's posts and models.

Generation: 50 new tokens, temperature 0.7, top_k 0, top_p 1. A completion that did not end with
EOS gets ``eos_penalty`` instead of its RM score (default: -1, the authors' PPO value, on the
paper profile; -8 on the toy world, below every finished summary's reward there); over-long
posts are cut at a word boundary so that the ``TL;DR:`` cue survives.

The authors' variants, as overrides: ``eos_rule="authors"`` scores as their code (EOS appended
to every completion, the input cut on the right to 600 tokens, ``eos_penalty`` only where that
cut removed the EOS; see ``vbon.models.SequenceReward``), and ``prompt_style="authors"`` builds
prompts as their ``get_prompt_dataset`` (the post cut to max_prompt_tokens - 5 = 545 tokens,
stripped, ``"\nTL;DR:"`` appended, at most 550 tokens) with the test prompts taken in order
from the valid split (their evaluation set is ``valid[0:16]``, so n_test defaults to 16).
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

# The commit each hub source is loaded at on the paper profile (override with
# policy_revision=, reward_revision=, dataset_revision=), from the repositories' public
# commit pages (the hub was unreachable when they were pinned); each is main's head there:
# - cleanrl/...-2.8b-deduped__sft__tldr 85c37f7 "Upload tokenizer" (2024-05-15), the newest of
#   the 3 commits in huggingface.co/cleanrl/EleutherAI_pythia-2.8b-deduped__sft__tldr/commits/main;
# - cleanrl/...-1b-deduped__sft__tldr 9b00ab4 "Upload tokenizer", newest of its 3 commits;
# - cleanrl/...-1b-deduped__reward__tldr 4d47987 "Upload tokenizer" (tree/main, 3 commits);
# - cleanrl/...-6.9b-deduped__reward__tldr 9151d19 (tree/main, 2 commits), the gold RM of 07;
# - cleanrl/...-6.9b-deduped__sft__tldr 34e20b2: the commit main's tokenizer.json was last
#   changed in (the repository's last commit in the cleanrl upload pattern).
# Not pinned (only an abbreviated sha, or none, could be found; they load main with an
# UnpinnedRevisionWarning until pinned): cleanrl/EleutherAI_pythia-2.8b-deduped__reward__tldr
# (main: 52e7e98...), CarperAI/openai_summarize_tldr (main: 4c15ffc...), and the 410m pair.
HUB_REVISIONS = {
    "cleanrl/EleutherAI_pythia-2.8b-deduped__sft__tldr": "85c37f75944607453364b4fb151612e42b1f983a",
    "cleanrl/EleutherAI_pythia-1b-deduped__sft__tldr": "9b00ab40cad2b78fa5a9800a2dc4776b3b06aca7",
    "cleanrl/EleutherAI_pythia-1b-deduped__reward__tldr": "4d4798757717ebbcf4087ed65c97170b4855e77d",
    "cleanrl/EleutherAI_pythia-6.9b-deduped__reward__tldr": "9151d19c95df69f4f720afa7d7d2b9711f6b2673",
    "cleanrl/EleutherAI_pythia-6.9b-deduped__sft__tldr": "34e20b2346678b288f7f85d2cb2bf8b1730d6e8a",
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
    "eos_rule",
    "prompt_style",
    "cache",
)
AUTHORS_PROMPT_TOKENS = 550  # their seq_length 600 minus 50 new tokens


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


def authors_prompt(prompt: str, tokenizer: Any, max_tokens: int = AUTHORS_PROMPT_TOKENS) -> str:
    """``prompt`` as the authors' ``get_prompt_dataset`` formats it: the text before ``TL;DR:``
    cut to ``max_tokens - 5`` tokens, decoded and stripped, ``"\nTL;DR:"`` appended, the whole
    cut to ``max_tokens`` tokens, decoded and stripped."""
    head = tokenizer(prompt.split("TL;DR:")[0], add_special_tokens=False)["input_ids"]
    text = tokenizer.decode(head[: max_tokens - 5], skip_special_tokens=True).strip() + CUE
    ids = tokenizer(text, add_special_tokens=False)["input_ids"][:max_tokens]
    return tokenizer.decode(ids, skip_special_tokens=True).strip()


def make_prompts(
    prompts: Sequence[str],
    tokenizer: Any,
    n: int | None,
    *,
    seed: int | Sequence[int],
    max_tokens: int,
    param: str = "n",
    style: str = "vbon",
    in_order: bool = False,
) -> list[str]:
    """``n`` distinct random prompts (all, shuffled, if None), each truncated to ``max_tokens``.
    ``param`` names ``n`` in error messages. ``style="authors"`` formats them with
    ``authors_prompt``; ``in_order`` takes the first ``n`` instead of a random draw."""
    check_int(max_tokens, "max_prompt_tokens", minimum=8)
    if in_order:
        if n is not None and n > len(prompts):
            raise ValueError(f"{param}: {n} exceeds the {len(prompts)} prompts available")
        idx = np.arange(len(prompts) if n is None else n)
    else:
        idx = pick(n, len(prompts), np.random.default_rng(seed), param)
    if style == "authors":
        return [authors_prompt(prompts[int(i)], tokenizer, max_tokens) for i in idx]
    return [truncate_prompt(prompts[int(i)], tokenizer, max_tokens) for i in idx]


def _default_eos_penalty(profile: str) -> float:
    """r_EOS: the authors' PPO value (-1) on the hub models; on the toy world a value below
    every finished summary's reward, as the authors' -20 was on theirs (its reward model is
    normalised: reference summaries score mean 0, SD 1)."""
    if profile in TOY_PROFILES:
        from vbon.toy.build import TLDR_EOS_PENALTY

        return TLDR_EOS_PENALTY
    return -1.0


def _sources(profile: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """Each role's hub id, path or object: the variant's on the paper profile; on smoke only
    the ones given (the toy world's own have no revision)."""
    if profile != "paper":
        given = {"policy": "policy_id", "reward": "reward_id", "dataset": "dataset"}
        out = {role: overrides[key] for role, key in given.items() if key in overrides}
        if "reference_id" in overrides or "policy" in out:
            out["reference"] = overrides.get("reference_id", out.get("policy"))
        return out
    variant = overrides.get("variant") or "2.8b"
    policy, reward = VARIANTS.get(variant, (None, None))
    policy = overrides.get("policy_id", policy)
    return {
        "policy": policy,
        "reference": overrides.get("reference_id", policy),
        "reward": overrides.get("reward_id", reward),
        "dataset": overrides.get("dataset", HUB_DATASET),
    }


def revisions(profile: str = "smoke", **overrides: Any) -> dict[str, str]:
    """The hub revision of each role that ``make_task(profile, **overrides)`` would load, as
    ``{"<role>_revision": sha}`` (what a paper-profile ``TrainConfig`` records)."""
    out = resolve_revisions(profile, _sources(profile, overrides), overrides, HUB_REVISIONS)
    return {f"{role}_revision": rev for role, rev in out.items()}


def make_task(profile: str = "smoke", **overrides: Any) -> Task:
    """The TL;DR task for ``profile`` (``smoke``: toy-tldr world; ``paper``: hub ids).

    Every override is checked (naming it) before a world, tokenizer or dataset is loaded.
    """
    check_profile(profile)
    split_overrides(overrides, OVERRIDES, NAME)
    o = dict(overrides)
    seed = check_int(o.pop("seed", 0), "seed", minimum=0)
    for name in ("policy_id", "reference_id", "reward_id"):
        if name in o:
            o[name] = check_source(o[name], name)
    variant = o.pop("variant", None)
    if profile in TOY_PROFILES and variant is not None:
        raise ValueError("variant: selects the paper's hub models; it needs profile='paper'")
    if profile == "paper":
        variant = "2.8b" if variant is None else variant
        if variant not in VARIANTS:
            raise ValueError(f"variant: must be one of {sorted(VARIANTS)}, got {variant!r}")
    sampling = SamplingConfig(
        max_new_tokens=o.pop("max_new_tokens", 50),
        temperature=o.pop("temperature", 0.7),
        top_k=o.pop("top_k", 0),
        top_p=o.pop("top_p", 1.0),
        eos_penalty=o.pop("eos_penalty", _default_eos_penalty(profile)),
    )
    eos_rule = o.pop("eos_rule", "penalty")
    if eos_rule not in ("penalty", "authors"):
        raise ValueError(
            f"eos_rule: must be 'penalty' (EOS penalty on completions without EOS) or 'authors' "
            f"(EOS appended to every completion, as the authors' code), got {eos_rule!r}"
        )
    style = o.pop("prompt_style", "vbon")
    if style not in ("vbon", "authors"):
        raise ValueError(f"prompt_style: must be 'vbon' or 'authors', got {style!r}")
    authors = style == "authors"
    default_prompt = AUTHORS_PROMPT_TOKENS if authors else 256 if profile in TOY_PROFILES else 512
    max_prompt = o.pop("max_prompt_tokens", default_prompt)
    check_int(max_prompt, "max_prompt_tokens", minimum=8)
    n_train = check_int(o.pop("n_train", None), "n_train", minimum=1, allow_none=True)
    n_test = check_int(
        o.pop("n_test", 16 if authors else 512), "n_test", minimum=1, allow_none=True
    )
    pins = resolve_revisions(profile, _sources(profile, overrides), overrides, HUB_REVISIONS)
    for role in ("policy", "reference", "reward", "dataset"):
        o.pop(f"{role}_revision", None)
    user_dataset = o.pop("dataset", None)
    if profile in TOY_PROFILES:
        from vbon.toy import TLDR, build_world

        world = build_world(TLDR, cache=o.pop("cache", None))
        policy_id, reward_id = str(world.policy_path), str(world.reward_path)
        default_source, default_id = str(world.data_path), f"{TLDR}/{world.path.name}"
    else:
        o.pop("cache", None)
        policy_id, reward_id = VARIANTS[variant]
        default_source = default_id = HUB_DATASET
    policy_id = str(o.pop("policy_id", policy_id))
    reward_id = str(o.pop("reward_id", reward_id))
    reference_id = str(o.pop("reference_id", policy_id))
    ds, source = load_dataset_dict(
        default_source if user_dataset is None else user_dataset,
        columns=("prompt", "label"),
        splits=("train", "valid", "test"),
        revision=pins.get("dataset"),
    )
    tok = load_tokenizer(policy_id, revision=pins.get("policy"))
    train = make_prompts(
        ds["train"]["prompt"],
        tok,
        n_train,
        seed=(seed, 0),
        max_tokens=max_prompt,
        param="n_train",
        style=style,
    )
    test = make_prompts(
        ds["valid" if authors else "test"]["prompt"],
        tok,
        n_test,
        seed=(seed, 1),
        max_tokens=max_prompt,
        param="n_test",
        style=style,
        in_order=authors,
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
        # eos_rule only when set, so that the default's cache keys stay what they were.
        reward_kwargs={
            "kind": "sequence",
            **({"eos_rule": eos_rule} if eos_rule != "penalty" else {}),
        },
        seed=seed,
        revisions=pins,
    )
