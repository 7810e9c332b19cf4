"""What a run trains on: models, prompts, reward, F_hat and the evaluation references.

``TrainSetup`` gathers the objects the loop needs. ``build_setup(config)`` makes one from a task of
``vbon.tasks`` (and its reference caches), or from the enumerable world; a notebook or test can
also build one by hand and pass it to ``train(config, setup)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vbon.bon import select_best
from vbon.cdf import RewardCDF

__all__ = [
    "Sampling",
    "SftExample",
    "BonbonPair",
    "TrainSetup",
    "bon_sft_examples",
    "bonbon_pairs",
    "build_setup",
    "config_task",
]


@dataclass(frozen=True)
class Sampling:
    """Sampling settings of rollouts, reference samples and evaluation (all the same)."""

    max_new_tokens: int
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0

    def kwargs(self) -> dict[str, Any]:
        return {
            "max_new_tokens": self.max_new_tokens,
            "temperature": self.temperature,
            "top_k": self.top_k,
            "top_p": self.top_p,
        }


@dataclass(frozen=True)
class SftExample:
    """One BoN-SFT target: the best of n reference completions of a train prompt."""

    prompt_index: int
    text: str
    ended: bool
    reward: float


@dataclass(frozen=True)
class BonbonPair:
    """One BoNBoN pair: the best and the worst of n reference completions of a train prompt."""

    best: SftExample
    worst: SftExample

    @property
    def prompt_index(self) -> int:
        return self.best.prompt_index


@dataclass
class TrainSetup:
    """The objects a run uses. ``reference=None``: pi_ref is the initial policy (shared trunk).

    ``reward_fn(prompts, completions, eos=flags) -> np.ndarray`` is the task reward r.
    ``train_cdf`` holds F_hat of each train prompt (row i = ``train_prompts[i]``; vbon only);
    ``test_ref`` the reference rewards of ``test_prompts`` for the win rate. ``extra_eval``, if
    set, maps the (unwrapped) policy to more evaluation metrics (the enumerable world's exact KLs).
    ``reference_texts``, ``reference_ended`` and ``reference_rewards`` (P, M, draw order) are
    the cached reference completions behind ``train_cdf``: vbon_offline's training data.
    """

    policy: Any
    tokenizer: Any
    reward_fn: Callable[..., np.ndarray]
    train_prompts: list[str]
    test_prompts: list[str]
    sampling: Sampling
    test_ref: Any
    reference: Any = None
    train_cdf: RewardCDF | None = None
    sft_examples: list[SftExample] | None = None
    bonbon_pairs: list[BonbonPair] | None = None
    extra_eval: Callable[[Any], dict[str, float]] | None = None
    reference_texts: list[list[str]] | None = None
    reference_ended: np.ndarray | None = None
    reference_rewards: np.ndarray | None = None
    describe: dict[str, Any] = field(default_factory=dict)


def bon_sft_examples(
    texts: Sequence[Sequence[str]],
    rewards: np.ndarray,
    ended: np.ndarray,
    n: int,
    groups: int = 1,
) -> list[SftExample]:
    """BoN targets: the best of each of ``groups`` disjoint groups of ``n`` reference samples.

    Groups take each prompt's samples in draw order (samples 0..n-1, n..2n-1, ...), so every
    target is an independent draw from pi_BoN; ties go to the first maximal sample.
    """
    rewards = np.asarray(rewards, dtype=float)
    if groups < 1:
        raise ValueError(f"sft_groups: must be >= 1, got {groups}")
    if rewards.shape[1] < n * groups:
        raise ValueError(
            f"n: {groups} group(s) of n = {n} need {n * groups} reference samples per prompt, "
            f"the cache has {rewards.shape[1]}"
        )
    out = []
    for g in range(groups):
        best = select_best(rewards[:, g * n : (g + 1) * n]) + g * n
        out += [
            SftExample(int(i), str(texts[i][j]), bool(ended[i][j]), float(rewards[i, j]))
            for i, j in enumerate(best)
        ]
    return out


def bonbon_pairs(
    texts: Sequence[Sequence[str]],
    rewards: np.ndarray,
    ended: np.ndarray,
    n: int,
    groups: int = 1,
) -> list[BonbonPair]:
    """BoNBoN's training pairs: the best and the worst of each of ``groups`` disjoint groups of
    ``n`` reference samples per prompt (draw order, as ``bon_sft_examples``; ties go to the
    first maximal and the first minimal sample). A group whose n rewards are all equal has no
    preference and gives no pair."""
    best = bon_sft_examples(texts, rewards, ended, n, groups)
    worst = bon_sft_examples(texts, -np.asarray(rewards, dtype=float), ended, n, groups)
    return [
        BonbonPair(b, SftExample(w.prompt_index, w.text, w.ended, -w.reward))
        for b, w in zip(best, worst, strict=True)
        if b.reward > -w.reward
    ]


def _sampling_of(config: Any, base: Any) -> Sampling:
    return Sampling(
        max_new_tokens=config.max_new_tokens or base.max_new_tokens,
        temperature=config.temperature or base.temperature,
        top_k=base.top_k if config.top_k is None else config.top_k,
        top_p=config.top_p or base.top_p,
    )


def config_task(config: Any, **changes: Any) -> Any:
    """The task a run trains and evaluates on: its ``task_overrides`` and the sampling settings
    it sets itself (so the reference caches are drawn with the training settings), then
    ``changes`` (e.g. ``temperature=`` to evaluate the run elsewhere)."""
    from vbon.tasks import get_task

    overrides = dict(config.task_overrides)
    for name in ("max_new_tokens", "temperature", "top_k", "top_p"):
        if getattr(config, name) is not None:
            overrides[name] = getattr(config, name)
    return get_task(config.task, config.profile, **{**overrides, **changes})


def build_setup(config: Any, device: Any = None, precision: str | None = None) -> TrainSetup:
    """The ``TrainSetup`` of ``config``'s task: models, prompts, reward, reference caches.

    ``precision`` (``vbon.precision``; None: the one of ``config.mixed_precision`` on
    ``device``) is the numerical policy the reference samples are drawn under: the run's own,
    so that F_hat and the rollouts come from the same one.

    Reference caches (train split for vbon / bon_sft, test split for the win rate) are built on
    first use under runs/<profile>/<task>/reference and reused afterwards (keyed by everything
    that produced them). Sampling overrides in ``config`` go to the task, so the caches are drawn
    with the training settings.
    """
    if config.task == "enumerable":
        from vbon.train.enumerable import EnumerableWorld

        # The world (pi_ref, reward) is fixed by its own seed, not by the training seed.
        return EnumerableWorld(**{"seed": 0, **config.task_overrides}).setup(config)

    from vbon.reference import build_task_reference
    from vbon.tasks import TASKS

    if config.task not in TASKS:
        raise ValueError(
            f"task: expected one of {sorted(TASKS)} or 'enumerable' (other names need a "
            f"TrainSetup passed to train), got {config.task!r}"
        )
    task = config_task(config)
    if precision is None:
        from vbon.precision import sampling_precision

        precision = sampling_precision(config.mixed_precision, device)
    sampling = _sampling_of(config, task.sampling)
    policy, tokenizer = task.load_policy(device=device)
    reference = None
    if task.reference_id != task.policy_id:
        reference, _ = task.load_reference(device=device)
    reward_model = task.load_reward_model(device=device)
    prompts = list(task.train_prompts)
    if config.max_train_prompts:  # None or 0: every train prompt
        prompts = prompts[: config.max_train_prompts]

    train_cdf = None
    sft = None
    offline: dict[str, Any] = {}
    bond_cache = config.method == "bond" and config.anchor_ema == 0
    if config.method in ("vbon", "vbon_exact", "bon_sft", "vbon_offline", "bonbon") or bond_cache:
        # One cache, texts kept, serves F_hat (vbon) and the BoN targets (bon_sft): the
        # reference samples are drawn once per (task, M, seed) whichever method asks first.
        cache = build_task_reference(
            task,
            "train",
            config.m,
            seed=config.ref_seed,
            max_prompts=len(prompts),
            device=device,
            progress=config.progress,
            precision=precision,
            keep_texts=True,
        )
        if config.method == "bon_sft":
            sft = bon_sft_examples(
                cache.column("texts"),
                cache.rewards(),
                cache.column("ended"),
                config.n,
                config.sft_groups,
            )
        elif config.method == "bonbon":
            offline["bonbon_pairs"] = bonbon_pairs(
                cache.column("texts"),
                cache.rewards(),
                cache.column("ended"),
                config.n,
                config.sft_groups,
            )
        else:
            train_cdf = cache.cdf(max_m=config.max_m)
        if bond_cache:  # BOND's Best-of-N targets: every disjoint group of N cached samples
            m = config.max_m or config.m
            sft = bon_sft_examples(
                cache.column("texts"),
                cache.rewards(),
                cache.column("ended"),
                config.n,
                m // config.n,
            )
        if config.method == "vbon_offline":
            m = config.max_m or config.m
            offline = {
                "reference_texts": [row[:m] for row in cache.column("texts")],
                "reference_ended": np.asarray(cache.column("ended"))[:, :m],
                "reference_rewards": cache.rewards(max_m=m),
            }
    test_prompts = list(task.test_prompts)[: config.eval_prompts]
    test_ref = None
    if config.evaluate:
        test_ref = build_task_reference(
            task,
            "test",
            config.eval_m,
            seed=config.ref_seed,
            max_prompts=config.eval_prompts,
            device=device,
            progress=config.progress,
            precision=precision,
        ).rewards()
    return TrainSetup(
        policy=policy,
        tokenizer=tokenizer,
        reward_fn=reward_model,
        train_prompts=prompts,
        test_prompts=test_prompts,
        sampling=sampling,
        test_ref=test_ref,
        reference=reference,
        train_cdf=train_cdf,
        sft_examples=sft,
        describe=task.describe(),
        **offline,
    )
