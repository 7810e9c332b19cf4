"""Offline vBoN: the quantile-reward optimum fitted from the reference cache alone (QRPO's solver).

The optimum of E_pi[f(F(r(y)))] - beta KL(pi || pi_ref) is pi* = pi_ref exp(f(F) / beta) / Z,
and without ties F(r(y)) is uniform under pi_ref, so log Z = ``quantile_log_partition(f, beta)``
is known in closed form (for vBoN's f = log at beta = 1/(N-1), log Z = -log N). pi* is then the
one policy whose log-ratio satisfies, for every completion y,

    beta (log pi_theta(y | x) - log pi_ref(y | x)) = f(F(r(y))) - beta log Z.

QRPO (Matrenok, Moalla, Gulcehre 2025) regresses the left side onto the right over completions
drawn from pi_ref. Here they are the reference cache's own samples, the ones behind F_hat, so the
run generates nothing beyond the cache: the loss is the mean squared error over ``k`` cached
completions of each of ``batch_prompts`` prompts per step, with f(F) estimated as the online
vbon estimates it (``cdf_estimator``, ``transform``; the max_m first references per prompt are
both F_hat's data and the training data).

log Z. The closed form assumes F(r(y)) ~ Uniform(0, 1) under pi_ref, which fails when pi_ref
puts visible mass on single completions (ties: a completion of mass 0.17 takes one value of F,
not a sixth of the unit interval). The targets are then off by a constant the normalised policy
cannot absorb, and the squared error, weighted by pi_ref, is least where pi_ref is small: the
fit pushes the surplus onto rare completions. ``offline_log_z="references"`` estimates
log Z = log E_{pi_ref}[exp(f(F)/beta)] per prompt by its mean over the prompt's own references
instead (with F_hat as the targets use it): consistent with ties, and equal to the closed form
up to sampling error without them. "closed" (QRPO's) is the default.

Cached completions are stored as text: they are re-tokenised (as BoN-SFT's targets are; an
ended completion gets its EOS), and log pi_ref is taken on those tokens by the frozen reference
in the same step, so both sides of the regression see one token sequence.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.special import logsumexp

from vbon.cdf import quantile_scores
from vbon.objectives import quantile_log_partition
from vbon.train.bon_sft import sft_batch
from vbon.train.common import Context, Stats, Timer, step_seed
from vbon.train.modeling import sequence_logprobs

__all__ = ["offline_step", "reference_log_partition"]


def reference_log_partition(scores: np.ndarray, beta: float) -> np.ndarray:
    """log Z per prompt, estimated over its references: log mean_m exp(f(F_hat(r_m)) / beta).

    ``scores``: (P, M) f(F_hat) of each prompt's own reference rewards.
    """
    s = np.asarray(scores, dtype=np.float64) / beta
    return logsumexp(s, axis=1) - np.log(s.shape[1])


def _log_partition(ctx: Context) -> np.ndarray | float:
    """log Z of the targets: the closed form, or per prompt from its references (cached)."""
    cfg, s = ctx.config, ctx.setup
    if cfg.offline_log_z == "closed":
        return quantile_log_partition(cfg.transform, cfg.beta, cfg.transform_t)
    if ctx.offline_log_z is None:
        p, m = s.reference_rewards.shape
        scores = quantile_scores(
            s.train_cdf,
            s.reference_rewards,
            np.repeat(np.arange(p), m).reshape(p, m),
            estimator=cfg.cdf_estimator,
            transform=cfg.transform,
            t=cfg.transform_t,
        )
        ctx.offline_log_z = reference_log_partition(scores, cfg.beta)
    return ctx.offline_log_z


def offline_step(ctx: Context, step: int, timer: Timer) -> Stats:
    """One optimiser step of the squared error on ``k`` cached completions per prompt."""
    cfg, s = ctx.config, ctx.setup
    if s.reference_texts is None or s.train_cdf is None:
        raise ValueError("setup: vbon_offline needs reference_texts and train_cdf (the cache)")
    stats = Stats()
    prompts = ctx.step_prompts(step, cfg.batch_prompts)
    m = s.reference_rewards.shape[1]
    if cfg.k > m:
        raise ValueError(f"k: {cfg.k} cached completions per prompt and step, the cache has {m}")
    # k of the prompt's M references without replacement, from (seed, step, rank) alone.
    rng = np.random.default_rng(step_seed(cfg.seed, step, ctx.rank, stream=1))
    cols = rng.random((len(prompts), m)).argsort(axis=1)[:, : cfg.k]
    rows = np.repeat(prompts, cfg.k)
    cols = cols.ravel()
    rewards = s.reference_rewards[rows, cols]
    with timer("reward"):
        scores = quantile_scores(
            s.train_cdf,
            rewards,
            rows,
            estimator=cfg.cdf_estimator,
            transform=cfg.transform,
            t=cfg.transform_t,
        )
        log_z = _log_partition(ctx)
        log_z = log_z[rows] if isinstance(log_z, np.ndarray) else log_z
        target = torch.as_tensor(scores - cfg.beta * log_z, dtype=torch.float32, device=ctx.device)
    batch = sft_batch(
        s.tokenizer,
        [s.train_prompts[i] for i in rows],
        [s.reference_texts[i][j] for i, j in zip(rows, cols, strict=True)],
        [bool(s.reference_ended[i, j]) for i, j in zip(rows, cols, strict=True)],
    )
    batch = tuple(x.to(ctx.device) for x in batch)
    n_rows = len(rows)
    micro = min(ctx.local.micro_batch or n_rows, n_rows)
    temperature = s.sampling.temperature
    for start in range(0, n_rows, micro):
        sl = slice(start, start + micro)
        last = start + micro >= n_rows
        part = tuple(x[sl] for x in batch)
        with timer("backward"), ctx.sync_context(last), ctx.autocast():
            with ctx.trunk.record() as trunk:
                logp, _ = sequence_logprobs(ctx.module, *part, temperature=temperature)
        with timer("logprobs"), torch.no_grad(), ctx.autocast(), ctx.reference_replay(trunk):
            ref_logp, _ = sequence_logprobs(ctx.reference, *part, temperature=temperature)
        log_ratio = (logp - ref_logp).sum(-1)
        residual = cfg.beta * log_ratio - target[sl]
        with timer("backward"), ctx.sync_context(last):
            ctx.accelerator.backward(residual.pow(2).sum() / n_rows)
        stats.add("mse", residual.detach().pow(2))
        stats.add("target_reward", rewards[sl])
        stats.add("target", target[sl])
        # The log-ratio on pi_ref's samples: its mean is -KL(pi_ref || pi_theta), a gauge of
        # how far the fit has moved (the evaluation measures KL(pi_theta || pi_ref) itself).
        stats.add("ref_log_ratio", log_ratio.detach())
    with timer("backward"):
        stats.add("grad_norm", ctx.clip_and_step(), count=1)
    return stats
