"""BoNBoN (Gui, Garbacea, Veitch, NeurIPS 2024): Best-of-n by SFT plus IPO on best-worst pairs.

For each prompt the reference cache's first n samples (or each of ``sft_groups`` disjoint groups
of n) give a pair: the best y_w and the worst y_l by reward. The loss of a pair is

    alpha (-log pi_theta(y_w | x)) + (1 - alpha) (h - 1 / (2 beta*_n))^2,
    h = log(pi_theta / pi_ref)(y_w) - log(pi_theta / pi_ref)(y_l),
    beta*_n = 1 / (2 (n-1) sum_{k=1}^{n-1} 1/k)              (``vbon.objectives.bonbon_beta``)

averaged over the ``batch_prompts`` pairs of a step. Checked against the authors' code
(gl-ybnbxb/BoNBoN, ``trainers.py``): IPO's target 1/(2 beta) on the summed log-ratio gap, the
SFT term a sequence sum (not a token mean), alpha 0.005 and beta*_8 = 0.0275482094 in their
README. Choices where the paper leaves one: a group whose n rewards are all equal gives no pair
(its IPO term would push a margin between two equally good completions); the completions keep
their EOS (as BoN-SFT's targets), and log-probabilities are at the sampling temperature.
pi_theta's log-probabilities of y_w and y_l come from one forward of the concatenated batch,
pi_ref's from the frozen trunk's replay, as in the other offline methods (``micro_batch_size``
counts pairs: each forward holds twice as many sequences).

What the loss does and does not target. Under pi_BoN(n), log(pi_BoN / pi_ref) = log n +
(n-1) log F, so the mean best-worst gap is (n-1) H_{n-1} = 1 / (2 beta*_n): IPO's target is
pi_BoN's mean gap. But the squared loss also penalises the gap's spread, which pi_BoN has in
plenty, so pi_BoN need not minimise it. On the enumerable world (200,000 groups): the mean
gap under pi_BoN is 5.40 (target 5.5) at n = 4 and 17.44 (18.15) at n = 8, while the loss at
pi_BoN is 10.8 and 58.9; a trained policy at n = 8 reaches loss 3.1 with margin 17.6 at
KL(pi || pi_ref) 5.6, farther from pi_BoN(8) than pi_ref (KL 8.6 against 4.8). At n = 4 the
fit still moves most of the way to pi_BoN (KL 1.59 -> 0.35, three seeds).
"""

from __future__ import annotations

import numpy as np
import torch

from vbon.objectives import bonbon_loss
from vbon.train.bon_sft import sft_batch, step_examples
from vbon.train.common import Context, Stats, Timer
from vbon.train.modeling import sequence_logprobs

__all__ = ["bonbon_step"]


def bonbon_step(ctx: Context, step: int, timer: Timer) -> Stats:
    """One optimiser step of BoNBoN's loss on ``batch_prompts`` best-worst pairs."""
    cfg, s = ctx.config, ctx.setup
    if not s.bonbon_pairs:
        raise ValueError(
            "setup: bonbon needs bonbon_pairs (the best and worst of n reference samples; "
            "none when every group's rewards tie)"
        )
    stats = Stats()
    pairs = step_examples(ctx, step, s.bonbon_pairs)
    rows = len(pairs)
    ends = [p.best for p in pairs] + [p.worst for p in pairs]
    batch = sft_batch(
        s.tokenizer,
        [s.train_prompts[e.prompt_index] for e in ends],
        [e.text for e in ends],
        [e.ended for e in ends],
    )
    batch = tuple(t.to(ctx.device) for t in batch)
    micro = min(ctx.local.micro_batch or rows, rows)
    temperature = s.sampling.temperature
    for start in range(0, rows, micro):
        idx = torch.cat([torch.arange(start, min(start + micro, rows)) + k * rows for k in (0, 1)])
        last = start + micro >= rows
        part = tuple(t[idx.to(t.device)] for t in batch)
        with timer("backward"), ctx.sync_context(last), ctx.autocast():
            with ctx.trunk.record() as trunk:
                logp, _ = sequence_logprobs(ctx.module, *part, temperature=temperature)
        with timer("logprobs"), torch.no_grad(), ctx.autocast(), ctx.reference_replay(trunk):
            ref_logp, _ = sequence_logprobs(ctx.reference, *part, temperature=temperature)
        seq, ratio = logp.sum(-1), (logp - ref_logp).sum(-1)
        half = len(idx) // 2
        loss = bonbon_loss(ratio[:half], ratio[half:], seq[:half], cfg.n, cfg.bonbon_alpha)
        with timer("backward"), ctx.sync_context(last):
            # The mean over this process's pairs; DDP averages it over the processes.
            ctx.accelerator.backward(loss.sum() / rows)
        stats.add("loss", loss.detach())
        stats.add("margin", (ratio[:half] - ratio[half:]).detach())
        stats.add("nll", -seq[:half].detach())
        chosen = pairs[start : start + micro]
        stats.add("target_reward", np.array([p.best.reward for p in chosen]))
        stats.add("worst_reward", np.array([p.worst.reward for p in chosen]))
    with timer("backward"):
        stats.add("grad_norm", ctx.clip_and_step(), count=1)
    return stats
