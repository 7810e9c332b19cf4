"""BOND and J-BOND (Sessa et al., "BOND: Aligning LLMs with Best-of-N Distillation", ICLR 2025).

BOND minimises the Jeffreys divergence to Best-of-n of an anchor policy pi_a,

    J_lambda = (1 - lambda) KL(pi_BoN || pi) + lambda KL(pi || pi_BoN),     pi_BoN = BoN_n(pi_a).

Forward term: its gradient is -E_{y ~ pi_BoN}[grad log pi(y)], SFT on the best of n samples of
the anchor (the sequence's summed log-likelihood). Backward term: with log pi_BoN(y) ~ log pi_a(y)
+ (n-1) log F_a(r(y)) + log n (the paper drops its collision factor as vBoN's bound L does), it
is -(n-1) times vBoN's objective E_pi[log F_a] - KL(pi || pi_a) / (n-1): a policy gradient with
return (n-1) log F_a(r(y)) - log(pi / pi_a)(y) (k1, detached) and a leave-one-out baseline. One
loss holds both, weighted as in J_lambda:

    loss = (1 - lambda) mean NLL(best of n) - mean_i (G_i - b_i) log pi(y_i),
    G_i = lambda ((n-1) R_i - log(pi / pi_a)(y_i)) - gamma log(pi / pi_a)(y_i).

Three ways to run it (``TrainConfig``: ``method``, ``n``, ``bond_lambda``, ``anchor_ema``,
``anchor_gamma``):

- ``bond`` with ``anchor_ema=0`` (default): BOND at the target N with the anchor fixed at pi_ref,
  so F_hat (add-one, R = log F_hat) and the Best-of-N targets come from the reference cache
  (every disjoint group of N cached samples of a prompt is a target; one is drawn per visit).
  lambda = 1 is vbon (rloo) scaled by N-1; lambda = 0 is BoN-SFT.
- ``bond`` with ``anchor_ema`` > 0: iterated BOND. Each step draws n fresh samples per prompt
  from the anchor, an exponential moving average of the policy (theta_a <- (1 - eta) theta_a +
  eta theta after every step); the forward target is their best, R = log of the add-one F_hat
  of the policy sample among them, and the KL is to the anchor. Distilling Best-of-n of a
  policy that is itself moving towards Best-of-n, the effective N grows with the iterations
  (n^t for t exact iterations; an EMA gives no closed form).
- ``jbond``: J-BOND (the paper's Algorithm 2): n = 2 anchor samples and one policy sample per
  prompt, R = -log 16 if r(y) < min(r(y'_1), r(y'_2)) else 0 (the paper's choice of constant:
  its expectation equals log F at the median), the KL to the anchor at weight 1 (beta = 1/(n-1)),
  gamma KL(pi || pi_a) on top (the paper's G_Reg, estimated here by the same k1 log-ratio in the
  return), eta = 0.02.

Choices the paper leaves open, and vbon's: the baseline (optional in the paper): leave-one-out
over the prompt's k samples, or over the batch for jbond's single sample; strict "<" in J-BOND's
reward (the paper's main text; its appendix writes <=); reward ties among the anchor samples go
to the first (as BoN-SFT's targets); the anchor samples are fresh every step and serve both the
forward target and R; gamma's KL is the k1 log-ratio in the return (no pathwise term); the
anchor shares the frozen trunk with the policy and pi_ref, and only the trainable tensors are
averaged; the anchor is checkpointed with the run. The trainer's algorithm is rloo's form
(one optimiser step per phase); ppo is not offered for these methods.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from vbon.bon import select_best
from vbon.cdf import quantile_scores
from vbon.generation import sample
from vbon.train.bon_sft import sft_batch
from vbon.train.common import Context, Stats, Timer, step_seed
from vbon.train.modeling import decoder_blocks, sequence_log_softmax, shared_reference
from vbon.train.rloo import leave_one_out_advantages

__all__ = ["Anchor", "JBOND_PENALTY", "bond_step", "jbond_reward"]

# J-BOND's reward for a policy sample below both anchor samples: with F the sample's quantile,
# E[reward] = -log(16) (1 - F)^2, which equals log F at F = 1/2.
JBOND_PENALTY = math.log(16.0)


def jbond_reward(rewards: np.ndarray, anchor_rewards: np.ndarray) -> np.ndarray:
    """J-BOND's crude log-quantile: -log 16 where r(y) < min of its prompt's anchor rewards.

    ``rewards``: (B,) policy samples; ``anchor_rewards``: (B, a) the anchor samples of each
    sample's prompt."""
    return np.where(rewards < anchor_rewards.min(axis=1), -JBOND_PENALTY, 0.0)


class Anchor:
    """The moving anchor: a copy of the policy whose trainable tensors are an EMA of the
    policy's, sharing every frozen tensor (``shared_reference``)."""

    def __init__(self, policy: Any) -> None:
        self.names = [n for n, p in policy.named_parameters() if p.requires_grad]
        self.model = shared_reference(policy)
        self.blocks = decoder_blocks(self.model)
        own = dict(self.model.named_parameters())
        self._own = [own[n] for n in self.names]

    @torch.no_grad()
    def update(self, policy: Any, eta: float) -> None:
        """theta_a <- (1 - eta) theta_a + eta theta, on the trainable tensors."""
        live = dict(policy.named_parameters())
        for name, mine in zip(self.names, self._own, strict=True):
            mine.lerp_(live[name].to(mine.dtype), eta)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {
            n: p.detach().to("cpu", copy=True).contiguous()
            for n, p in zip(self.names, self._own, strict=True)
        }

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for name, mine in zip(self.names, self._own, strict=True):
            mine.copy_(state[name].to(mine.device, mine.dtype))


def _anchor_samples(
    ctx: Context, step: int, prompts: np.ndarray, timer: Timer
) -> tuple[list[list[str]], np.ndarray, np.ndarray]:
    """n fresh anchor samples per prompt: texts (P, n), EOS flags and rewards (P, n)."""
    cfg, s = ctx.config, ctx.setup
    texts = [s.train_prompts[i] for i in prompts]
    with timer("generate"), ctx.autocast():
        comps = sample(
            ctx.anchor.model,
            s.tokenizer,
            texts,
            cfg.n,
            **s.sampling.kwargs(),
            batch_size=len(texts) * cfg.n,
            seed=step_seed(cfg.seed, step, ctx.rank, stream=2),
        )
    with timer("reward"):
        repeated = [texts[i] for i in comps.prompt_index]
        rewards = np.asarray(s.reward_fn(repeated, comps.texts, eos=comps.ended), dtype=float)
    shape = (len(texts), cfg.n)
    grouped = [comps.texts[i * cfg.n : (i + 1) * cfg.n] for i in range(len(texts))]
    return grouped, np.asarray(comps.ended).reshape(shape), rewards.reshape(shape)


def _cached_targets(ctx: Context, step: int, prompts: np.ndarray) -> list[Any]:
    """One cached Best-of-N target per prompt, drawn among the prompt's disjoint groups."""
    s = ctx.setup
    if not s.sft_examples:
        raise ValueError("setup: bond needs sft_examples (the cache's best-of-N targets)")
    by_prompt: dict[int, list[Any]] = {}
    for e in s.sft_examples:
        by_prompt.setdefault(e.prompt_index, []).append(e)
    rng = np.random.default_rng(step_seed(ctx.config.seed, step, ctx.rank, stream=3))
    return [by_prompt[int(i)][rng.integers(len(by_prompt[int(i)]))] for i in prompts]


def _log_ratios(ctx: Context, ro: Any, sl: slice, anchored: bool, grad: bool) -> tuple:
    """log pi(y) per token (with grad when ``grad``) and the sequence log(pi / pi_a)(y), k1."""
    batch = (ro.prompt_ids[sl], ro.prompt_mask[sl], ro.token_ids[sl], ro.mask[sl])
    temperature = ctx.setup.sampling.temperature
    with torch.set_grad_enabled(grad), ctx.autocast(), ctx.trunk.record() as trunk:
        logp, _, _ = sequence_log_softmax(ctx.module, *batch, temperature=temperature, full=False)
    model, blocks = (ctx.anchor.model, ctx.anchor.blocks) if anchored else (ctx.reference, None)
    with torch.no_grad(), ctx.autocast(), ctx.reference_replay(trunk, blocks):
        anchor_logp, _, _ = sequence_log_softmax(model, *batch, temperature=temperature, full=False)
    return logp, ((logp.detach() - anchor_logp) * ro.mask[sl]).sum(-1)


def bond_step(ctx: Context, step: int, timer: Timer) -> Stats:
    """One step of bond or jbond: rollout, anchor samples (or the cache), one optimiser step on
    the Jeffreys loss, then the anchor's EMA update."""
    cfg, s = ctx.config, ctx.setup
    stats = Stats()
    ro = ctx.rollout(step, timer)
    prompts = ctx.step_prompts(step, cfg.batch_prompts)
    # Each row's position among this step's prompts (a prompt may repeat within a step).
    rows_prompt = np.asarray(ro.completions.prompt_index)
    anchored = cfg.anchor_ema > 0
    if anchored:
        a_texts, a_ended, a_rewards = _anchor_samples(ctx, step, prompts, timer)
        best = select_best(a_rewards)
        targets = [
            (a_texts[i][j], bool(a_ended[i, j]), float(a_rewards[i, j])) for i, j in enumerate(best)
        ]
        mine = a_rewards[rows_prompt]
        if cfg.method == "jbond":
            score = jbond_reward(ro.rewards, mine)
        else:  # log of the add-one F_hat of the policy sample among the anchor's n
            below = (mine < ro.rewards[:, None]).sum(axis=1)
            score = np.log((1.0 + below) / (cfg.n + 1.0))
    else:
        if s.train_cdf is None:
            raise ValueError("setup: bond with anchor_ema=0 needs train_cdf (the cache's F_hat)")
        score = quantile_scores(s.train_cdf, ro.rewards, ro.prompt_index, estimator="add_one")
        targets = [(e.text, e.ended, e.reward) for e in _cached_targets(ctx, step, prompts)]
    score_t = torch.as_tensor(score, dtype=torch.float32, device=ctx.device)
    lam, gamma, n = cfg.bond_lambda, cfg.anchor_gamma, cfg.n
    rows = len(ro)
    micro = min(ctx.local.micro_batch or rows, rows)
    chunks = [slice(a, a + micro) for a in range(0, rows, micro)]
    # The baseline needs every row's return before any gradient: with one micro-batch the
    # forward with grad gives them; with several, a no-grad pass does, then each micro-batch
    # runs forward and backward (so that micro_batch_size bounds the memory).
    with timer("logprobs"):
        first = [_log_ratios(ctx, ro, sl, anchored, grad=len(chunks) == 1) for sl in chunks]
    log_ratio = torch.cat([r for _, r in first])
    returns = lam * ((n - 1) * score_t - log_ratio) - gamma * log_ratio
    if cfg.k >= 2:
        adv = leave_one_out_advantages(returns, cfg.k)
    else:  # jbond's single sample per prompt: the baseline is the rest of the batch
        adv = returns - (returns.sum() - returns) / max(rows - 1, 1)
    sft = lam < 1.0
    for i, sl in enumerate(chunks):
        last = i == len(chunks) - 1 and not sft
        with timer("backward"), ctx.sync_context(last):
            logp = first[i][0] if len(chunks) == 1 else _log_ratios(ctx, ro, sl, anchored, True)[0]
            ctx.accelerator.backward(-(adv[sl] * logp.sum(-1)).sum() / rows)
    # The forward term: SFT on the best of n (sequence log-likelihood, mean over prompts).
    nll_total = torch.zeros((), device=ctx.device)
    if sft:
        t_batch = sft_batch(
            s.tokenizer,
            [s.train_prompts[i] for i in prompts],
            [t[0] for t in targets],
            [t[1] for t in targets],
        )
        t_batch = tuple(t.to(ctx.device) for t in t_batch)
        t_micro = min(ctx.local.micro_batch or len(prompts), len(prompts))
        for start in range(0, len(prompts), t_micro):
            part = tuple(t[start : start + t_micro] for t in t_batch)
            with timer("backward"), ctx.sync_context(start + t_micro >= len(prompts)):
                with ctx.autocast():
                    t_logp, _, _ = sequence_log_softmax(
                        ctx.module, *part, temperature=s.sampling.temperature, full=False
                    )
                nll = -t_logp.sum(-1)
                ctx.accelerator.backward((1.0 - lam) * nll.sum() / len(prompts))
            nll_total = nll_total + nll.detach().sum()
    beta = 1.0 / (n - 1)
    stats.add("reward", ro.rewards)
    stats.add("score", score_t)
    stats.add("kl", log_ratio)  # k1 to the anchor (pi_ref when anchor_ema = 0)
    stats.add("return", returns)
    # vBoN's objective against the anchor, E[R] - KL / (n-1), comparable with vbon's runs.
    stats.add_clustered("objective", score_t - beta * log_ratio, ro.prompt_index)
    stats.add("nll", nll_total, count=len(prompts))
    stats.add("target_reward", np.array([t[2] for t in targets]))
    stats.add("length", ro.mask.sum(-1))
    stats.add("eos_rate", torch.as_tensor(ro.completions.ended, dtype=torch.float64))
    with timer("backward"):
        stats.add("grad_norm", ctx.clip_and_step(), count=1)
    if anchored:
        ctx.anchor.update(ctx.policy, cfg.anchor_ema)
    return stats
