"""RLOO: REINFORCE with a leave-one-out baseline over k samples per prompt (Ahmadian et al. 2024).

Each phase draws k completions y_1..y_k ~ pi_theta(. | x) per prompt and scores them with

    R_i = score(y_i) - beta * sum_t log(pi_theta(y_i,t | .) / pi_ref(y_i,t | .))

(the k1 KL estimate, summed over the sequence, inside the reward; score is log F_hat for vbon,
(log pi_BoN - log pi_ref)/(N-1) for vbon_exact, r for kl_rl). The baseline of sample i is the
mean R of the other k-1 samples of its prompt; no per-group std normalisation (it would rescale
the objective per prompt). The loss -mean_i (R_i - b_i) log pi_theta(y_i | x) is an unbiased
gradient of E[R], which with the KL term is the gradient of E[score] - beta KL(pi_theta||pi_ref).

On-policy, one optimiser step per phase: the policy's per-token log-probs are computed once,
with grad, and their detached copy gives the KL in R (no second forward). pi_ref's log-probs
reuse the frozen trunk's activations from that same forward (``TrunkCache``).
"""

from __future__ import annotations

from contextlib import nullcontext

import torch

from vbon.train.common import Context, Stats, Timer
from vbon.train.modeling import sequence_logprobs

__all__ = ["leave_one_out_advantages", "rloo_step"]


def leave_one_out_advantages(returns: torch.Tensor, k: int) -> torch.Tensor:
    """R_i - mean_{j != i} R_j within consecutive groups of k rows."""
    if returns.numel() % k:
        raise ValueError(f"k: {returns.numel()} rows are not whole groups of {k}")
    grouped = returns.view(-1, k)
    baseline = (grouped.sum(dim=1, keepdim=True) - grouped) / (k - 1)
    return (grouped - baseline).reshape(-1)


def rloo_step(ctx: Context, step: int, timer: Timer) -> Stats:
    """One RLOO phase: rollout, reward, one (accumulated) policy-gradient step."""
    cfg = ctx.config
    stats = Stats()
    ro = ctx.rollout(step, timer)
    with timer("reward"):
        log_cdf = ctx.log_cdf(ro)
    rows = len(ro)
    # micro_batch_size counts rows over all processes (process_batches).
    micro = min(ctx.local.micro_batch or rows, rows)
    temperature = ctx.setup.sampling.temperature
    for start in range(0, rows, micro):
        sl = slice(start, start + micro)
        last = start + micro >= rows
        batch = (ro.prompt_ids[sl], ro.prompt_mask[sl], ro.token_ids[sl], ro.mask[sl])
        with timer("backward"), ctx.sync_context(last), ctx.autocast():
            with ctx.trunk.record() as trunk:
                logp, _ = sequence_logprobs(ctx.module, *batch, temperature=temperature)
        with timer("logprobs"), torch.no_grad(), ctx.autocast():
            replay = (
                ctx.trunk.replay(ctx.reference_blocks, trunk["hidden"])
                if "hidden" in trunk
                else nullcontext()
            )
            with replay:
                ref_logp, _ = sequence_logprobs(ctx.reference, *batch, temperature=temperature)
        mask = ro.mask[sl]
        with timer("reward"):
            ref_seq = ref_logp.sum(-1)
            score = ctx.score(ro, sl, log_cdf, ref_seq)
        log_ratio = (logp.detach() - ref_logp) * mask
        kl = log_ratio.sum(-1)
        returns = score - cfg.beta * kl
        adv = leave_one_out_advantages(returns, cfg.k)
        with timer("backward"), ctx.sync_context(last):
            loss = -(adv * logp.sum(-1)).sum() / rows
            ctx.accelerator.backward(loss)
        stats.add("reward", ro.rewards[sl])
        stats.add("score", score)
        stats.add("kl", kl)
        stats.add("kl_k3", (torch.expm1(-log_ratio) + log_ratio).mul(mask).sum(-1))
        stats.add("return", returns)
        # The run's own objective E[score] - beta KL, per step with its standard error over
        # prompts: the curve that shows whether the run has converged.
        stats.add_clustered("objective", returns, ro.prompt_index[sl])
        stats.add("loss", loss.detach() * rows, count=len(adv))
        stats.add("length", mask.sum(-1))
        stats.add("eos_rate", torch.as_tensor(ro.completions.ended[sl], dtype=torch.float64))
        if cfg.log_samples:
            stats.log_rows(ro, sl, score=score, kl=kl)
    with timer("backward"):
        stats.add("grad_norm", ctx.clip_and_step(), count=1)
    return stats
