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

``kl_estimator="rb"`` replaces k1 by the Rao-Blackwellised KL (``vbon.evaluate.kl_rb``: the
exact next-token KL summed along the sampled prefix), as Amini, Vieira and Cotterell (NeurIPS
2025) train RLOO with it. Its terms depend on theta directly, so the gradient of
-beta E[sum_t KL_t] has two parts: the score-function part, with the detached sum inside R_i
as above, and the pathwise part -beta sum_t grad KL_t, added to the loss (their RLOO puts the
undetached sum into the advantage, which gives the same two parts).
"""

from __future__ import annotations

import torch

from vbon.evaluate import next_token_kl
from vbon.train.common import Context, Stats, Timer
from vbon.train.modeling import sequence_log_softmax, unpack

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
    rb = cfg.kl_estimator == "rb"
    for start in range(0, rows, micro):
        sl = slice(start, start + micro)
        last = start + micro >= rows
        batch = (ro.prompt_ids[sl], ro.prompt_mask[sl], ro.token_ids[sl], ro.mask[sl])
        with timer("backward"), ctx.sync_context(last), ctx.autocast():
            with ctx.trunk.record() as trunk:
                logp, logp_all, _ = sequence_log_softmax(
                    ctx.module, *batch, temperature=temperature, full=rb
                )
        with timer("logprobs"), torch.no_grad(), ctx.autocast(), ctx.reference_replay(trunk):
            ref_logp, ref_all, _ = sequence_log_softmax(
                ctx.reference, *batch, temperature=temperature, full=rb
            )
        mask = ro.mask[sl]
        with timer("reward"):
            ref_seq = ref_logp.sum(-1)
            score = ctx.score(ro, sl, log_cdf, ref_seq)
        log_ratio = (logp.detach() - ref_logp) * mask
        k1 = log_ratio.sum(-1)
        if rb:  # with grad through pi_theta's next-token distributions
            kl_live = unpack(mask, next_token_kl(logp_all, ref_all)).sum(-1)
            kl = kl_live.detach()
        else:
            kl = k1
        returns = score - cfg.beta * kl
        adv = leave_one_out_advantages(returns, cfg.k)
        with timer("backward"), ctx.sync_context(last):
            loss = -(adv * logp.sum(-1)).sum() / rows
            if rb:
                loss = loss + cfg.beta * kl_live.sum() / rows
            ctx.accelerator.backward(loss)
        stats.add("reward", ro.rewards[sl])
        stats.add("score", score)
        # kl: the estimate inside the objective (k1, or kl_rb with kl_estimator="rb").
        stats.add("kl", kl)
        if rb:
            stats.add("kl_k1", k1)
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
