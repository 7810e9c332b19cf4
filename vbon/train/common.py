"""Pieces every algorithm shares: the run context, rollouts, the score R, timers and statistics."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from vbon.cdf import quantile_scores
from vbon.generation import Completions, sample
from vbon.objectives import vbon_reward
from vbon.precision import precision_context
from vbon.train.config import TrainConfig
from vbon.train.modeling import TrunkCache
from vbon.train.setup import TrainSetup

__all__ = ["Context", "ProcessBatches", "Rollout", "Stats", "Timer", "process_batches", "step_seed"]

TIME_PARTS = ("generate", "reward", "logprobs", "backward")


def step_seed(seed: int, step: int, rank: int, stream: int = 0) -> int:
    """A seed for (run seed, step, process, stream): resumed runs draw exactly the same samples."""
    return int(np.random.SeedSequence([seed, step, rank, stream]).generate_state(1)[0] & 0x7FFFFFFF)


@dataclass(frozen=True)
class ProcessBatches:
    """One process's share of a run's batches; the config's sizes are over all processes.

    ``prompts``: prompts (bon_sft: examples) per step; ``rows``: rollout rows per phase;
    ``mini_batch``: ppo rows per optimiser step (None otherwise); ``micro_batch``: rows per
    forward/backward (None: the whole (mini-)batch at once).
    """

    world: int
    prompts: int
    rows: int
    mini_batch: int | None
    micro_batch: int | None


def _share(name: str, value: int, world: int, what: str) -> int:
    if value % world:
        raise ValueError(
            f"{name}: {value} {what} must divide evenly among the {world} processes (each takes "
            f"{name} / {world}); use a multiple of {world}"
        )
    return value // world


def process_batches(config: TrainConfig, world: int) -> ProcessBatches:
    """Split the config's global batch sizes among ``world`` processes.

    A run on P processes takes the optimiser steps of a one-process run: each step sees
    ``mini_batch_size`` rows in all (``mini_batch_size / P`` per process), so the phase has
    ``ppo_epochs * rows_per_phase / mini_batch_size`` steps whatever P, and the learning-rate
    schedule, sized for that count, holds. Raises ValueError naming the size that does not
    divide.
    """
    ppo = config.is_rl and config.algorithm == "ppo"
    rloo = config.is_rl and config.algorithm == "rloo"
    prompts = _share("batch_prompts", config.batch_prompts, world, "prompts per step")
    rows = prompts * config.k  # bon_sft: k = 1
    mini = (
        _share("mini_batch_size", config.mini_batch_size, world, "rows per optimiser step")
        if ppo
        else None
    )
    micro = None
    if config.micro_batch_size is not None:
        micro = _share(
            "micro_batch_size", config.micro_batch_size, world, "rows per forward/backward"
        )
        if rloo and micro % config.k:
            raise ValueError(
                f"micro_batch_size: {config.micro_batch_size} rows over {world} processes give "
                f"{micro} per process, not whole groups of k = {config.k}; use a multiple of "
                f"k * {world} = {config.k * world}"
            )
    return ProcessBatches(
        world=world, prompts=prompts, rows=rows, mini_batch=mini, micro_batch=micro
    )


class Timer:
    """Wall-clock seconds per part of a step (CUDA synchronised at the boundaries)."""

    def __init__(self, device: torch.device) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._cuda = device.type == "cuda"

    @contextmanager
    def __call__(self, part: str) -> Iterator[None]:
        if self._cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        try:
            yield
        finally:
            if self._cuda:
                torch.cuda.synchronize()
            self.seconds[part] += time.perf_counter() - start


class Stats:
    """Sums and counts of per-row values, reduced over processes into means."""

    def __init__(self) -> None:
        self._sum: dict[str, float] = defaultdict(float)
        self._count: dict[str, float] = defaultdict(float)
        self.rows: list[dict[str, Any]] = []  # per-sample records when config.log_samples

    def log_rows(self, rollout: Rollout, rows: slice, **values: torch.Tensor) -> None:
        """Keep one record per rollout row (prompt, reward and the given per-row values)."""
        cols = {k: v.detach().double().cpu().tolist() for k, v in values.items()}
        for j, (p, r) in enumerate(
            zip(rollout.prompt_index[rows], rollout.rewards[rows], strict=True)
        ):
            self.rows.append(
                {"prompt_index": int(p), "reward": float(r), **{k: c[j] for k, c in cols.items()}}
            )

    def add(self, name: str, values: Any, count: float | None = None) -> None:
        """Add per-row values (array/tensor) or, with ``count``, an already summed value."""
        if count is None:
            v = values.detach().double().cpu() if isinstance(values, torch.Tensor) else values
            v = np.asarray(v, dtype=np.float64).ravel()
            self._sum[name] += float(v.sum())
            self._count[name] += v.size
        else:
            self._sum[name] += float(values)
            self._count[name] += float(count)

    def add_clustered(self, name: str, values: torch.Tensor, groups: Any) -> None:
        """Add per-row values whose standard error is taken over groups (the rows' prompts).

        Rows of one prompt share it and are not independent; their group means are. ``reduce``
        reports the mean of the group means as ``name`` and its standard error as ``name_se``.
        """
        v = values.detach().double().cpu().numpy().ravel()
        _, inverse, counts = np.unique(
            np.asarray(groups).ravel(), return_inverse=True, return_counts=True
        )
        means = np.bincount(inverse, weights=v) / counts
        self._sum[name] += float(means.sum())
        self._count[name] += means.size
        self._sum[f"{name}__sumsq"] += float((means**2).sum())
        self._count[f"{name}__sumsq"] += means.size

    def reduce(self, accelerator: Any) -> dict[str, float]:
        """Means over all processes' rows (a sum of sums over a sum of counts)."""
        names = sorted(self._sum)
        if not names:
            return {}
        packed = torch.tensor(
            [[self._sum[n] for n in names], [self._count[n] for n in names]],
            dtype=torch.float64,
            device=accelerator.device,
        )
        if accelerator.num_processes > 1:
            packed = accelerator.reduce(packed, reduction="sum")
        packed = packed.cpu()
        out = {n: float(packed[0, i] / max(packed[1, i], 1.0)) for i, n in enumerate(names)}
        for n in [n for n in names if n.endswith("__sumsq")]:
            base, count = n[: -len("__sumsq")], float(packed[1, names.index(n)])
            var = (out.pop(n) - out[base] ** 2) * count / max(count - 1.0, 1.0)
            out[f"{base}_se"] = float(np.sqrt(max(var, 0.0) / count)) if count > 1 else float("nan")
        for rows in ("reward", "target_reward"):  # rows over all processes
            if rows in names:
                out["num_samples"] = float(packed[1, names.index(rows)])
                break
        return out


@dataclass
class Rollout:
    """One phase's samples on this process, with their rewards."""

    completions: Completions
    prompt_index: np.ndarray  # (B,) index into the train prompts (the rows of F_hat)
    prompts: list[str]  # (B,) the prompt text of each row
    rewards: np.ndarray  # (B,) task reward r
    prompt_ids: torch.Tensor  # (B, Lp) on the device
    prompt_mask: torch.Tensor
    token_ids: torch.Tensor  # (B, T) trimmed to the longest completion, on the device
    mask: torch.Tensor

    def __len__(self) -> int:
        return len(self.prompt_index)


@dataclass
class Context:
    """A run's live objects, handed to each algorithm's step function."""

    config: TrainConfig
    setup: TrainSetup
    accelerator: Any
    module: Any  # PolicyWithValue, prepared (possibly DDP-wrapped)
    policy: Any  # the unwrapped causal LM pi_theta
    reference: Any  # pi_ref (frozen; shares the policy's frozen trunk when possible)
    trunk: TrunkCache
    policy_blocks: Any
    reference_blocks: Any
    optimizer: Any
    scheduler: Any
    prompt_logprob_cache: dict[int, float]
    precision: str = "fp32"  # vbon.precision: the numerical policy of every forward pass
    batches: ProcessBatches | None = None  # this process's batch sizes (process_batches)
    offline_log_z: np.ndarray | None = None  # vbon_offline: per-prompt log Z from references
    anchor: Any = None  # bond/jbond with anchor_ema > 0: the EMA anchor (vbon.train.bond.Anchor)

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    @property
    def rank(self) -> int:
        return self.accelerator.process_index

    def autocast(self) -> Any:
        """The run's numerical policy (``vbon.precision``), on a CPU as on a GPU: the
        reference samples behind F_hat are drawn under the same one."""
        return precision_context(self.precision, self.device)

    @property
    def local(self) -> ProcessBatches:
        """This process's batch sizes."""
        if self.batches is None:
            self.batches = process_batches(self.config, self.accelerator.num_processes)
        return self.batches

    def reference_replay(self, trunk: dict[str, torch.Tensor], blocks: Any = None) -> Any:
        """Run pi_ref's blocks (or ``blocks``: the anchor's) on the frozen trunk's activations
        that ``trunk`` recorded in the policy's forward (``TrunkCache``), or nothing when there
        were none to reuse."""
        if "hidden" not in trunk:
            return nullcontext()
        return self.trunk.replay(
            self.reference_blocks if blocks is None else blocks, trunk["hidden"]
        )

    def global_sum(self, value: torch.Tensor) -> torch.Tensor:
        """``value`` summed over all processes (itself on one)."""
        if self.accelerator.num_processes == 1:
            return value
        flat = value.detach().reshape(-1).clone()  # gloo and NCCL alike reduce 1-d tensors
        return self.accelerator.reduce(flat, reduction="sum").reshape(value.shape)

    # -- prompts --------------------------------------------------------------------------------
    def step_prompts(self, step: int, count: int) -> np.ndarray:
        """This process's share of the ``count`` prompts of ``step``: epochs of permutations.

        Derived from (seed, step) alone, so a resumed run sees the same prompts.
        """
        n_prompts = len(self.setup.train_prompts)
        world = self.accelerator.num_processes
        if count % world:
            raise ValueError(f"batch_prompts: {count} must be divisible by the {world} processes")
        positions = step * count + np.arange(count)
        epochs = positions // n_prompts
        out = np.empty(count, dtype=np.int64)
        for e in np.unique(epochs):
            perm = np.random.default_rng([self.config.seed, int(e)]).permutation(n_prompts)
            sel = epochs == e
            out[sel] = perm[positions[sel] % n_prompts]
        share = count // world
        return out[self.rank * share : (self.rank + 1) * share]

    # -- rollouts ------------------------------------------------------------------------------
    def rollout(self, step: int, timer: Timer) -> Rollout:
        """Sample k completions for this process's prompts of ``step``; score them with r."""
        cfg, s = self.config, self.setup
        idx = self.step_prompts(step, cfg.batch_prompts)
        texts = [s.train_prompts[i] for i in idx]
        with timer("generate"), self.autocast():
            comps = sample(
                self.policy,
                s.tokenizer,
                texts,
                cfg.k,
                **s.sampling.kwargs(),
                batch_size=len(texts) * cfg.k,
                seed=step_seed(cfg.seed, step, self.rank),
            )
        prompt_index = idx[comps.prompt_index]
        prompts = [s.train_prompts[i] for i in prompt_index]
        with timer("reward"):
            rewards = np.asarray(s.reward_fn(prompts, comps.texts, eos=comps.ended), dtype=float)
            if rewards.shape != (len(comps),):
                raise ValueError(f"reward_fn: returned shape {rewards.shape}, want ({len(comps)},)")
        width = max(int(comps.mask.sum(1).max()), 1)  # drop all-padding columns
        dev = self.device
        return Rollout(
            completions=comps,
            prompt_index=prompt_index,
            prompts=prompts,
            rewards=rewards,
            prompt_ids=comps.prompt_ids.to(dev),
            prompt_mask=comps.prompt_mask.to(dev),
            token_ids=comps.token_ids[:, :width].to(dev),
            mask=comps.mask[:, :width].to(dev),
        )

    # -- the score R -----------------------------------------------------------------------------
    def log_cdf(self, rollout: Rollout) -> np.ndarray | None:
        """Each row's quantile score against its own prompt's reference rewards: f(F) for
        vbon (``transform``), log F for vbon_exact, both estimated by ``cdf_estimator``."""
        cfg = self.config
        if cfg.method not in ("vbon", "vbon_exact"):
            return None
        if self.setup.train_cdf is None:
            raise ValueError("setup: vbon needs train_cdf (F_hat of the train prompts)")
        vbon = cfg.method == "vbon"
        return quantile_scores(
            self.setup.train_cdf,
            rollout.rewards,
            rollout.prompt_index,
            estimator=cfg.cdf_estimator,
            transform=cfg.transform if vbon else "log",
            t=cfg.transform_t if vbon else None,
        )

    def score(
        self, rollout: Rollout, rows: slice, log_cdf: np.ndarray | None, ref_logprob: torch.Tensor
    ) -> torch.Tensor:
        """The reward R of the paper's objectives for rows ``rows``: f(F_hat), the exact reward, or r.

        ``ref_logprob`` is log pi_ref(y | x), the completion's sequence log-probability, needed
        by vbon_exact. Then the authors' eos_score and the score clip apply.
        """
        cfg = self.config
        if cfg.method == "kl_rl":
            out = rollout.rewards[rows]
        elif cfg.method == "vbon":
            out = log_cdf[rows]  # f(F), already transformed
        else:
            lp = ref_logprob.detach().double().cpu().numpy()
            if cfg.exact_ref_with_prompt:
                lp = lp + self.prompt_logprobs(rollout, rows)
            out = vbon_reward(
                log_cdf[rows], cfg.n, "exact", ref_logprob=np.minimum(lp, 0.0), scaling=cfg.scaling
            )
        out = np.asarray(out, dtype=np.float64)
        if cfg.eos_score is not None:
            out = np.where(rollout.completions.ended[rows], out, cfg.eos_score)
        if cfg.score_clip is not None:
            out = np.clip(out, -cfg.score_clip, cfg.score_clip)
        return torch.as_tensor(out, dtype=torch.float32, device=self.device)

    @torch.no_grad()
    def prompt_logprobs(self, rollout: Rollout, rows: slice) -> np.ndarray:
        """log pi_ref(x) of each row's prompt tokens after the first (the authors' quirk)."""
        out = np.empty(len(rollout.prompt_index[rows]))
        for j, (p, ids, att) in enumerate(
            zip(
                rollout.prompt_index[rows],
                rollout.prompt_ids[rows],
                rollout.prompt_mask[rows],
                strict=True,
            )
        ):
            key = int(p)
            if key not in self.prompt_logprob_cache:
                real = ids[att.bool()][None]
                with self.autocast():
                    logits = self.reference(input_ids=real, use_cache=False).logits.float()
                logp = torch.log_softmax(logits[:, :-1] / self.setup.sampling.temperature, -1)
                value = logp.gather(-1, real[:, 1:, None]).sum()
                self.prompt_logprob_cache[key] = float(value)
            out[j] = self.prompt_logprob_cache[key]
        return out

    def clip_and_step(self) -> float:
        """Clip gradients, take the optimiser and scheduler steps; returns the gradient norm."""
        norm = 0.0
        if self.config.max_grad_norm is not None:
            params = [p for p in self.module.parameters() if p.requires_grad]
            # max_grad_norm 0: no clipping (an infinite bound scales by 1), the norm still logged.
            bound = self.config.max_grad_norm or float("inf")
            total = self.accelerator.clip_grad_norm_(params, bound)
            norm = float(total) if total is not None else 0.0
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return norm

    def sync_context(self, last: bool) -> Any:
        """No gradient all-reduce on all but the last micro-batch (gradient accumulation)."""
        if last or self.accelerator.num_processes == 1:
            return nullcontext()
        return self.accelerator.no_sync(self.module)
