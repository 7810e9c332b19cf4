"""PPO as in the authors' trlx setup (the paper's experiments).

Per phase: sample the rollout buffer; score each completion (log F_hat, exact vBoN reward or r);
per-token rewards are -beta * (log pi_old - log pi_ref) on every completion token plus the
(clipped) score on the last one (trlx's per-token k1 KL penalty with a terminal score); GAE with
gamma, lambda over V(x, y_<t) from a value head on the policy's last hidden state. Then
``ppo_epochs`` passes over the buffer in shuffled minibatches of ``mini_batch_size`` rows over all
processes (P processes take the optimiser steps of one), each one optimiser step on

    pg  = mean_t max(-A_t rho_t, -A_t clip(rho_t, 1 - eps, 1 + eps)),  rho_t = pi_theta / pi_old
    vf  = 0.5 mean_t max((V_t - G_t)^2, (clip(V_t, V_old +- eps_v) - G_t)^2)
    loss = pg + vf_coef * vf

with advantages whitened per minibatch (masked mean and std), as trlx does. The frozen trunk's
activations from the rollout pass are cached and replayed in every epoch, so each update
forward runs only the trainable top blocks.

``kl_estimator="rb"``: the per-token penalty becomes -beta KL_t, the exact KL between
pi_old's and pi_ref's next-token distributions at the token's prefix (``vbon.evaluate.kl_rb``'s
terms), and each update adds the pathwise gradient of beta sum_t KL_t(theta) on the buffer's
prefixes, divided by the same standard deviation the advantages were divided by when they are
whitened, so that the two parts of the KL gradient keep the ratio they have in the objective
(Amini, Vieira, Cotterell, NeurIPS 2025, train RLOO with it; this PPO form is vbon's). Measured
on the enumerable world (vbon N = 8, 2 seeds): with one on-policy epoch per phase rb and k1 end
equally near pi_BoN (exact KL 0.25-0.29 against 0.18-0.38 after 120 phases); with trlx's 4
epochs of 2 minibatches the pathwise term, re-applied on every pass over the buffer while the
clipped score-function part is not, holds the policy nearer pi_ref (KL to pi_ref 0.7-1.1
against 1.3, exact KL to pi_BoN 0.35-0.9 against 0.22-0.27 after 60 phases).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext

import numpy as np
import torch

from vbon.evaluate import next_token_kl
from vbon.train.common import Context, Stats, Timer
from vbon.train.modeling import sequence_log_softmax, unpack

__all__ = ["gae", "masked_whiten", "padded_whiten", "ppo_step"]


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimates and returns over completion tokens (B, T).

    Tokens after a row's end have no value: the bootstrap past the last token is 0.
    """
    maskf = mask.to(values.dtype)
    values = values * maskf
    advantages = torch.zeros_like(values)
    last = torch.zeros_like(values[:, 0])
    width = values.shape[1]
    for t in reversed(range(width)):
        next_value = values[:, t + 1] if t + 1 < width else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = (delta + gamma * lam * last) * maskf[:, t]
        advantages[:, t] = last
    return advantages, advantages + values


def masked_whiten(
    x: torch.Tensor,
    mask: torch.Tensor,
    eps: float = 1e-8,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
    *,
    return_scale: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """(x - mean) / std over the masked entries (and 1 / std with ``return_scale``).

    ``reduce`` sums a tensor over processes: the moments are then those of the whole minibatch,
    spread over the processes, as in a one-process run.
    """
    m = mask.to(x.dtype)
    if reduce is None:
        n = m.sum().clamp(min=1.0)
        mean = (x * m).sum() / n
        var = (((x - mean) * m) ** 2).sum() / n
    else:
        total = reduce(torch.stack([(x * m).sum(), m.sum()]))
        n = total[1].clamp(min=1.0)
        mean = total[0] / n
        var = reduce((((x - mean) * m) ** 2).sum()) / n
    scale = torch.rsqrt(var + eps)
    out = (x - mean) * scale * m
    return (out, scale) if return_scale else out


def padded_whiten(
    x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8, *, return_scale: bool = False
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """trlx's ``whiten`` of one forward batch (``whiten_advantages="authors"``): (x - mean) /
    std over every position up to the batch's longest completion, padding (advantage 0)
    included, with the unbiased variance; positions past that width are returned unchanged."""
    width = int(mask.sum(-1).max()) if mask.numel() else 0
    if width == 0:
        return (x, torch.ones((), dtype=x.dtype, device=x.device)) if return_scale else x
    head = x[:, :width]
    var, mean = torch.var_mean(head, correction=1 if head.numel() > 1 else 0)
    scale = torch.rsqrt(var + eps)
    out = x.clone()
    out[:, :width] = (head - mean) * scale
    return (out, scale) if return_scale else out


@torch.no_grad()
def _reference_all(
    ctx: Context, batch: tuple, hidden: torch.Tensor | None, idx: torch.Tensor, temperature: float
) -> torch.Tensor:
    """pi_ref's packed next-token log-softmax on a micro-batch of the buffer (recomputed rather
    than kept for the whole phase: rows x T x V floats), on the cached trunk when there is one."""
    replay = (
        ctx.trunk.replay(ctx.reference_blocks, hidden[idx]) if hidden is not None else nullcontext()
    )
    with ctx.autocast(), replay:
        return sequence_log_softmax(ctx.reference, *batch, temperature=temperature)[1]


def ppo_step(ctx: Context, step: int, timer: Timer) -> Stats:
    """One PPO phase: rollout, scores, per-token rewards, GAE, ppo_epochs of minibatch updates."""
    cfg = ctx.config
    stats = Stats()
    ro = ctx.rollout(step, timer)
    with timer("reward"):
        log_cdf = ctx.log_cdf(ro)
    rows = len(ro)
    temperature = ctx.setup.sampling.temperature
    # Sizes per process: mini_batch_size and micro_batch_size count rows over all processes,
    # so a phase takes the optimiser steps of a one-process run (process_batches).
    world = ctx.accelerator.num_processes
    mini = ctx.local.mini_batch or rows
    micro = ctx.local.micro_batch or mini
    chunk = min(micro, rows)
    rb = cfg.kl_estimator == "rb"
    old_logp, old_values, ref_logp, trunks, rb_kl = [], [], [], [], []
    with timer("logprobs"), torch.no_grad(), ctx.autocast():
        for start in range(0, rows, chunk):
            sl = slice(start, start + chunk)
            batch = (ro.prompt_ids[sl], ro.prompt_mask[sl], ro.token_ids[sl], ro.mask[sl])
            with ctx.trunk.record() as trunk:
                lp, lp_all, v = sequence_log_softmax(
                    ctx.module, *batch, temperature=temperature, full=rb
                )
            with ctx.reference_replay(trunk):
                lr, lr_all, _ = sequence_log_softmax(
                    ctx.reference, *batch, temperature=temperature, full=rb
                )
            if rb:
                rb_kl.append(unpack(ro.mask[sl], next_token_kl(lp_all, lr_all)))
            old_logp.append(lp)
            old_values.append(v)
            ref_logp.append(lr)
            if "hidden" in trunk:
                trunks.append(trunk["hidden"])
    old_logp, old_values, ref_logp = (torch.cat(x) for x in (old_logp, old_values, ref_logp))
    hidden = torch.cat(trunks) if trunks else None
    mask = ro.mask
    maskf = mask.float()
    with timer("reward"):
        score = ctx.score(ro, slice(0, rows), log_cdf, ref_logp.sum(-1))
    log_ratio = (old_logp - ref_logp) * maskf
    # The per-token KL penalty: k1's log-ratio of the sampled token, or the exact next-token KL.
    token_kl = torch.cat(rb_kl) if rb else log_ratio
    token_rewards = -cfg.beta * token_kl
    last = (mask.sum(-1) - 1).clamp(min=0)
    token_rewards[torch.arange(rows, device=ctx.device), last] += score
    advantages, returns = gae(token_rewards, old_values, mask, cfg.gamma, cfg.lam)
    kl = token_kl.sum(-1)
    stats.add("reward", ro.rewards)
    stats.add("score", score)
    # kl: the estimate inside the objective (k1, or kl_rb with kl_estimator="rb").
    stats.add("kl", kl)
    if rb:
        stats.add("kl_k1", log_ratio.sum(-1))
    stats.add("kl_k3", (torch.expm1(-log_ratio) + log_ratio).mul(maskf).sum(-1))
    stats.add("return", score - cfg.beta * kl)
    stats.add_clustered("objective", score - cfg.beta * kl, ro.prompt_index)
    stats.add("length", mask.sum(-1))
    stats.add("eos_rate", torch.as_tensor(ro.completions.ended, dtype=torch.float64))
    if cfg.log_samples:
        stats.log_rows(ro, slice(0, rows), score=score, kl=kl)

    reduce = ctx.global_sum if world > 1 else None
    for epoch in range(cfg.ppo_epochs):
        rng = np.random.default_rng([cfg.seed, step, ctx.rank, epoch])
        order = torch.as_tensor(rng.permutation(rows), device=ctx.device)
        for mb_start in range(0, rows, mini):
            mb = order[mb_start : mb_start + mini]
            mb_mask = mask[mb]
            adv = advantages[mb]
            # 1 / std of the whitening: the pathwise KL gradient (rb) is scaled like the
            # advantages, so that the objective's two gradient parts keep their ratio.
            scale = torch.ones((), device=ctx.device)
            if cfg.whiten_advantages is True:
                adv, scale = masked_whiten(adv, mb_mask, reduce=reduce, return_scale=True)
            # The token mean over the whole minibatch: DDP averages the processes' gradients,
            # so each divides its sum by (tokens over all processes) / world.
            n_tokens = mb_mask.sum().clamp(min=1).float()
            if world > 1:
                n_tokens = ctx.global_sum(mb_mask.sum().float()).clamp(min=1) / world
            for start in range(0, len(mb), micro):
                idx = mb[start : start + micro]
                sub = slice(start, start + micro)
                last_micro = start + micro >= len(mb)
                batch = (ro.prompt_ids[idx], ro.prompt_mask[idx], ro.token_ids[idx], mask[idx])
                m = maskf[idx]
                with timer("backward"), ctx.sync_context(last_micro), ctx.autocast():
                    replay = (
                        ctx.trunk.replay(ctx.policy_blocks, hidden[idx])
                        if hidden is not None
                        else nullcontext()
                    )
                    with replay:
                        logp, logp_all, values = sequence_log_softmax(
                            ctx.module, *batch, temperature=temperature, full=rb
                        )
                    ratio = torch.exp(logp - old_logp[idx])
                    a = adv[sub]
                    micro_scale = scale
                    if cfg.whiten_advantages == "authors":  # per forward batch, as trlx
                        a, micro_scale = padded_whiten(a, m, return_scale=True)
                    pg = torch.max(
                        -a * ratio, -a * ratio.clamp(1 - cfg.cliprange, 1 + cfg.cliprange)
                    )
                    v_old = old_values[idx]
                    v_clip = v_old + (values - v_old).clamp(
                        -cfg.cliprange_value, cfg.cliprange_value
                    )
                    g = returns[idx]
                    vf = 0.5 * torch.max((values - g) ** 2, (v_clip - g) ** 2)
                    pg_loss = (pg * m).sum() / n_tokens
                    vf_loss = (vf * m).sum() / n_tokens
                    loss = pg_loss + cfg.vf_coef * vf_loss
                    if rb:
                        live = unpack(
                            mask[idx],
                            next_token_kl(
                                logp_all, _reference_all(ctx, batch, hidden, idx, temperature)
                            ),
                        )
                        loss = loss + cfg.beta * micro_scale.detach() * live.sum() / n_tokens
                    ctx.accelerator.backward(loss)
                with torch.no_grad():
                    lr_ = (logp - old_logp[idx]) * m
                    stats.add("pg_loss", pg_loss * n_tokens, count=float(m.sum()))
                    stats.add("vf_loss", vf_loss * n_tokens, count=float(m.sum()))
                    stats.add(
                        "approx_kl", ((torch.expm1(-lr_) + lr_) * m).sum(), count=float(m.sum())
                    )
                    clipped = ((ratio - 1).abs() > cfg.cliprange).float() * m
                    stats.add("clipfrac", clipped.sum(), count=float(m.sum()))
            with timer("backward"):
                stats.add("grad_norm", ctx.clip_and_step(), count=1)
    return stats
