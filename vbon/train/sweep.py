"""Resumable sweeps: many ``TrainConfig`` runs, one results table.

The paper's figures come from sweeps (vbon over N = 1/beta + 1, kl_rl over beta, bon_sft over
n, a few seeds). ``run_sweep`` trains each config in turn through ``vbon.train.train``: a run
that already finished is loaded, not retrained, and an interrupted one continues from its last
checkpoint, so rerunning a notebook after a crash redoes at most the run in progress.

    configs = grid(TrainConfig(task="imdb", method="vbon"), n=[2, 8, 32], seed=[0, 1])
    table = run_sweep(configs)    # one row per run: method, N, beta, reward, win rate, KL, ...
"""

from __future__ import annotations

import itertools
import time
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd

from vbon.cdf import IllPosedWarning
from vbon.train.config import TrainConfig

__all__ = ["grid", "run_sweep", "result_row", "worker_environment", "RESULT_COLUMNS"]

# The columns every sweep table starts with (the metrics follow in evaluate_policy's order).
RESULT_COLUMNS = (
    "method",
    "algorithm",
    "n",
    "beta",
    "seed",
    "m",
    "max_m",
    "steps",
    "reward",
    "reward_se",
    "win_rate",
    "win_rate_se",
    "kl",
    "kl_se",
    "kl_k1",
    "kl_k1_se",
    "eos_rate",
    "length",
)


def grid(base: TrainConfig, **axes: Sequence[Any]) -> list[TrainConfig]:
    """Configs for every combination of the given field values (the last axis varies fastest).

    ``grid(base, n=[2, 8], seed=[0, 1])`` gives four configs. For vbon, ``n`` and ``beta`` are
    one setting: varying one re-derives the other (``TrainConfig.replace``).
    """
    if not isinstance(base, TrainConfig):
        raise ValueError(f"base: expected a TrainConfig, got {type(base).__name__}")
    for name, values in axes.items():
        if isinstance(values, str) or not isinstance(values, Iterable):
            raise ValueError(f"{name}: expected a list of values, got {values!r}")
    names = list(axes)
    return [
        base.replace(**dict(zip(names, combo, strict=True)))
        for combo in itertools.product(*(list(axes[n]) for n in names))
    ]


def result_row(result: Any) -> dict[str, Any]:
    """One sweep-table row of a ``TrainResult``: what the run was, then its final evaluation."""
    cfg: TrainConfig = result.config
    row: dict[str, Any] = {
        "method": cfg.method,
        "algorithm": cfg.algorithm if cfg.is_rl else None,
        "n": None if cfg.method == "kl_rl" else cfg.n,
        "beta": None if cfg.method == "bon_sft" else cfg.beta,
        "seed": cfg.seed,
        "m": cfg.m,
        "max_m": cfg.max_m,
        "steps": cfg.steps,
        "transform": cfg.transform,
        "transform_t": cfg.transform_t,
        "cdf_estimator": cfg.cdf_estimator,
        "offline_log_z": cfg.offline_log_z,
    }
    metrics = {k: v for k, v in result.metrics.items() if k not in ("step", "phase")}
    row.update(metrics)
    row["run_name"] = result.run_dir.name
    row["run_dir"] = str(result.run_dir)
    return row


def worker_environment(index: int, device_count: int, visible: str | None = None) -> dict[str, str]:
    """Environment variables of sweep worker ``index``: its own GPU, round-robin.

    With two or more visible GPUs worker i sees only GPU i mod count (``CUDA_VISIBLE_DEVICES``,
    taken from ``visible``, the parent's value, when that is set), so parallel runs do not all
    land on cuda:0. With one GPU or none the environment is left alone ({}).
    """
    if index < 0:
        raise ValueError(f"index: must be >= 0, got {index}")
    if device_count < 2:
        return {}
    ids = [v.strip() for v in visible.split(",") if v.strip()] if visible else []
    if len(ids) < device_count:
        ids = [str(i) for i in range(device_count)]
    return {"CUDA_VISIBLE_DEVICES": ids[index % device_count]}


def _init_worker(counter: Any, device_count: int, visible: str | None) -> None:
    """Pool initialiser: take the next worker index and its device, before CUDA starts."""
    import os

    with counter.get_lock():
        index = counter.value
        counter.value += 1
    os.environ.update(worker_environment(index, device_count, visible))


def _worker_pool(workers: int) -> Any:
    """A spawn ProcessPoolExecutor whose workers each get their own GPU (worker_environment)."""
    import multiprocessing
    import os
    from concurrent.futures import ProcessPoolExecutor

    import torch

    # spawn: a forked torch process can deadlock in OpenMP, and notebooks' kernels are
    # threaded; the workers import vbon afresh.
    context = multiprocessing.get_context("spawn")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return ProcessPoolExecutor(
        workers,
        mp_context=context,
        initializer=_init_worker,
        initargs=(context.Value("i", 0), count, os.environ.get("CUDA_VISIBLE_DEVICES")),
    )


def _train_row(config: dict[str, Any]) -> dict[str, Any]:
    """Train one config (in this or a worker process) and return its table row."""
    from vbon.train.loop import train

    t0 = time.perf_counter()
    with warnings.catch_warnings():
        # The caller built (and was warned about) these configs; do not repeat it per worker.
        warnings.simplefilter("ignore", IllPosedWarning)
        config = TrainConfig.from_dict(config)
    result = train(config)
    row = result_row(result)
    row["trained"] = not result.loaded
    row["seconds"] = time.perf_counter() - t0
    return row


def run_sweep(
    configs: Sequence[TrainConfig],
    *,
    workers: int = 1,
    progress: bool = True,
    resume: bool = True,
) -> pd.DataFrame:
    """Train every config (finished runs are loaded) and return one row per run.

    Args:
        configs: the runs, e.g. from :func:`grid`; each must have a distinct run directory.
        workers: runs trained at once, each in its own process. On a CPU the smoke profile
            trains with one thread per run, so ``workers`` = the number of cores uses them all;
            on one GPU keep 1; with several GPUs worker i trains on GPU i mod count
            (``worker_environment``). Reference caches two runs share are built once (file lock).
        progress: a tqdm bar over runs (with ``workers == 1`` each run also shows its own).
        resume: continue interrupted runs from their last checkpoint (the config's
            ``save_every`` sets how much an interruption can lose).

    Returns:
        A DataFrame in the order of ``configs``: ``RESULT_COLUMNS`` first, then the remaining
        final metrics, the run name and directory, ``trained`` (False when the run was loaded)
        and ``seconds``.
    """
    from tqdm.auto import tqdm

    configs = list(configs)
    for i, cfg in enumerate(configs):
        if not isinstance(cfg, TrainConfig):
            raise ValueError(f"configs[{i}]: expected a TrainConfig, got {type(cfg).__name__}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers: must be an integer >= 1, got {workers!r}")
    dirs = [cfg.run_dir() for cfg in configs]
    if len(set(dirs)) != len(dirs):
        dup = next(d for d in dirs if dirs.count(d) > 1)
        raise ValueError(f"configs: two configs share the run directory {dup}")
    parallel = workers > 1 and len(configs) > 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IllPosedWarning)  # as built by the caller
        jobs = [
            cfg.replace(resume=resume, progress=cfg.progress and not parallel).to_dict()
            for cfg in configs
        ]
    bar = tqdm(total=len(jobs), desc="sweep", unit="run", disable=not progress)
    rows: list[dict[str, Any]] = [{} for _ in jobs]
    if not parallel:
        for i, job in enumerate(jobs):
            bar.set_postfix_str(dirs[i].name.rsplit("-", 1)[0])
            rows[i] = _train_row(job)
            bar.update()
    else:
        from concurrent.futures import as_completed

        with _worker_pool(min(workers, len(jobs))) as pool:
            futures = {pool.submit(_train_row, job): i for i, job in enumerate(jobs)}
            for future in as_completed(futures):
                i = futures[future]
                try:
                    rows[i] = future.result()
                except Exception as exc:
                    raise RuntimeError(f"sweep: run {dirs[i].name} failed: {exc}") from exc
                bar.set_postfix_str(dirs[i].name.rsplit("-", 1)[0])
                bar.update()
    bar.close()
    table = pd.DataFrame(rows)
    first = [c for c in RESULT_COLUMNS if c in table.columns]
    return table[first + [c for c in table.columns if c not in first]]
