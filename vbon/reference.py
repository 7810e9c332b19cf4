"""The reference cache: M completions of pi_ref per prompt with their rewards (PAPER.md s. 3).

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
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from vbon.cdf import RewardCDF
from vbon.generation import SAMPLER, check_sampling, completion_logprobs, sample
from vbon.models import REWARD_DIGITS

__all__ = [
    "ReferenceSpec",
    "ReferenceCache",
    "build_reference_cache",
    "export_authors_jsonl",
    "import_authors_jsonl",
]

RewardFn = Callable[..., np.ndarray]
_FORMAT_VERSION = 1


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

    def __post_init__(self) -> None:
        if self.m < 1:
            raise ValueError(
                f"m: the number of reference samples per prompt must be >= 1, got {self.m}"
            )
        if self.shard_size < 1:
            raise ValueError(f"shard_size: must be >= 1, got {self.shard_size}")
        check_sampling(self.temperature, self.top_k, self.top_p, self.max_new_tokens)

    def key(self) -> str:
        blob = json.dumps({"v": _FORMAT_VERSION, **asdict(self)}, sort_keys=True, default=str)
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
        "spec": asdict(spec),
        "num_prompts": len(prompts),
        "num_shards": n_shards,
        "complete": False,
    }
    rank, world, barrier = _process_info()
    if rank == 0 and not (directory / "manifest.json").is_file():
        _write_json_atomic(manifest, directory / "manifest.json")
    todo = [
        s
        for s in range(n_shards)
        if s % world == rank and not (directory / f"shard-{s:05d}.parquet").is_file()
    ]
    total = sum(len(prompts[s * spec.shard_size : (s + 1) * spec.shard_size]) for s in todo)
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
        _write_atomic(table, directory / f"shard-{s:05d}.parquet")
        bar.update(len(shard_prompts) * spec.m)
        bar.set_postfix(compl_per_s=f"{bar.n / (time.perf_counter() - start):.1f}")
    bar.close()
    barrier()
    if rank == 0:
        missing = [
            s for s in range(n_shards) if not (directory / f"shard-{s:05d}.parquet").is_file()
        ]
        if missing:
            raise RuntimeError(f"reference cache {directory}: shards {missing[:5]}... missing")
        _write_json_atomic({**manifest, "complete": True}, directory / "manifest.json")
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
        lp = completion_logprobs(
            model, completions, temperature=spec.temperature, batch_size=batch_size
        )
        columns["ref_logprobs"] = list(lp.double().numpy().reshape(len(prompts), spec.m))
    return pa.table(columns)


class ReferenceCache:
    """A finished reference cache on disk: prompts, rewards, and the F_hat they define."""

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)
        path = self.directory / "manifest.json"
        if not path.is_file():
            raise FileNotFoundError(f"directory: no reference cache at {self.directory}")
        self.manifest = json.loads(path.read_text())
        if not self.manifest.get("complete"):
            raise ValueError(
                f"directory: the cache at {self.directory} is incomplete; rerun the build to resume"
            )
        shards = sorted(self.directory.glob("shard-*.parquet"))
        self.table = pa.concat_tables([pq.read_table(s) for s in shards]).sort_by("prompt_index")

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
    _write_atomic(table, directory / "shard-00000.parquet")
    _write_json_atomic(
        {
            "format_version": _FORMAT_VERSION,
            "spec": asdict(spec),
            "num_prompts": len(prompts),
            "num_shards": 1,
            "complete": True,
        },
        directory / "manifest.json",
    )
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
        **options,
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
    **options: Any,
) -> ReferenceCache:
    """Build or load the reference cache of a task's train or test prompts.

    The cache lives under ``runs/<profile>/<task>/reference`` unless ``root`` is given; a
    finished cache with the same key is loaded without touching the models.
    """
    from vbon import paths

    prompts = list(task.train_prompts if split == "train" else task.test_prompts)
    if max_prompts is not None:
        prompts = prompts[:max_prompts]
    spec = _with_prompts(task_reference_spec(task, split, m, seed=seed, **options), prompts)
    root = (
        Path(root) if root is not None else paths.runs_dir(task.profile) / task.name / "reference"
    )
    directory = root / spec.key()
    manifest = directory / "manifest.json"

    def complete() -> bool:
        return manifest.is_file() and json.loads(manifest.read_text()).get("complete", False)

    if complete():
        return ReferenceCache(directory)
    # Independent processes (a parallel sweep) that need the same cache wait for the one building
    # it instead of sampling it twice. Under accelerate the processes build it together, sharded.
    lock: Any = contextlib.nullcontext()
    if _process_info()[1] == 1:
        from filelock import FileLock

        root.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(directory) + ".lock")
    from vbon.models import cpu_threads

    with lock, cpu_threads(getattr(task, "cpu_threads", None)):
        if complete():
            return ReferenceCache(directory)
        model, tokenizer = task.load_reference(device=device)
        reward_model = task.load_reward_model(device=device)
        return build_reference_cache(
            prompts,
            spec,
            model=model,
            tokenizer=tokenizer,
            reward_fn=reward_model,
            root=root,
            batch_size=batch_size,
            progress=progress,
        )
