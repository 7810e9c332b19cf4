"""The task object shared by both experiments, and dataset loading with clear offline errors.

Hub revisions: on the paper profile every hub model and dataset is loaded at a pinned commit
(each task module's ``HUB_REVISIONS``, overridable with ``policy_revision=``,
``reference_revision=``, ``reward_revision=``, ``dataset_revision=``). A hub source without a
pin loads the hub's current ``main`` and says so with an :class:`UnpinnedRevisionWarning`: such
a run can change when the hub repository does. Local directories and the toy worlds carry no
revision. The revisions are part of ``Task.describe()``, of every reference-cache key and of
every paper-profile ``TrainConfig`` (its ``task_overrides``), so a changed revision never
reuses a cache or a run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from huggingface_hub import is_offline_mode

from vbon._checks import check_int, check_real
from vbon.models import (
    SMOKE_HINT,
    OfflineError,
    RewardModel,
    _looks_like_path,
    load_causal_lm,
    load_reward_model,
)

# "smoke": the toy worlds at budgets of minutes (the default run, the tests); "converged": the
# same worlds trained until the runs converge (under an hour on 2 cores); "paper": hub models.
PROFILES = ("smoke", "converged", "paper")
TOY_PROFILES = ("smoke", "converged")
ROLES = ("policy", "reference", "reward", "dataset")


class OfflineDatasetError(OfflineError):
    """A hub dataset was asked for offline and is not in the local datasets cache."""


class DatasetNotFoundError(ValueError):
    """A local dataset path does not exist (a mistyped directory, not a hub id)."""


class UnpinnedRevisionWarning(UserWarning):
    """A paper-profile hub model or dataset is loaded at the hub's current main branch."""


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
        check_int(self.max_new_tokens, "max_new_tokens", minimum=1)
        check_real(self.temperature, "temperature", minimum=0.0)
        check_int(self.top_k, "top_k", minimum=0)
        check_real(self.top_p, "top_p", minimum=0.0, maximum=1.0)
        check_real(self.eos_penalty, "eos_penalty", allow_none=True)

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
    revisions: dict[str, str] = field(default_factory=dict)
    """Hub commit (or branch/tag) per role: "policy", "reference", "reward", "dataset"; a role
    without one is a local directory or an unpinned hub id."""

    def __post_init__(self) -> None:
        if not self.reference_id:
            object.__setattr__(self, "reference_id", self.policy_id)
        unknown = sorted(set(self.revisions) - set(ROLES))
        if unknown:
            raise ValueError(f"revisions: unknown role(s) {unknown}; roles are {list(ROLES)}")

    def load_policy(
        self,
        *,
        dtype: str | torch.dtype | None = None,
        device: str | torch.device | None = None,
        **kwargs: Any,
    ) -> tuple[Any, Any]:
        """``(model, tokenizer)`` of the policy's initialisation (left padding, eval mode)."""
        kwargs.setdefault("revision", self.revisions.get("policy"))
        return load_causal_lm(self.policy_id, dtype=dtype, device=device, **kwargs)

    def load_reference(
        self,
        *,
        dtype: str | torch.dtype | None = None,
        device: str | torch.device | None = None,
        **kwargs: Any,
    ) -> tuple[Any, Any]:
        """``(model, tokenizer)`` of the reference policy pi_ref."""
        kwargs.setdefault("revision", self.revisions.get("reference"))
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
        options.setdefault("revision", self.revisions.get("reward"))
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

    def score_with_extras(
        self,
        prompts: Sequence[str],
        completions: Sequence[str],
        *,
        completion_ids: Sequence[Sequence[int]] | torch.Tensor | None = None,
        eos: Sequence[bool] | np.ndarray | torch.Tensor | None = None,
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """``reward_fn``'s rewards and the evaluation extras of the same forward pass (IMDB:
        ``{"p_pos": p(POS)}`` beside the logit reward); see ``RewardModel.score_with_extras``."""
        return self.reward_model.score_with_extras(
            prompts, completions, eos=eos, completion_ids=completion_ids
        )

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
            "revisions": dict(self.revisions),
        }

    def fingerprint(self) -> str:
        """A short hash of :meth:`describe`."""
        return hashlib.sha256(
            json.dumps(self.describe(), sort_keys=True, default=str).encode()
        ).hexdigest()[:12]


def check_profile(profile: str) -> str:
    """``profile`` itself, or ValueError when it is not one of :data:`PROFILES`."""
    if profile not in PROFILES:
        raise ValueError(f"profile: expected one of {PROFILES}, got {profile!r}")
    return profile


def _check_prepared_revision(ds: Any, source: str, revision: str | None) -> None:
    """Refuse a dataset that ``load_dataset`` served offline from another commit than the pin.

    Offline, datasets ignores ``revision`` and serves the newest prepared copy in its cache,
    whose folder is named by the commit it was prepared from: a pinned run would silently
    read other data.
    """
    if revision is None or not is_offline_mode() or re.fullmatch(r"[0-9a-f]{40}", revision) is None:
        return
    # The prepared copy lives in <cache>/<owner>___<name>/<config>/<version>/<commit>/.
    folder = source.replace("/", "___")
    for split in ds.values():
        for f in split.cache_files:
            parts = Path(f["filename"]).parts
            if folder not in parts:
                continue  # not a prepared copy of this hub id: nothing to judge
            at = parts.index(folder) + 3
            if at < len(parts) and parts[at] != revision:
                raise OfflineDatasetError(
                    f"dataset_revision: the local datasets cache serves {source!r} from "
                    f"{Path(*parts[: at + 1])}, not from the pinned commit {revision}; load it "
                    f"once online (datasets.load_dataset({source!r}, revision={revision!r})) "
                    "or pass the revision that is cached"
                )


def load_dataset_dict(
    dataset: Any,
    *,
    columns: Sequence[str],
    splits: Sequence[str],
    revision: str | None = None,
) -> tuple[Any, str]:
    """A ``DatasetDict`` from an in-memory object, a ``save_to_disk`` directory or a hub id.

    Returns the dataset and the id to record. The schema is checked (``columns`` in each of
    ``splits``) so that in-memory stand-ins exercise the hub code path faithfully. ``revision``
    pins a hub id's commit. A path that does not exist is reported as such (a mistyped
    directory), not as a hub id the offline cache lacks.
    """
    from datasets import Dataset, DatasetDict, load_dataset, load_from_disk

    if isinstance(dataset, Dataset):
        raise ValueError(
            "dataset: must be a DatasetDict with splits " + ", ".join(splits) + ", not one Dataset"
        )
    if revision is not None and not isinstance(dataset, str | os.PathLike):
        raise ValueError("dataset_revision: pins hub ids only, the dataset is an object")
    if isinstance(dataset, DatasetDict):
        ds, source = dataset, "<in-memory>"
    elif isinstance(dataset, str | os.PathLike):
        source = str(dataset)
        path = Path(source).expanduser()
        if not source.strip():
            raise ValueError("dataset: must be a DatasetDict, a directory or a hub id, got ''")
        if path.is_dir():
            if revision is not None:
                raise ValueError(
                    f"dataset_revision: {source!r} is a local directory; a revision pins hub "
                    "ids only"
                )
            ds = load_from_disk(str(path))
        elif _looks_like_path(source) or path.exists():
            raise DatasetNotFoundError(
                f"dataset: no dataset directory at {path} (a local dataset is a directory "
                "written by DatasetDict.save_to_disk; a hub id is 'name' or 'owner/name')"
            )
        else:
            try:
                ds = load_dataset(source, **({} if revision is None else {"revision": revision}))
            except Exception as e:
                parent = path.parent
                if str(parent) not in ("", ".") and parent.is_dir():
                    # "data/tldrr" reads as a hub id, but "data/" is here: a mistyped path.
                    raise DatasetNotFoundError(
                        f"dataset: no dataset directory at {path} ({parent} exists: a mistyped "
                        f"path?), and {source!r} is not a loadable hub id either ({e})"
                    ) from e
                if is_offline_mode() or "connect" in str(e).lower() or "offline" in str(e).lower():
                    raise OfflineDatasetError(
                        f"dataset {source!r} is a hub id, but the hub is offline (HF_HUB_OFFLINE=1 or "
                        f"no network) and it is not in the local datasets cache. {SMOKE_HINT}"
                    ) from e
                raise ValueError(f"dataset: could not load {source!r}: {e}") from e
            _check_prepared_revision(ds, source, revision)
    else:
        raise ValueError(
            f"dataset: must be a DatasetDict, a directory or a hub id, got {type(dataset).__name__}"
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


def check_source(value: Any, name: str) -> str:
    """A model override (``policy_id``, ...): a non-empty hub id or path, else ValueError."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name}: must be a hub id or a local directory, got {value!r}")
    return value


def resolve_revisions(
    profile: str,
    sources: Mapping[str, Any],
    overrides: Mapping[str, Any],
    pinned: Mapping[str, str],
) -> dict[str, str]:
    """The revision of each role's source: ``<role>_revision`` when given (not ""), else the
    pin of the hub id in ``pinned``; a paper-profile hub id with neither warns (main).

    Roles whose source is a local directory or an object get none; toy worlds (smoke) neither.
    """
    out: dict[str, str] = {}
    for role in ROLES:
        if role not in sources and overrides.get(f"{role}_revision") not in (None, ""):
            raise ValueError(
                f"{role}_revision: the {role} is the toy world's (profile {profile!r}), which has "
                "no hub revision; pass a hub id as well, or no revision"
            )
    for role, source in sources.items():
        given = overrides.get(f"{role}_revision")
        if role == "reference" and given in (None, "") and source == sources.get("policy"):
            # pi_ref is the policy's initialisation: the same model at the same commit.
            if "policy" in out:
                out["reference"] = out["policy"]
            continue
        if given is not None and given != "":
            if not isinstance(given, str) or not given.strip():
                raise ValueError(
                    f"{role}_revision: must be a hub commit sha, branch or tag, got {given!r}"
                )
            out[role] = given
            continue
        hub = isinstance(source, str) and not Path(source).expanduser().exists()
        if not hub or profile != "paper":
            continue
        if source in pinned:
            out[role] = pinned[source]
        else:
            warnings.warn(
                f"{role} {source!r} is not pinned to a hub commit: loading its current 'main'; "
                f"pass {role}_revision=<sha> to pin it (results can change with the hub repo)",
                UnpinnedRevisionWarning,
                stacklevel=3,
            )
    return out


def pick(n: int | None, size: int, rng: np.random.Generator, what: str) -> np.ndarray:
    """``n`` distinct indices of ``range(size)`` in random order (all of them, shuffled, if None)."""
    if n is None:
        return rng.permutation(size)
    n = check_int(n, what, minimum=1)
    if n > size:
        raise ValueError(f"{what}: {n} exceeds the {size} examples available")
    return rng.choice(size, size=n, replace=False)


def split_overrides(overrides: dict[str, Any], allowed: Sequence[str], task: str) -> None:
    """ValueError naming any override that ``task`` does not take."""
    unknown = sorted(set(overrides) - set(allowed) - {f"{r}_revision" for r in ROLES})
    if unknown:
        raise ValueError(
            f"{unknown[0]}: unknown override(s) {unknown} for task {task!r}; valid: "
            f"{sorted(allowed) + [f'{r}_revision' for r in ROLES]}"
        )
