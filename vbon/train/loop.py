"""The training loop shared by every method: ``train(config) -> TrainResult``.

rollout -> reward -> update -> periodic evaluation on test prompts -> one JSONL row per step, on
accelerate (one CPU, one GPU in bf16, or ``accelerate launch`` with several processes). Trainable
weights are fp32 master weights whatever the checkpoint's dtype; every forward pass runs under
the run's precision (``vbon.precision``), the one its reference samples were drawn at.

Run directory (``config.run_dir()``)::

    config.json          the config (identity of the run)
    metrics.jsonl        one row per step ("phase": "train") and per evaluation ("phase": "eval")
    samples-rank<r>.jsonl   per-rollout-row records when config.log_samples
    checkpoints/step-XXXXXX/  trainable.safetensors (the weights that train), optimizer.pt,
                         scheduler.pt, rng-<r>.pt (per process), metrics.jsonl, state.json
    final/               the policy (save_pretrained, safetensors) + tokenizer (+ value_head.safetensors)
    result.json          written last: the run is finished

Calling ``train`` again with the same config returns the finished run without training (sweeps
in notebooks rely on it); ``resume=True`` continues an interrupted run from its last checkpoint
and, with fixed seeds on a CPU, logs exactly the metrics of an uninterrupted run: every random
draw of step t is seeded from (seed, t, process), and the checkpoint restores weights, optimiser,
scheduler and RNG states.

Safe reruns: one file lock per run directory (``<run_dir>.lock``) makes a second process that
trains the same config wait, then load the finished run. A run directory holding an interrupted
run (checkpoints or metrics but no result.json) is never silently overwritten: without
``resume=True`` (which the sweeps pass) ``train`` refuses, unless ``overwrite=True``, which
starts over and wins over ``resume``. Each checkpoint's state.json records the sha256 and size
of every file beside it; a damaged newest checkpoint is named in a warning and the run resumes
from the previous intact one (``keep_checkpoints`` defaults to 2 so that there is one).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import random
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from vbon.precision import (
    precision_context,
    resolve_mixed_precision,
    sampling_precision,
    upcast_trainable,
)
from vbon.train.common import TIME_PARTS, Context, Timer, process_batches
from vbon.train.config import TrainConfig
from vbon.train.modeling import (
    PolicyWithValue,
    TrunkCache,
    decoder_blocks,
    freeze_bottom,
    separable_head,
    shared_reference,
    trunk_trains,
)
from vbon.train.setup import TrainSetup, build_setup

__all__ = ["TrainResult", "train", "load_run", "latest_checkpoint", "checkpoint_problem"]

EVAL_SEED_OFFSET = 7919


def eval_batch_size(eval_k: int, device: Any) -> int:
    """Sequences per sampling call of a run's evaluation: its batches, and so its draws, are
    the same wherever the run is evaluated (the trainer, ``vbon.evaluate.evaluate_run``)."""
    return max(256 if torch.device(device).type == "cuda" else 64, eval_k)


EVAL_PROMPTS = "eval_prompts.csv"


@dataclass
class TrainResult:
    """A finished run: where it lives, its final metrics and its whole metric history."""

    run_dir: Path
    policy_path: Path
    config: TrainConfig
    metrics: dict[str, float]  # the last evaluation (reward, win_rate, kl, ... with _se)
    train_metrics: dict[str, float]  # the last training step's statistics
    history: list[dict[str, Any]] = field(repr=False, default_factory=list)
    loaded: bool = False  # True when train() found the run finished and did not train

    def load_policy(self, **kwargs: Any) -> tuple[Any, Any]:
        """(model, tokenizer) of the final policy, through ``vbon.models.load_causal_lm``."""
        from vbon.models import load_causal_lm

        return load_causal_lm(self.policy_path, **kwargs)

    def per_prompt(self) -> Any:
        """The final evaluation per test prompt (a DataFrame: prompt, samples, reward,
        win_rate, kl_k1, kl_k3, kl_rb, length, eos), or None for a run evaluated without it."""
        import pandas as pd

        path = self.run_dir / EVAL_PROMPTS
        return pd.read_csv(path) if path.is_file() else None

    def frame(self, phase: str | None = None) -> Any:
        """The history as a pandas DataFrame (optionally one phase: "train" or "eval")."""
        import pandas as pd

        df = pd.DataFrame(self.history)
        return df if phase is None else df[df["phase"] == phase].reset_index(drop=True)


# -- files -------------------------------------------------------------------------------------
def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _append_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("a") as f:
        for row in rows:
            f.write(json.dumps(row, default=float) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=float) + "\n")
    os.replace(tmp, path)


def _saved_config(run_dir: Path) -> TrainConfig:
    """The config.json of a run directory, or ValueError naming the file."""
    import warnings

    from vbon.cdf import IllPosedWarning

    path = run_dir / "config.json"
    try:
        with warnings.catch_warnings():  # the run was warned about when it was configured
            warnings.simplefilter("ignore", IllPosedWarning)
            return TrainConfig.from_json(path)
    except (OSError, ValueError) as exc:  # JSONDecodeError is a ValueError
        raise ValueError(
            f"run_name: {path} cannot be read ({exc}); pass overwrite=True to start the run over"
        ) from None


def load_run(run_dir: str | Path) -> TrainResult:
    """The ``TrainResult`` of a finished run directory."""
    run_dir = Path(run_dir)
    try:
        result = json.loads((run_dir / "result.json").read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"run_dir: no finished run at {run_dir} ({exc})") from None
    history = _read_jsonl(run_dir / "metrics.jsonl")
    return TrainResult(
        run_dir=run_dir,
        policy_path=run_dir / "final",
        config=_saved_config(run_dir),
        metrics=result["metrics"],
        train_metrics=result["train_metrics"],
        history=history,
        loaded=True,
    )


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


# What a checkpoint holds besides state.json (per-process rng-<r>.pt files come on top).
_CHECKPOINT_FILES = ("trainable.safetensors", "optimizer.pt", "scheduler.pt", "metrics.jsonl")


def checkpoint_problem(checkpoint: str | Path) -> str | None:
    """Why a checkpoint directory cannot be resumed from, or None when it is intact.

    state.json is written last and lists the sha256 and size of every other file; checkpoints
    written before it did are checked for the presence of their files only.
    """
    ckpt = Path(checkpoint)
    try:
        state = json.loads((ckpt / "state.json").read_text())
    except (OSError, ValueError):
        return "has no readable state.json"
    files = state.get("files")
    if files is None:
        missing = [n for n in _CHECKPOINT_FILES if not (ckpt / n).is_file()]
        return f"lacks {', '.join(missing)}" if missing else None
    for name, record in sorted(files.items()):
        path = ckpt / name
        if not path.is_file():
            return f"lacks {name}"
        if path.stat().st_size != record["bytes"] or _file_sha256(path) != record["sha256"]:
            return f"has a damaged {name} (its sha256 is not the one state.json recorded)"
    return None


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest intact checkpoint of a run, or None.

    A newer checkpoint that is damaged (see :func:`checkpoint_problem`) is named in a warning
    and skipped, so a resume falls back to the previous one.
    """
    root = Path(run_dir) / "checkpoints"
    for ckpt in sorted(root.glob("step-*"), reverse=True):
        problem = checkpoint_problem(ckpt)
        if problem is None:
            return ckpt
        warnings.warn(
            f"checkpoint {ckpt} {problem}; it is skipped (an older checkpoint, if any, is used)",
            stacklevel=2,
        )
    return None


# -- RNG state as tensors (torch.load(weights_only=True) reads it back) -------------------------
def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()  # noqa: NPY002 - the global state other code may use
    py_state = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": [py_state[0], list(py_state[1]), py_state[2]],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))  # noqa: NPY002
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# -- the run -----------------------------------------------------------------------------------
def _mixed_precision(config: TrainConfig) -> str:
    return resolve_mixed_precision(
        config.mixed_precision, "cuda" if torch.cuda.is_available() else "cpu"
    )


def _accelerator(config: TrainConfig) -> Any:
    """The run's Accelerator. accelerate keeps one state per process and refuses a second
    mixed precision; one process may train runs of several precisions in turn (a notebook, a
    test), so outside a launch a state of another precision is dropped first."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    mixed = _mixed_precision(config)
    state = AcceleratorState._shared_state
    if (
        int(os.environ.get("WORLD_SIZE", "1")) <= 1
        and state
        and state.get("_mixed_precision") not in (None, mixed)
    ):
        AcceleratorState._reset_state()
    return Accelerator(cpu=not torch.cuda.is_available(), mixed_precision=mixed)


def _finished(run_dir: Path, config: TrainConfig) -> bool:
    if not (run_dir / "result.json").is_file():
        return False
    saved = _saved_config(run_dir)
    if saved.identity() != config.identity():
        raise ValueError(
            f"run_name: {run_dir} holds a finished run with a different config; choose another "
            "run_name or pass overwrite=True"
        )
    return True


def _check_restart(run_dir: Path, config: TrainConfig) -> None:
    """Refuse to start over an interrupted run unless asked (before any model is loaded)."""
    if config.overwrite or not run_dir.is_dir():
        return
    checkpoints = sorted(p.name for p in (run_dir / "checkpoints").glob("step-*"))
    rows = (
        len(_read_jsonl(run_dir / "metrics.jsonl")) if (run_dir / "metrics.jsonl").is_file() else 0
    )
    if not checkpoints and not rows:
        return  # nothing was computed yet (at most a config.json)
    if config.resume:
        if (run_dir / "config.json").is_file() and (
            _saved_config(run_dir).identity() != config.identity()
        ):
            raise ValueError(
                f"resume: {run_dir} was started with a different config; resume needs the same "
                "one (or pass overwrite=True to start over)"
            )
        return
    found = ", ".join(
        ([f"checkpoints {', '.join(checkpoints)}"] if checkpoints else [])
        + ([f"{rows} metric rows"] if rows else [])
    )
    raise ValueError(
        f"resume: {run_dir} holds an interrupted run ({found}, no result.json); pass "
        "resume=True to continue it from its last checkpoint, or overwrite=True to start over"
    )


def _scheduler(config: TrainConfig, optimizer: Any, total: int) -> Any:
    warm = config.warmup_steps

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if config.lr_schedule == "constant":
            return 1.0
        frac = min(1.0, (step - warm) / max(1, total - warm))
        if config.lr_schedule == "linear":
            return 1.0 - frac
        return 0.5 * (1.0 + math.cos(math.pi * frac))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _optimizer_steps(config: TrainConfig) -> int:
    if config.is_rl and config.algorithm == "ppo":
        return config.steps * config.ppo_epochs * (config.rows_per_phase // config.mini_batch_size)
    return config.steps


class _Run:
    """One call of ``train``: builds the context, then steps, logs, evaluates, checkpoints."""

    def __init__(self, config: TrainConfig, setup: TrainSetup | None) -> None:
        from accelerate.utils import DistributedType, set_seed

        self.config = config
        self.run_dir = config.run_dir()
        self.accelerator = _accelerator(config)
        acc = self.accelerator
        self.main = acc.is_main_process
        set_seed(config.seed)  # same init on every process (value head); steps reseed per rank
        # Per-process batch sizes, checked before any model loads.
        self.batches = process_batches(config, acc.num_processes)
        # One numerical policy for rollouts, evaluation, updates and the reference samples.
        self.precision = sampling_precision(config.mixed_precision, acc.device)
        self.setup = (
            setup
            if setup is not None
            else build_setup(config, device=acc.device, precision=self.precision)
        )
        s = self.setup
        policy = s.policy.to(acc.device).eval()  # eval: dropout off, in policy and reference
        n_frozen = freeze_bottom(policy, config.num_layers_unfrozen, rule=config.trainable)
        sharded = acc.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)
        # fp32 master weights before pi_ref copies the trainable part; under "fp32" the frozen
        # part is upcast too, as nothing autocasts a half trunk to meet the fp32 blocks, and
        # under FSDP, whose flat parameters need one dtype (its MixedPrecision casts them).
        upcast_trainable(
            policy,
            everything=self.precision == "fp32" or acc.distributed_type == DistributedType.FSDP,
        )
        share = config.share_reference and not sharded
        if s.reference is not None:
            reference = s.reference.to(acc.device).eval().requires_grad_(False)
            if self.precision == "fp32":
                upcast_trainable(reference, everything=True)
            share = False
        elif share:
            # trainable="authors": trlx's hydra pi_ref, on the policy's current trunk (drifts).
            reference = shared_reference(policy, share_trunk=config.trainable == "authors")
        else:
            import copy

            reference = copy.deepcopy(policy).requires_grad_(False).eval()
        # Evaluation's KL is against the initial policy, also when training's pi_ref drifts
        # with a trainable trunk (as the authors' evaluation used a separate frozen model).
        drifts = share and trunk_trains(policy)
        self.eval_reference = shared_reference(policy) if drifts else reference
        for model in (policy, reference, self.eval_reference):
            with precision_context(self.precision, acc.device):  # a half trunk, fp32 top
                separable_head(model)  # cached now, before any TrunkCache.replay patches blocks
        # A trunk that trains (wpe under trainable="authors") changes its output: no replay.
        self.trunk = TrunkCache(decoder_blocks(policy), n_frozen if share and not drifts else 0)
        module = PolicyWithValue(policy, with_value_head=config.is_rl and config.algorithm == "ppo")
        params = [p for p in module.parameters() if p.requires_grad]
        if not params:
            raise ValueError("num_layers_unfrozen: nothing left to train")
        optimizer = torch.optim.AdamW(
            params,
            lr=config.lr,
            betas=config.adam_betas,
            eps=config.adam_eps,
            weight_decay=config.weight_decay,
        )
        # The scheduler is not passed to accelerate, which would step it once per process.
        self.scheduler = _scheduler(config, optimizer, _optimizer_steps(config))
        module, optimizer = acc.prepare(module, optimizer)
        unwrapped = acc.unwrap_model(module)
        self.ctx = Context(
            config=config,
            setup=s,
            accelerator=acc,
            module=module,
            policy=unwrapped.lm,
            reference=reference,
            trunk=self.trunk,
            policy_blocks=decoder_blocks(unwrapped.lm),
            reference_blocks=decoder_blocks(reference),
            optimizer=optimizer,
            scheduler=self.scheduler,
            prompt_logprob_cache={},
            precision=self.precision,
            batches=self.batches,
        )
        if config.method in ("bond", "jbond") and config.anchor_ema > 0:
            from vbon.train.bond import Anchor

            if sharded:  # the EMA copy needs whole tensors, which FSDP/DeepSpeed shard
                raise ValueError(
                    f"method: {config.method} with a moving anchor runs on one process or "
                    "under DDP, not under FSDP or DeepSpeed"
                )

            self.ctx.anchor = Anchor(unwrapped.lm)
        self.metrics_path = self.run_dir / "metrics.jsonl"
        self.history: list[dict[str, Any]] = []

    # -- directory and checkpoints --------------------------------------------------------------
    def prepare_dir(self) -> int:
        """Set up the run directory; returns the step to start from (after a resume)."""
        cfg, acc = self.config, self.accelerator
        # overwrite wins: a sweep passes resume=True, and overwrite=True must still start over.
        ckpt = latest_checkpoint(self.run_dir) if cfg.resume and not cfg.overwrite else None
        if cfg.resume and not cfg.overwrite and ckpt is None and self.main:
            if any((self.run_dir / "checkpoints").glob("step-*")):
                warnings.warn(
                    f"resume: {self.run_dir} has no intact checkpoint; the run starts over",
                    stacklevel=2,
                )
        if ckpt is not None:
            saved = _saved_config(self.run_dir)
            if saved.identity() != cfg.identity():
                raise ValueError(
                    f"resume: {self.run_dir} was started with a different config; resume needs "
                    "the same one"
                )
            return self.load_checkpoint(ckpt)
        if self.main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            for name in ("metrics.jsonl", "result.json", EVAL_PROMPTS):
                (self.run_dir / name).unlink(missing_ok=True)
            for path in self.run_dir.glob("samples-rank*.jsonl"):
                path.unlink()
            for name in ("checkpoints", "final"):
                shutil.rmtree(self.run_dir / name, ignore_errors=True)
            cfg.to_json(self.run_dir / "config.json")
        acc.wait_for_everyone()
        return 0

    def trainable_state(self) -> dict[str, torch.Tensor]:
        module = self.accelerator.unwrap_model(self.ctx.module)
        return {
            n: p.detach().to("cpu", copy=True).contiguous()
            for n, p in module.named_parameters()
            if p.requires_grad
        }

    def save_checkpoint(self, step: int) -> None:
        from safetensors.torch import save_file

        acc = self.accelerator
        root = self.run_dir / "checkpoints"
        tmp = root / f".tmp-step-{step:06d}"
        if self.main:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        acc.wait_for_everyone()
        torch.save(_rng_state(), tmp / f"rng-{acc.process_index}.pt")
        if self.main:
            save_file(self.trainable_state(), tmp / "trainable.safetensors")
            if self.ctx.anchor is not None:  # iterated BOND's moving anchor
                save_file(self.ctx.anchor.state_dict(), tmp / "anchor.safetensors")
            torch.save(self.ctx.optimizer.state_dict(), tmp / "optimizer.pt")
            torch.save(self.scheduler.state_dict(), tmp / "scheduler.pt")
        acc.wait_for_everyone()
        if self.main:
            (tmp / "metrics.jsonl").write_text(
                "".join(json.dumps(r, default=float) + "\n" for r in self.history)
            )
            # Recorded last, with what every file holds: a damaged file is found on resume.
            files = {
                p.name: {"sha256": _file_sha256(p), "bytes": p.stat().st_size}
                for p in sorted(tmp.iterdir())
                if p.is_file()
            }
            _write_json(
                tmp / "state.json",
                {"step": step, "metrics_rows": len(self.history), "files": files},
            )
            final = root / f"step-{step:06d}"
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
            done = sorted(p for p in root.glob("step-*") if (p / "state.json").is_file())
            for old in done[: -self.config.keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)
        acc.wait_for_everyone()

    def load_checkpoint(self, ckpt: Path) -> int:
        from safetensors.torch import load_file

        acc = self.accelerator
        state = json.loads((ckpt / "state.json").read_text())
        weights = load_file(ckpt / "trainable.safetensors")
        module = acc.unwrap_model(self.ctx.module)
        with torch.no_grad():
            for n, p in module.named_parameters():
                if n in weights:
                    p.copy_(weights[n].to(p.device, p.dtype))
        if self.ctx.anchor is not None:
            self.ctx.anchor.load_state_dict(load_file(ckpt / "anchor.safetensors"))
        self.ctx.optimizer.load_state_dict(
            torch.load(ckpt / "optimizer.pt", weights_only=True, map_location=acc.device)
        )
        self.scheduler.load_state_dict(torch.load(ckpt / "scheduler.pt", weights_only=True))
        rng = ckpt / f"rng-{acc.process_index}.pt"
        if rng.is_file():
            _set_rng_state(torch.load(rng, weights_only=True))
        # The metrics so far are the checkpoint's copy: rows the interrupted process logged after
        # the checkpoint are dropped.
        self.history = _read_jsonl(ckpt / "metrics.jsonl")[: state["metrics_rows"]]
        acc.wait_for_everyone()
        if self.main:
            tmp = self.metrics_path.with_suffix(".tmp")
            tmp.write_text("".join(json.dumps(r, default=float) + "\n" for r in self.history))
            os.replace(tmp, self.metrics_path)
        acc.wait_for_everyone()
        return int(state["step"])

    def log(self, rows: list[dict[str, Any]]) -> None:
        # NaN (a standard error over one prompt) is not JSON: it is written, and kept, as None.
        rows = [
            {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in r.items()}
            for r in rows
        ]
        self.history.extend(rows)
        if self.main:
            _append_jsonl(self.metrics_path, rows)

    # -- evaluation ----------------------------------------------------------------------------
    def evaluate(self, step: int) -> dict[str, Any]:
        """pi_theta on the test prompts: reward, win rate, KL (vbon.evaluate), on the main process."""
        from vbon.evaluate import evaluate_policy

        cfg, s, ctx = self.config, self.setup, self.ctx
        row: dict[str, Any] = {}
        start = time.perf_counter()
        if self.main:
            with torch.no_grad(), ctx.autocast():
                result = evaluate_policy(
                    ctx.policy,
                    self.eval_reference,
                    s.tokenizer,
                    s.test_prompts,
                    s.reward_fn,
                    s.test_ref,
                    k=cfg.eval_k,
                    **s.sampling.kwargs(),
                    batch_size=eval_batch_size(cfg.eval_k, ctx.device),
                    seed=cfg.seed + EVAL_SEED_OFFSET,  # the same draws at every evaluation
                    win_method=cfg.win_method,
                )
                row = {"step": step, "phase": "eval", **result.as_dict()}
                if s.extra_eval is not None:
                    row.update(s.extra_eval(ctx.policy))
                if step == cfg.steps and result.per_prompt is not None:
                    # The final evaluation per test prompt: what the notebooks' intervals
                    # resample (prompts and seeds), beside the means in metrics.jsonl.
                    tmp = self.run_dir / ".eval_prompts.csv.tmp"
                    result.per_prompt.to_csv(tmp, index=False)
                    os.replace(tmp, self.run_dir / EVAL_PROMPTS)
            row["time_eval"] = time.perf_counter() - start
        self.accelerator.wait_for_everyone()
        if self.main:
            self.log([row])
        return row

    # -- the loop -------------------------------------------------------------------------------
    def run(self) -> TrainResult:
        from vbon.train.bon_sft import bon_sft_step
        from vbon.train.bonbon import bonbon_step
        from vbon.train.bond import bond_step
        from vbon.train.offline import offline_step
        from vbon.train.ppo import ppo_step
        from vbon.train.rloo import rloo_step

        cfg, acc, ctx = self.config, self.accelerator, self.ctx
        step_fn = {
            "bon_sft": bon_sft_step,
            "vbon_offline": offline_step,
            "bonbon": bonbon_step,
            "bond": bond_step,
            "jbond": bond_step,
        }.get(cfg.method, ppo_step if cfg.algorithm == "ppo" else rloo_step)
        start = self.prepare_dir()
        if start == 0 and cfg.eval_at_start and cfg.evaluate:
            self.evaluate(0)
        bar = tqdm(
            total=cfg.steps,
            initial=start,
            desc=f"train {cfg.method}",
            unit="step",
            disable=not (cfg.progress and self.main),
        )
        last_eval = start if start else (0 if cfg.eval_at_start else -1)
        if not cfg.evaluate:
            last_eval = cfg.steps  # nothing to evaluate at the end either
        samples_path = self.run_dir / f"samples-rank{acc.process_index}.jsonl"
        for step in range(start, cfg.steps):
            t0, cpu0 = time.perf_counter(), time.process_time()
            timer = Timer(acc.device)
            stats = step_fn(ctx, step, timer)
            metrics = stats.reduce(acc)
            parts = {f"time_{p}": timer.seconds.get(p, 0.0) for p in TIME_PARTS}
            elapsed = time.perf_counter() - t0
            row = {
                "step": step + 1,
                "phase": "train",
                **metrics,
                "lr": self.scheduler.get_last_lr()[0],
                # Optimiser steps so far, over all processes alike (the schedule's count).
                "optimizer_steps": self.scheduler.last_epoch,
                **parts,
                "time_step": elapsed,
                "time_other": elapsed - sum(parts.values()),
                # CPU seconds of this process: unlike wall time, not inflated when other
                # processes share the cores (the throughput benchmark compares both).
                "cpu_time_step": time.process_time() - cpu0,
                "samples_per_s": metrics.get("num_samples", 0.0) / elapsed,
            }
            self.log([row])
            if cfg.log_samples and stats.rows:
                _append_jsonl(samples_path, [{"step": step + 1, **r} for r in stats.rows])
            bar.update(1)
            bar.set_postfix(
                {k: f"{metrics[k]:.3g}" for k in ("reward", "kl", "nll") if k in metrics}
            )
            due = cfg.evaluate and cfg.eval_every and (step + 1) % cfg.eval_every == 0
            if due and step + 1 < cfg.steps:
                self.evaluate(step + 1)
                last_eval = step + 1
            if cfg.save_every and (step + 1) % cfg.save_every == 0 and step + 1 < cfg.steps:
                self.save_checkpoint(step + 1)
        bar.close()
        if last_eval != cfg.steps:
            self.evaluate(cfg.steps)
        return self.finish()

    def replicas_in_sync(self) -> bool:
        """Whether every process ends with the same trainable weights (DDP kept them in sync)."""
        total = torch.zeros(1, dtype=torch.float64, device=self.accelerator.device)
        for p in self.accelerator.unwrap_model(self.ctx.module).parameters():
            if p.requires_grad:
                total += p.detach().double().sum()
        gathered = self.accelerator.gather(total).cpu()
        return bool(torch.all(gathered == gathered[0]))

    def finish(self) -> TrainResult:
        from safetensors.torch import save_file

        from vbon.models import weights_quietly

        acc, ctx = self.accelerator, self.ctx
        final = self.run_dir / "final"
        evals = [r for r in self.history if r.get("phase") == "eval"]
        trains = [r for r in self.history if r.get("phase") == "train"]
        result = {
            "metrics": evals[-1] if evals else {},
            "train_metrics": trains[-1] if trains else {},
            "steps": self.config.steps,
            "num_processes": acc.num_processes,
            "replicas_in_sync": self.replicas_in_sync(),
        }
        if self.main:
            tmp = self.run_dir / ".final.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            with weights_quietly():
                ctx.policy.save_pretrained(tmp, safe_serialization=True)
            self.setup.tokenizer.save_pretrained(tmp)
            module = acc.unwrap_model(ctx.module)
            if module.v_head is not None:
                save_file(
                    {
                        k: v.detach().cpu().contiguous()
                        for k, v in module.v_head.state_dict().items()
                    },
                    tmp / "value_head.safetensors",
                )
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
            shutil.rmtree(self.run_dir / "checkpoints", ignore_errors=True)
            _write_json(self.run_dir / "result.json", result)
        acc.wait_for_everyone()
        return TrainResult(
            run_dir=self.run_dir,
            policy_path=final,
            config=self.config,
            metrics=result["metrics"],
            train_metrics=result["train_metrics"],
            history=list(self.history),
        )


def train(config: TrainConfig, setup: TrainSetup | None = None) -> TrainResult:
    """Train a policy as ``config`` says; the one entry point of notebooks, CLI and accelerate.

    Args:
        config: the run's ``TrainConfig``.
        setup: models, prompts, reward and references to use instead of building them from
            ``config.task`` (notebooks and tests pass hand-made ones).

    Returns:
        ``TrainResult`` (run directory, final evaluation, history, path of the saved policy).
        A finished run with the same config is loaded, not retrained (``overwrite=True`` forces
        retraining); ``resume=True`` continues an interrupted one from its last intact
        checkpoint.

    Raises:
        ValueError: the run directory holds an interrupted run and neither ``resume`` nor
            ``overwrite`` is set, or a run with another config; checked before any model loads.
    """
    if not isinstance(config, TrainConfig):
        raise ValueError(f"config: expected a TrainConfig, got {type(config).__name__}")
    run_dir = config.run_dir()
    # Two processes training one config (two notebooks, a sweep and a notebook): the second
    # waits here and then finds the run finished. Under accelerate all processes train it.
    lock: Any = contextlib.nullcontext()
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        from filelock import FileLock

        run_dir.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(run_dir) + ".lock")
    with lock:
        if not config.overwrite and _finished(run_dir, config):
            return load_run(run_dir)
        _check_restart(run_dir, config)
        from vbon.models import cpu_threads

        with cpu_threads(config.cpu_threads):
            return _Run(config, setup).run()
