"""The reference cache: M completions of pi_ref per prompt with their rewards (the paper's estimate of F).

vBoN's reward log F_hat(r) needs, for every training prompt, M rewards of reference samples drawn
with the training sampling settings and scored by the training reward. This module builds that
cache once, resumably, and loads it into ``vbon.cdf.RewardCDF``.

Layout: ``<root>/<key>/manifest.json`` and ``shard-00000.parquet``, ... (one row per prompt:
``prompt_index``, ``prompt``, ``rewards`` in draw order, ``rewards_sorted``, ``ended``, and
optionally ``texts`` and ``ref_logprobs``). The key hashes everything that produced the samples
(task, split, prompts, models, sampling settings, M, seed, shard size), so a changed setting never
reuses a stale cache. Each shard is written to a temporary file and renamed into place, so a crash
or Ctrl-C loses at most the shard in progress; rebuilding skips finished shards. Shard s is
sampled with its own seed, so a resumed cache equals an uninterrupted one. Under
``accelerate launch`` the shards are divided among the processes.

Integrity: the finished manifest records, for every shard, its file name, first prompt index,
row count and the sha256 of the file's bytes. Loading (``ReferenceCache(directory)``) checks
that every recorded shard is present with that hash, that no other ``shard-*.parquet`` file is
there, that every prompt index 0..P-1 appears exactly once, that the prompts hash to the spec's
``prompts_sha`` and that each row holds M rewards with a consistent sorted copy; anything else
raises :class:`CacheIntegrityError` naming the file and the call that repairs it. The builders
(``build_reference_cache``, ``build_task_reference``) repair instead: they sample again only
the missing or damaged shards (identical to the originals, each shard having its own seed) and
remove files that do not belong. A manifest written before hashes were recorded (no
``shards`` entry) is checked for everything but the hashes and loaded with a warning; the next
builder call adopts the shards that pass and records their hashes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from vbon._checks import check_int, check_text
from vbon.cdf import RewardCDF
from vbon.generation import SAMPLER, check_sampling, completion_logprobs, sample
from vbon.models import REWARD_DIGITS
from vbon.precision import (
    check_model_precision,
    check_precision,
    load_dtype,
    precision_context,
    resolve_precision,
)

__all__ = [
    "CacheIntegrityError",
    "ReferenceSpec",
    "ReferenceCache",
    "build_reference_cache",
    "export_authors_jsonl",
    "import_authors_jsonl",
]

RewardFn = Callable[..., np.ndarray]
_FORMAT_VERSION = 1  # part of every cache key: changing it invalidates every cache
_MANIFEST_VERSION = 2  # 2: per-shard records with sha256 (1: none); not part of the key
_COLUMNS = ("prompt_index", "prompt", "rewards", "rewards_sorted", "ended")
_REPAIR = (
    "vbon.reference.build_task_reference(task, split, m, ...) (or build_reference_cache("
    "prompts, spec, ...)) with the arguments that built it repairs it, sampling only the "
    "damaged or missing shards again"
)


class _NeedsSampling(ValueError):
    """Shards must be sampled but no model was given (build_task_reference then loads one)."""


class CacheIntegrityError(ValueError):
    """A reference cache on disk is incomplete or damaged; ``path`` is the file at fault."""

    def __init__(self, message: str, path: Path) -> None:
        super().__init__(message)
        self.path = path


@dataclass(frozen=True)
class ReferenceSpec:
    """Everything that determines the cache's contents; its hash is the cache key."""

    task: str
    split: str
    policy: str  # hub id or path of pi_ref
    reward: str  # hub id or path of the reward model (plus options, e.g. "...|eos_penalty=-1")
    m: int  # completions per prompt
    max_new_tokens: int
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int = 0
    shard_size: int = 64  # prompts per shard (fixes which seed each prompt's samples get)
    keep_texts: bool = False
    with_logprobs: bool = False
    prompts_sha: str = ""  # filled in by build_reference_cache
    # How tokens are drawn: a new procedure draws other samples from the same seed.
    sampler: str = SAMPLER
    extra: dict = field(default_factory=dict)
    # Hub commits of pi_ref, the reward model and the dataset ({} for local models): a changed
    # revision is another cache.
    revisions: dict = field(default_factory=dict)
    # The numerical policy of the sampling (vbon.precision): the training rollouts must be drawn
    # under the same one, so a cache sampled at another precision is another cache.
    precision: str = "fp32"

    def __post_init__(self) -> None:
        check_int(self.m, "m", minimum=1)
        check_int(self.seed, "seed", minimum=0)
        check_int(self.shard_size, "shard_size", minimum=1)
        for name in ("task", "split", "policy", "reward"):
            check_text(getattr(self, name), name)
        check_sampling(self.temperature, self.top_k, self.top_p, self.max_new_tokens)
        check_precision(self.precision)

    def record(self) -> dict:
        """The spec as stored in the manifest and hashed into the key.

        Fields added after format 1 (``revisions``, ``precision``) appear only when they differ
        from their defaults (none, "fp32"), so that the caches built before them keep their keys.
        """
        out = json.loads(json.dumps(asdict(self), default=str))
        if not out["revisions"]:
            del out["revisions"]
        if out["precision"] == "fp32":
            del out["precision"]
        return out

    def key(self) -> str:
        blob = json.dumps({"v": _FORMAT_VERSION, **self.record()}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _prompts_sha(prompts: Sequence[str]) -> str:
    h = hashlib.sha256()
    for p in prompts:
        h.update(p.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def _write_atomic(table: pa.Table, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)  # atomic on POSIX: readers see the whole shard or none


def _write_json_atomic(obj: dict, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _process_info() -> tuple[int, int, Callable[[], None]]:
    """(rank, world size, barrier) under accelerate/torchrun; (0, 1, no-op) otherwise."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1, lambda: None
    from accelerate import PartialState

    state = PartialState()
    return state.process_index, state.num_processes, state.wait_for_everyone


def _shard_file(s: int) -> str:
    return f"shard-{s:05d}.parquet"


def _shard_rows(num_prompts: int, shard_size: int, s: int) -> int:
    return min(shard_size, num_prompts - s * shard_size)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class _Check:
    """What verifying a cache directory found: good shards (with their tables and hashes),
    problems by shard, and files that do not belong."""

    tables: dict[int, pa.Table] = field(default_factory=dict)
    hashes: dict[int, str] = field(default_factory=dict)
    problems: dict[int, str] = field(default_factory=dict)
    extra: list[Path] = field(default_factory=list)

    def first_error(self, directory: Path) -> CacheIntegrityError | None:
        if self.extra:
            path = self.extra[0]
            return CacheIntegrityError(
                f"reference cache {directory}: unexpected file {path.name} (not a shard of this "
                f"cache's manifest: a duplicate or a leftover of another build); {_REPAIR}",
                path,
            )
        if self.problems:
            s = min(self.problems)
            path = directory / _shard_file(s) if s >= 0 else directory
            name = path.name if s >= 0 else "its shards"
            return CacheIntegrityError(
                f"reference cache {directory}: {name} {self.problems[s]}; {_REPAIR}", path
            )
        return None


def _shard_problem(table: pa.Table, s: int, spec: dict, num_prompts: int) -> str | None:
    """Why a shard's contents cannot be the shard ``s`` of this cache, or None."""
    columns = list(_COLUMNS)
    if spec.get("keep_texts"):
        columns.append("texts")
    if spec.get("with_logprobs"):
        columns.append("ref_logprobs")
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        return f"is damaged: it lacks the column(s) {missing}"
    rows = _shard_rows(num_prompts, spec["shard_size"], s)
    if table.num_rows != rows:
        return f"is damaged: it holds {table.num_rows} rows, the shard has {rows} prompts"
    first = s * spec["shard_size"]
    index = table.column("prompt_index").to_numpy()
    if not np.array_equal(index, np.arange(first, first + rows)):
        return f"is damaged: its prompt indices are not {first}..{first + rows - 1}"
    m = spec["m"]
    for name in ("rewards", "rewards_sorted", "ended") + (
        ("ref_logprobs",) if spec.get("with_logprobs") else ()
    ):
        lengths = pc.list_value_length(table.column(name)).to_numpy(zero_copy_only=False)
        if not (lengths == m).all():
            return f"is damaged: a row of {name!r} does not hold M = {m} values"
    rewards = np.stack(table.column("rewards").to_numpy(zero_copy_only=False))
    sorted_ = np.stack(table.column("rewards_sorted").to_numpy(zero_copy_only=False))
    if not np.array_equal(np.sort(rewards, axis=1), sorted_):
        return "is damaged: its sorted rewards are not the sorted draws"
    return None


def _verify(directory: Path, manifest: dict, prompts: Sequence[str] | None = None) -> _Check:
    """Check every shard of a cache against its manifest (hashes when recorded).

    With ``prompts`` (a builder knows them) each shard's prompts are compared with its slice;
    without, the prompts of all shards together must hash to the spec's ``prompts_sha``
    (problem key -1: the cache as a whole).
    """
    spec, num_prompts = manifest["spec"], int(manifest["num_prompts"])
    n_shards = int(manifest["num_shards"])
    recorded = {int(r["first_prompt"]) // spec["shard_size"]: r for r in manifest.get("shards", [])}
    expected = {_shard_file(s) for s in range(n_shards)}
    out = _Check(
        extra=sorted(p for p in directory.glob("shard-*.parquet") if p.name not in expected)
    )
    for s in range(n_shards):
        path = directory / _shard_file(s)
        if not path.is_file():
            out.problems[s] = "is missing"
            continue
        data = path.read_bytes()
        digest = _sha256(data)
        record = recorded.get(s)
        if record is not None and record.get("sha256") != digest:
            out.problems[s] = (
                f"is damaged: its sha256 {digest[:12]}... differs from the manifest's "
                f"{str(record.get('sha256'))[:12]}... (the file changed after the build)"
            )
            continue
        try:
            table = pq.read_table(pa.BufferReader(data))
        except (pa.ArrowException, OSError) as exc:
            out.problems[s] = f"is damaged: not a readable parquet file ({exc})"
            continue
        problem = _shard_problem(table, s, spec, num_prompts)
        if problem is None and prompts is not None:
            lo = s * spec["shard_size"]
            if table.column("prompt").to_pylist() != list(prompts[lo : lo + table.num_rows]):
                problem = "is damaged: its prompts are not this cache's"
        if problem is not None:
            out.problems[s] = problem
            continue
        out.tables[s], out.hashes[s] = table, digest
    if prompts is None and not out.problems and out.tables and spec.get("prompts_sha"):
        table = pa.concat_tables([out.tables[s] for s in sorted(out.tables)])
        if _prompts_sha(table.column("prompt").to_pylist()) != spec["prompts_sha"]:
            out.problems[-1] = "hold prompts that do not hash to the spec's prompts_sha"
    return out


def _read_manifest(directory: Path) -> dict | None:
    """The manifest, or None when there is none or it cannot be parsed."""
    path = directory / "manifest.json"
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    needed = ("spec", "num_prompts", "num_shards")
    return manifest if isinstance(manifest, dict) and all(k in manifest for k in needed) else None


def _finished_manifest(manifest: dict, check: _Check) -> dict:
    """The manifest of a verified, complete cache, with one record per shard."""
    shard_size = manifest["spec"]["shard_size"]
    return {
        **manifest,
        "manifest_version": _MANIFEST_VERSION,
        "complete": True,
        "shards": [
            {
                "file": _shard_file(s),
                "first_prompt": s * shard_size,
                "rows": check.tables[s].num_rows,
                "sha256": check.hashes[s],
            }
            for s in sorted(check.tables)
        ],
    }


def build_reference_cache(
    prompts: Sequence[str],
    spec: ReferenceSpec,
    *,
    model: Any,
    tokenizer: Any,
    reward_fn: RewardFn,
    root: Path | str,
    batch_size: int = 64,
    progress: bool = True,
) -> ReferenceCache:
    """Build (or finish building) the reference cache of ``prompts`` under ``root``.

    Args:
        prompts: the task's prompts, in a fixed order.
        spec: what produced the samples (the cache key); ``prompts_sha`` is filled in here.
        model, tokenizer: pi_ref, loaded with ``vbon.models``.
        reward_fn: ``reward_fn(prompts, completions, eos=...) -> np.ndarray``, the reward used in
            training (e.g. ``task.reward_model``).
        root: the directory holding caches, e.g. ``runs/<profile>/<task>/reference``.
        batch_size: sequences per ``generate`` call.
        progress: tqdm bar over completions, with completions/s.
    """
    if not prompts:
        raise ValueError("prompts: empty")
    spec = _with_prompts(spec, prompts)
    directory = Path(root) / spec.key()
    directory.mkdir(parents=True, exist_ok=True)
    n_shards = -(-len(prompts) // spec.shard_size)
    manifest = {
        "format_version": _FORMAT_VERSION,
        "manifest_version": _MANIFEST_VERSION,
        "spec": spec.record(),
        "num_prompts": len(prompts),
        "num_shards": n_shards,
        "complete": False,
    }
    rank, world, barrier = _process_info()
    existing = _read_manifest(directory)
    if existing is not None and existing["spec"] == manifest["spec"]:
        # Keep its shard records: they are what tells a damaged shard from a good one.
        manifest = {**existing, **{k: manifest[k] for k in ("num_prompts", "num_shards")}}
    check = _verify(directory, manifest, prompts)
    if manifest.get("complete") and "shards" in manifest and check.first_error(directory) is None:
        return ReferenceCache._verified(directory, manifest, check)
    if rank == 0:
        for path in check.extra:
            warnings.warn(
                f"reference cache {directory}: removing {path.name}, not one of its shards",
                stacklevel=2,
            )
            path.unlink(missing_ok=True)
        for bad, problem in sorted(check.problems.items()):
            path = directory / _shard_file(bad)
            # A missing shard is news only in a finished cache (an interrupted build lacks some).
            if path.is_file() or manifest.get("complete"):
                warnings.warn(
                    f"reference cache {directory}: {path.name} {problem}; sampling it again",
                    stacklevel=2,
                )
                path.unlink(missing_ok=True)
        # Incomplete while shards are rebuilt; only the good shards keep their records.
        manifest = {
            **manifest,
            "complete": False,
            "shards": [
                r
                for r in manifest.get("shards", [])
                if int(r["first_prompt"]) // spec.shard_size in check.tables
            ],
        }
        _write_json_atomic(manifest, directory / "manifest.json")
    barrier()
    todo = [
        s
        for s in range(n_shards)
        if s % world == rank and not (directory / _shard_file(s)).is_file()
    ]
    if todo and (model is None or tokenizer is None or reward_fn is None):
        raise _NeedsSampling(
            f"model: reference cache {directory} needs shards {todo[:5]} sampled, but no "
            "model, tokenizer and reward_fn were given"
        )
    total = sum(_shard_rows(len(prompts), spec.shard_size, s) for s in todo)
    bar = tqdm(
        total=total * spec.m,
        desc=f"reference {spec.task}/{spec.split}",
        unit="compl",
        disable=not progress or not todo,
    )
    start = time.perf_counter()
    for s in todo:
        lo = s * spec.shard_size
        shard_prompts = list(prompts[lo : lo + spec.shard_size])
        table = _sample_shard(shard_prompts, lo, s, spec, model, tokenizer, reward_fn, batch_size)
        _write_atomic(table, directory / _shard_file(s))
        bar.update(len(shard_prompts) * spec.m)
        bar.set_postfix(compl_per_s=f"{bar.n / (time.perf_counter() - start):.1f}")
    bar.close()
    barrier()
    if rank == 0:
        manifest = _read_manifest(directory) or manifest
        final = _verify(directory, manifest, prompts)
        error = final.first_error(directory)
        if error is not None:  # e.g. another process of the launch died before its shards
            raise error
        _write_json_atomic(_finished_manifest(manifest, final), directory / "manifest.json")
    barrier()
    return ReferenceCache(directory)


def _with_prompts(spec: ReferenceSpec, prompts: Sequence[str]) -> ReferenceSpec:
    sha = _prompts_sha(prompts)
    if spec.prompts_sha and spec.prompts_sha != sha:
        raise ValueError("spec: prompts_sha does not match the prompts passed")
    return ReferenceSpec(**{**asdict(spec), "prompts_sha": sha})


def _sample_shard(
    prompts: list[str],
    first_index: int,
    shard: int,
    spec: ReferenceSpec,
    model: Any,
    tokenizer: Any,
    reward_fn: RewardFn,
    batch_size: int,
) -> pa.Table:
    check_model_precision(model, spec.precision)
    device = next(model.parameters()).device
    with precision_context(spec.precision, device):
        completions = sample(
            model,
            tokenizer,
            prompts,
            spec.m,
            max_new_tokens=spec.max_new_tokens,
            temperature=spec.temperature,
            top_k=spec.top_k,
            top_p=spec.top_p,
            batch_size=batch_size,
            seed=spec.seed * 1_000_003 + shard,
        )
    repeated = [prompts[i] for i in completions.prompt_index]
    rewards = np.asarray(reward_fn(repeated, completions.texts, eos=completions.ended), dtype=float)
    if rewards.shape != (len(completions),):
        raise ValueError(
            f"reward_fn: returned shape {rewards.shape}, expected ({len(completions)},)"
        )
    if np.isnan(rewards).any():
        raise ValueError("reward_fn: returned NaN rewards")
    by_prompt = rewards.reshape(len(prompts), spec.m)
    columns: dict[str, Any] = {
        "prompt_index": np.arange(first_index, first_index + len(prompts)),
        "prompt": prompts,
        "rewards": list(by_prompt),
        "rewards_sorted": list(np.sort(by_prompt, axis=1)),
        "ended": list(completions.ended.reshape(len(prompts), spec.m)),
    }
    if spec.keep_texts:
        columns["texts"] = [
            completions.texts[i * spec.m : (i + 1) * spec.m] for i in range(len(prompts))
        ]
    if spec.with_logprobs:
        with precision_context(spec.precision, device):
            lp = completion_logprobs(
                model, completions, temperature=spec.temperature, batch_size=batch_size
            )
        columns["ref_logprobs"] = list(lp.double().numpy().reshape(len(prompts), spec.m))
    return pa.table(columns)


class ReferenceCache:
    """A finished reference cache on disk: prompts, rewards, and the F_hat they define."""

    def __init__(self, directory: Path | str) -> None:
        """Load and verify the finished cache in ``directory`` (see the module's Integrity).

        Raises:
            FileNotFoundError: no ``manifest.json`` there.
            CacheIntegrityError: the cache is incomplete or a file is damaged, missing or
                foreign; the message names the file and the call that repairs it.
        """
        directory = Path(directory)
        path = directory / "manifest.json"
        if not path.is_file():
            raise FileNotFoundError(f"directory: no reference cache at {directory}")
        manifest = _read_manifest(directory)
        if manifest is None:
            raise CacheIntegrityError(
                f"directory: reference cache {directory}: manifest.json is unreadable; {_REPAIR}",
                path,
            )
        if not manifest.get("complete"):
            raise CacheIntegrityError(
                f"directory: the cache at {directory} is incomplete (a build was interrupted); "
                f"{_REPAIR.replace('repairs it', 'resumes it')}",
                path,
            )
        check = _verify(directory, manifest)
        error = check.first_error(directory)
        if error is not None:
            raise CacheIntegrityError(f"directory: {error}", error.path)
        if "shards" not in manifest:
            warnings.warn(
                f"reference cache {directory} was built before shard hashes were recorded: its "
                "shards passed every check but the hash one; the next build_task_reference / "
                "build_reference_cache call records their hashes",
                stacklevel=2,
            )
        self._init(directory, manifest, check)

    @classmethod
    def _verified(cls, directory: Path, manifest: dict, check: _Check) -> ReferenceCache:
        """A cache whose directory ``check`` has just verified (no second read of the files)."""
        self = cls.__new__(cls)
        self._init(directory, manifest, check)
        return self

    def _init(self, directory: Path, manifest: dict, check: _Check) -> None:
        self.directory = directory
        self.manifest = manifest
        self.table = pa.concat_tables([check.tables[s] for s in sorted(check.tables)])

    @property
    def spec(self) -> dict:
        return self.manifest["spec"]

    @property
    def prompts(self) -> list[str]:
        return self.table.column("prompt").to_pylist()

    def __len__(self) -> int:
        return self.table.num_rows

    def rewards(self, max_m: int | None = None) -> np.ndarray:
        """(P, M) rewards in draw order (the first ``max_m`` per prompt if given)."""
        out = np.stack(self.table.column("rewards").to_numpy(zero_copy_only=False))
        return out[:, :max_m] if max_m else out

    def column(self, name: str) -> np.ndarray | list:
        """Any stored per-prompt column: ``ended``, ``texts``, ``ref_logprobs``, ..."""
        if name not in self.table.column_names:
            raise ValueError(f"name: this cache has no column {name!r} ({self.table.column_names})")
        values = self.table.column(name).to_pylist()
        return values if name in ("texts", "prompt") else np.array(values)

    def summary(self) -> dict[str, Any]:
        """What the cache holds, as one table row: prompts, M, samples, reward mean and std,
        the share of completions that ended with EOS, and its directory's name (its key)."""
        r = self.rewards()
        return {
            "prompts": len(self),
            "M": r.shape[1],
            "samples": r.size,
            "reward mean": float(r.mean()),
            "reward std": float(r.std()),
            "EOS rate": float(np.mean(self.column("ended"))),
            "directory": self.directory.name,
        }

    def cdf(self, max_m: int | None = None) -> RewardCDF:
        """F_hat per prompt, from all M rewards or the first ``max_m`` drawn (the M ablation)."""
        if max_m is None:
            sorted_ = np.stack(self.table.column("rewards_sorted").to_numpy(zero_copy_only=False))
            return RewardCDF(sorted_, assume_sorted=True)
        return RewardCDF(self.rewards(), max_m=max_m)


def export_authors_jsonl(cache: ReferenceCache, path: Path | str, *, layout: str) -> Path:
    """Write the cache in the authors' JSONL formats.

    ``layout="imdb"``: one line per sample ``{"prompt", "text", "reward"}``;
    ``layout="tldr"``: one line per prompt ``{"prompt", "responses", "rewards"}``. Texts are the
    completions with the prompt stripped (empty strings if the cache kept no texts).
    """
    if layout not in ("imdb", "tldr"):
        raise ValueError(f"layout: expected 'imdb' or 'tldr', got {layout!r}")
    rewards = cache.rewards()
    texts = (
        cache.column("texts")
        if "texts" in cache.table.column_names
        else [[""] * rewards.shape[1]] * len(cache)
    )
    path = Path(path)
    with path.open("w") as f:
        for prompt, rs, ts in zip(cache.prompts, rewards, texts, strict=True):
            if layout == "tldr":
                f.write(
                    json.dumps({"prompt": prompt, "responses": ts, "rewards": rs.tolist()}) + "\n"
                )
            else:
                for t, r in zip(ts, rs, strict=True):
                    f.write(json.dumps({"prompt": prompt, "text": t, "reward": float(r)}) + "\n")
    return path


def import_authors_jsonl(
    path: Path | str,
    root: Path | str,
    *,
    task: str,
    split: str = "train",
    text_includes_prompt: bool = False,
) -> ReferenceCache:
    """Turn one of the authors' JSONL caches (either layout) into a ``ReferenceCache``.

    Lines are grouped by prompt in order of first appearance; prompts must all have the same
    number of samples M. With ``text_includes_prompt`` each IMDB ``text`` starts with its prompt,
    which is stripped.
    """
    grouped: dict[str, tuple[list[str], list[float]]] = {}
    with Path(path).open() as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            if "prompt" not in row:
                raise ValueError(f"path: line {n} has no 'prompt'")
            texts, rewards = grouped.setdefault(row["prompt"], ([], []))
            if "responses" in row:
                texts.extend(row["responses"])
                rewards.extend(float(r) for r in row["rewards"])
            else:
                text = row.get("text", "")
                if text_includes_prompt and text.startswith(row["prompt"]):
                    text = text[len(row["prompt"]) :]
                texts.append(text)
                rewards.append(float(row["reward"]))
    if not grouped:
        raise ValueError(f"path: {path} holds no samples")
    sizes = {len(r) for _, r in grouped.values()}
    if len(sizes) != 1:
        raise ValueError(f"path: prompts have different numbers of samples {sorted(sizes)[:5]}")
    m = sizes.pop()
    prompts = list(grouped)
    spec = ReferenceSpec(
        task=task,
        split=split,
        policy="authors-jsonl",
        reward=str(path),
        m=m,
        max_new_tokens=1,
        keep_texts=True,
        shard_size=max(1, len(prompts)),
        prompts_sha=_prompts_sha(prompts),
        extra={"source": str(path)},
    )
    directory = Path(root) / spec.key()
    directory.mkdir(parents=True, exist_ok=True)
    by_prompt = np.array([grouped[p][1] for p in prompts])
    table = pa.table(
        {
            "prompt_index": np.arange(len(prompts)),
            "prompt": prompts,
            "rewards": list(by_prompt),
            "rewards_sorted": list(np.sort(by_prompt, axis=1)),
            "ended": list(np.ones_like(by_prompt, dtype=bool)),
            "texts": [grouped[p][0] for p in prompts],
        }
    )
    _write_atomic(table, directory / _shard_file(0))
    manifest = {
        "format_version": _FORMAT_VERSION,
        "spec": spec.record(),
        "num_prompts": len(prompts),
        "num_shards": 1,
    }
    check = _verify(directory, manifest, prompts)
    error = check.first_error(directory)
    if error is not None:
        raise error
    _write_json_atomic(_finished_manifest(manifest, check), directory / "manifest.json")
    return ReferenceCache(directory)


def task_reference_spec(
    task: Any, split: str, m: int, *, seed: int = 0, **options: Any
) -> ReferenceSpec:
    """The ``ReferenceSpec`` of a ``vbon.tasks`` task: its pi_ref, reward and sampling settings."""
    if split not in ("train", "test"):
        raise ValueError(f"split: expected 'train' or 'test', got {split!r}")
    reward = json.dumps(
        {
            "id": task.reward_id,
            "eos_penalty": task.sampling.eos_penalty,
            # a change of rounding must not reuse old rewards
            "digits": REWARD_DIGITS,
            **task.reward_kwargs,
        },
        sort_keys=True,
        default=str,
    )
    revisions = getattr(task, "revisions", {}) or {}
    pins = {r: revisions[r] for r in ("reference", "reward", "dataset") if revisions.get(r)}
    return ReferenceSpec(
        task=task.name,
        split=split,
        policy=task.reference_id,
        reward=reward,
        m=m,
        max_new_tokens=task.sampling.max_new_tokens,
        temperature=task.sampling.temperature,
        top_k=task.sampling.top_k,
        top_p=task.sampling.top_p,
        seed=seed,
        **{"revisions": pins, **options},
    )


def build_task_reference(
    task: Any,
    split: str,
    m: int,
    *,
    seed: int = 0,
    root: Path | str | None = None,
    max_prompts: int | None = None,
    batch_size: int = 64,
    device: str | None = None,
    progress: bool = True,
    precision: str | None = None,
    **options: Any,
) -> ReferenceCache:
    """Build or load the reference cache of a task's train or test prompts.

    The cache lives under ``runs/<profile>/<task>/reference`` unless ``root`` is given; a
    finished, intact cache with the same key is loaded without touching the models. A damaged
    one is repaired: only its missing or damaged shards are sampled again (see the module's
    Integrity). Every argument is checked before anything is loaded or sampled.

    Args:
        task: a ``vbon.tasks`` task (prompts, models, sampling settings).
        split: "train" or "test".
        m: reference samples per prompt, an integer >= 1.
        seed: seed of the samples, an integer >= 0 (part of the key).
        root: directory of the caches.
        max_prompts: the first ``max_prompts`` prompts of the split (an integer >= 1), or all.
        batch_size: sequences per decoding call.
        device: where the models run (default: the first GPU, else the CPU).
        progress: a tqdm bar while sampling.
        precision: the numerical policy of the sampling (``vbon.precision``: "fp32",
            "bf16-autocast", "fp16-autocast"), part of the key; None: a training run's default
            on ``device`` (bf16-autocast on a bf16 GPU, fp32 on a CPU), so that the samples
            behind F_hat match the rollouts. The trainer passes its run's own.
        options: more ``ReferenceSpec`` fields (``keep_texts``, ``with_logprobs``, ...).
    """
    from vbon import paths

    if split not in ("train", "test"):
        raise ValueError(f"split: expected 'train' or 'test', got {split!r}")
    m = check_int(m, "m", minimum=1)
    seed = check_int(seed, "seed", minimum=0)
    max_prompts = check_int(max_prompts, "max_prompts", minimum=1, allow_none=True)
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    precision = resolve_precision(precision, device)
    prompts = list(task.train_prompts if split == "train" else task.test_prompts)
    if max_prompts is not None:
        prompts = prompts[:max_prompts]
    spec = _with_prompts(
        task_reference_spec(task, split, m, seed=seed, precision=precision, **options), prompts
    )
    root = (
        Path(root) if root is not None else paths.runs_dir(task.profile) / task.name / "reference"
    )
    directory = root / spec.key()

    def intact() -> ReferenceCache | None:
        """The cache if it is finished and passes every check (reads only)."""
        manifest = _read_manifest(directory)
        if manifest is None or not manifest.get("complete") or "shards" not in manifest:
            return None
        try:
            return ReferenceCache(directory)
        except CacheIntegrityError:
            return None

    cache = intact()
    if cache is not None:
        return cache
    # Independent processes (a parallel sweep) that need the same cache wait for the one building
    # it instead of sampling it twice. Under accelerate the processes build it together, sharded.
    lock: Any = contextlib.nullcontext()
    if _process_info()[1] == 1:
        from filelock import FileLock

        root.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(directory) + ".lock")
    from vbon.models import cpu_threads

    build = partial(
        build_reference_cache, prompts, spec, root=root, batch_size=batch_size, progress=progress
    )
    with lock, cpu_threads(getattr(task, "cpu_threads", None)):
        cache = intact()
        if cache is not None:
            return cache
        try:  # an old manifest's shards are adopted, foreign files removed, without models
            return build(model=None, tokenizer=None, reward_fn=None)
        except _NeedsSampling:
            pass
        model, tokenizer = task.load_reference(device=device, **load_dtype(precision))
        reward_model = task.load_reward_model(device=device)
        return build(model=model, tokenizer=tokenizer, reward_fn=reward_model)
