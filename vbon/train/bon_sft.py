"""BoN-SFT: maximum likelihood on the best of n reference samples per prompt (the paper's experiments).

The paper's forward-KL baseline: the targets y* = argmax_{y_1..y_n ~ pi_ref} r(y) are samples of
pi_BoN, so minimising -log pi_theta(y* | x) fits KL(pi_BoN || pi_theta) (mass-covering), where
vBoN fits the reverse KL(pi_theta || pi_BoN). Targets come from the reference cache (texts kept);
a target that ended with EOS keeps its EOS token, so the policy learns to stop as BoN does.
Log-likelihoods are taken at the sampling temperature: the fitted distribution is the one that
is sampled.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from vbon.train.common import Context, Stats, Timer
from vbon.train.modeling import sequence_logprobs

__all__ = ["bon_sft_step", "sft_batch", "step_examples"]


def sft_batch(
    tokenizer: object,
    prompts: list[str],
    targets: list[str],
    ended: list[bool],
    *,
    whole_text: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(prompt_ids, prompt_mask) left-padded and (token_ids, mask) right-padded.

    ``whole_text`` (the authors' recipe): the loss covers prompt + completion, without EOS:
    the "prompt" is the text's first token and every later token is a target.
    """
    pad = tokenizer.pad_token_id
    eos = tokenizer.eos_token_id
    p_ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    t_ids = tokenizer(targets, add_special_tokens=False)["input_ids"]
    if whole_text:
        whole = [p + t for p, t in zip(p_ids, t_ids, strict=True)]
        if any(len(ids) < 2 for ids in whole):
            raise ValueError("sft_recipe: a prompt + target shorter than two tokens has no loss")
        p_ids, t_ids = [ids[:1] for ids in whole], [ids[1:] for ids in whole]
        ended = [False] * len(whole)
    t_ids = [
        ids + [eos] if end and eos is not None else ids
        for ids, end in zip(t_ids, ended, strict=True)
    ]
    t_ids = [ids if ids else ([eos] if eos is not None else [pad]) for ids in t_ids]
    lp, lt = max(map(len, p_ids)), max(map(len, t_ids))
    prompt_ids = torch.full((len(prompts), lp), pad, dtype=torch.long)
    prompt_mask = torch.zeros((len(prompts), lp), dtype=torch.long)
    token_ids = torch.full((len(prompts), lt), pad, dtype=torch.long)
    mask = torch.zeros((len(prompts), lt), dtype=torch.bool)
    for j, (p, t) in enumerate(zip(p_ids, t_ids, strict=True)):
        prompt_ids[j, lp - len(p) :] = torch.as_tensor(p)
        prompt_mask[j, lp - len(p) :] = 1
        token_ids[j, : len(t)] = torch.as_tensor(t)
        mask[j, : len(t)] = True
    return prompt_ids, prompt_mask, token_ids, mask


def step_examples(ctx: Context, step: int, examples: list[Any]) -> list[Any]:
    """This process's share of the ``batch_prompts`` examples of ``step``: the examples cycle
    in epochs of permutations (like prompts do for the RL methods), from (seed, step) alone."""
    cfg = ctx.config
    positions = step * cfg.batch_prompts + np.arange(cfg.batch_prompts)
    world = ctx.accelerator.num_processes
    if cfg.batch_prompts % world:
        raise ValueError(
            f"batch_prompts: {cfg.batch_prompts} must be divisible by {world} processes"
        )
    chosen = []
    for pos in positions:
        perm = np.random.default_rng([cfg.seed, int(pos // len(examples))]).permutation(
            len(examples)
        )
        chosen.append(examples[perm[pos % len(examples)]])
    share = cfg.batch_prompts // world
    return chosen[ctx.rank * share : (ctx.rank + 1) * share]


def bon_sft_step(ctx: Context, step: int, timer: Timer) -> Stats:
    """One optimiser step of negative log-likelihood (token mean) on a batch of BoN targets."""
    cfg, s = ctx.config, ctx.setup
    if not s.sft_examples:
        raise ValueError("setup: bon_sft needs sft_examples (best-of-n reference targets)")
    stats = Stats()
    chosen = step_examples(ctx, step, s.sft_examples)
    authors = cfg.sft_recipe == "authors"
    batch = sft_batch(
        s.tokenizer,
        [s.train_prompts[e.prompt_index] for e in chosen],
        [e.text for e in chosen],
        [e.ended for e in chosen],
        whole_text=authors,
    )
    batch = tuple(t.to(ctx.device) for t in batch)
    rows = len(chosen)
    # micro_batch_size counts rows over all processes, and the loss is the token mean over the
    # whole batch: DDP averages the processes' gradients, so each divides by tokens / world.
    micro = min(ctx.local.micro_batch or rows, rows)
    n_tokens = batch[3].sum().clamp(min=1).float()
    world = ctx.accelerator.num_processes
    if world > 1:
        n_tokens = ctx.global_sum(batch[3].sum().float()).clamp(min=1) / world
    if authors:
        ctx.module.train()  # the authors' SFT keeps dropout on; evaluation samples in eval mode
    for start in range(0, rows, micro):
        sl = slice(start, start + micro)
        last = start + micro >= rows
        with timer("backward"), ctx.sync_context(last), ctx.autocast():
            logp, _ = sequence_logprobs(
                ctx.module, *(t[sl] for t in batch), temperature=s.sampling.temperature
            )
            loss = -logp.sum() / n_tokens
            ctx.accelerator.backward(loss)
        stats.add("nll", -logp.detach().sum(), count=float(batch[3][sl].sum()))
        stats.add("target_reward", np.array([e.reward for e in chosen[sl]]))
    ctx.module.eval()
    with timer("backward"):
        stats.add("grad_norm", ctx.clip_and_step(), count=1)
    return stats
