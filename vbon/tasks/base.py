"""The task object shared by both experiments, and dataset loading with clear offline errors."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from huggingface_hub import is_offline_mode

from vbon.models import SMOKE_HINT, OfflineError, RewardModel, load_causal_lm, load_reward_model

# "smoke": the toy worlds at budgets of minutes (the default run, the tests); "converged": the
# same worlds trained until the runs converge (under an hour on 2 cores); "paper": hub models.
PROFILES = ("smoke", "converged", "paper")
TOY_PROFILES = ("smoke", "converged")


class OfflineDatasetError(OfflineError):
    """A hub dataset was asked for offline and is not in the local datasets cache."""


@dataclass(frozen=True)
class SamplingConfig:
    """How completions are sampled for training, reference caches and evaluation.

    ``eos_penalty``: the reward of a completion that did not end with EOS (None: no penalty).
    """

    max_new_tokens: int
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    eos_penalty: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be an integer >= 1, got {self.max_new_tokens!r}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature!r}")
        if not isinstance(self.top_k, int) or self.top_k < 0:
            raise ValueError(f"top_k must be an integer >= 0 (0: no top-k), got {self.top_k!r}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p!r}")
        if self.eos_penalty is not None and not np.isfinite(self.eos_penalty):
            raise ValueError(f"eos_penalty must be finite or None, got {self.eos_penalty!r}")

    def sample_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``vbon.generation.sample`` (these settings)."""
        return {
            "max_new_tokens": self.max_new_tokens,
            "temperature": self.temperature,
            "top_k": self.top_k,
            "top_p": self.top_p,
        }

    def generate_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``model.generate`` (ancestral sampling with these settings)."""
        return {"do_sample": True, **self.sample_kwargs()}


@dataclass(frozen=True)
class Task:
    """One experiment's setting: prompts, models and sampling.

    ``policy_id`` / ``reference_id`` / ``reward_id`` are hub ids or local directories (the toy
    worlds' ``policy/`` and ``reward/``); the same loaders read both. ``reward_fn`` has the
    TRL reward-function signature and loads the reward model on first use.
    """

    name: str
    profile: str
    policy_id: str
    reward_id: str
    dataset_id: str
    train_prompts: list[str]
    test_prompts: list[str]
    sampling: SamplingConfig
    reference_id: str = ""
    reward_kwargs: dict[str, Any] = field(default_factory=dict)
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.reference_id:
            object.__setattr__(self, "reference_id", self.policy_id)

    def load_policy(
        self,
        *,
        dtype: str | torch.dtype | None = None,
        device: str | torch.device | None = None,
        **kwargs: Any,
    ) -> tuple[Any, Any]:
        """``(model, tokenizer)`` of the policy's initialisation (left padding, eval mode)."""
        return load_causal_lm(self.policy_id, dtype=dtype, device=device, **kwargs)

    def load_reference(
        self,
        *,
        dtype: str | torch.dtype | None = None,
        device: str | torch.device | None = None,
        **kwargs: Any,
    ) -> tuple[Any, Any]:
        """``(model, tokenizer)`` of the reference policy pi_ref."""
        return load_causal_lm(self.reference_id, dtype=dtype, device=device, **kwargs)

    def load_reward_model(
        self,
        *,
        dtype: str | torch.dtype | None = None,
        device: str | torch.device | None = None,
        batch_size: int = 32,
        **kwargs: Any,
    ) -> RewardModel:
        """The task's reward model, with its scoring options and the EOS penalty of ``sampling``."""
        options = {**self.reward_kwargs, **kwargs}
        if options.get("kind", "auto") != "classifier":
            options.setdefault("eos_penalty", self.sampling.eos_penalty)
        return load_reward_model(
            self.reward_id, dtype=dtype, device=device, batch_size=batch_size, **options
        )

    @property
    def cpu_threads(self) -> int | None:
        """torch CPU threads for sampling and scoring this task's models: 1 on the toy worlds
        (smoke; see ``vbon.models.cpu_threads``), torch's default otherwise."""
        return 1 if self.profile in TOY_PROFILES else None

    @cached_property
    def reward_model(self) -> RewardModel:
        """The reward model loaded with default device and dtype, on first use."""
        return self.load_reward_model()

    def reward_fn(
        self,
        prompts: Sequence[str],
        completions: Sequence[str],
        *,
        completion_ids: Sequence[Sequence[int]] | torch.Tensor | None = None,
        eos: Sequence[bool] | np.ndarray | torch.Tensor | None = None,
        **kwargs: Any,
    ) -> np.ndarray:
        """One float reward per completion (TRL signature; extra keyword arguments are ignored).

        Tasks with an EOS penalty need ``completion_ids`` (the generated ids) or ``eos`` flags.
        """
        return self.reward_model(prompts, completions, eos=eos, completion_ids=completion_ids)

    def describe(self) -> dict[str, Any]:
        """Everything that identifies the task, for cache keys and run records (prompts hashed)."""
        digest = hashlib.sha256(
            json.dumps([self.train_prompts, self.test_prompts]).encode()
        ).hexdigest()[:16]
        return {
            "name": self.name,
            "profile": self.profile,
            "policy_id": self.policy_id,
            "reference_id": self.reference_id,
            "reward_id": self.reward_id,
            "dataset_id": self.dataset_id,
            "n_train": len(self.train_prompts),
            "n_test": len(self.test_prompts),
            "prompts_sha256": digest,
            "sampling": dataclasses.asdict(self.sampling),
            "reward_kwargs": self.reward_kwargs,
            "seed": self.seed,
        }

    def fingerprint(self) -> str:
        """A short hash of :meth:`describe`."""
        return hashlib.sha256(
            json.dumps(self.describe(), sort_keys=True, default=str).encode()
        ).hexdigest()[:12]


def check_profile(profile: str) -> str:
    """``profile`` itself, or ValueError when it is not one of :data:`PROFILES`."""
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
    return profile


def load_dataset_dict(
    dataset: Any, *, columns: Sequence[str], splits: Sequence[str]
) -> tuple[Any, str]:
    """A ``DatasetDict`` from an in-memory object, a ``save_to_disk`` directory or a hub id.

    Returns the dataset and the id to record. The schema is checked (``columns`` in each of
    ``splits``) so that in-memory stand-ins exercise the hub code path faithfully.
    """
    from datasets import Dataset, DatasetDict, load_dataset, load_from_disk

    if isinstance(dataset, Dataset):
        raise ValueError(
            "dataset must be a DatasetDict with splits " + ", ".join(splits) + ", not one Dataset"
        )
    if isinstance(dataset, DatasetDict):
        ds, source = dataset, "<in-memory>"
    elif isinstance(dataset, str | os.PathLike):
        source = str(dataset)
        if Path(source).expanduser().is_dir():
            ds = load_from_disk(str(Path(source).expanduser()))
        else:
            try:
                ds = load_dataset(source)
            except Exception as e:
                if is_offline_mode() or "connect" in str(e).lower() or "offline" in str(e).lower():
                    raise OfflineDatasetError(
                        f"dataset {source!r} is a hub id, but the hub is offline (HF_HUB_OFFLINE=1 or "
                        f"no network) and it is not in the local datasets cache. {SMOKE_HINT}"
                    ) from e
                raise ValueError(f"could not load dataset {source!r}: {e}") from e
    else:
        raise ValueError(
            f"dataset must be a DatasetDict, a directory or a hub id, got {type(dataset).__name__}"
        )
    missing = [s for s in splits if s not in ds]
    if missing:
        raise ValueError(f"dataset {source!r} lacks split(s) {missing}; needs {list(splits)}")
    for s in splits:
        absent = [c for c in columns if c not in ds[s].column_names]
        if absent:
            raise ValueError(
                f"dataset {source!r} split {s!r} lacks column(s) {absent}; needs {list(columns)}"
            )
    return ds, source


def pick(n: int | None, size: int, rng: np.random.Generator, what: str) -> np.ndarray:
    """``n`` distinct indices of ``range(size)`` in random order (all of them, shuffled, if None)."""
    if n is None:
        return rng.permutation(size)
    if not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"{what} must be a positive integer or None, got {n!r}")
    if n > size:
        raise ValueError(f"{what}={n} exceeds the {size} examples available")
    return rng.choice(size, size=n, replace=False)


def split_overrides(overrides: dict[str, Any], allowed: Sequence[str], task: str) -> None:
    """ValueError naming any override that ``task`` does not take."""
    unknown = sorted(set(overrides) - set(allowed))
    if unknown:
        raise ValueError(
            f"unknown override(s) {unknown} for task {task!r}; valid: {sorted(allowed)}"
        )
