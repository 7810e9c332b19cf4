"""Batched sampling of completions and their log-probabilities (prompt tokens excluded).

Sampling settings follow the paper: temperature, top_k (0 = off), top_p (1 = off) and
max_new_tokens are always passed explicitly, so a checkpoint's own generation defaults (top_k=50
in transformers, repetition penalties, ...) never leak into the reference samples or the policy's
rollouts. Log-probabilities are taken at the sampling temperature, the distribution the samples
came from (top_k/top_p truncation is not applied to them; the paper uses neither).

Plain sampling (no top-k/top-p, the paper's setting) runs a KV-cached decoding loop of our own
that draws each token by inverting the softmax CDF with one uniform variate (``draw_tokens``):
the same distribution as ``generate``, whose torch.multinomial draws an exponential variate per
vocabulary entry and dominated the decoding step on CPU (38 of ~180 ms per step for a
GPT-2-small-sized model at 32 rows). Greedy decoding and truncated sampling use ``generate``.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import DynamicCache, GenerationConfig, PreTrainedModel, PreTrainedTokenizerBase

from vbon._checks import check_int, check_real

__all__ = [
    "Completions",
    "check_sampling",
    "draw_tokens",
    "sample",
    "token_logprobs",
    "completion_logprobs",
    "completion_kl_terms",
]


@dataclass
class Completions:
    """Sampled completions, one row per sample, grouped by prompt."""

    prompt_index: np.ndarray  # (B,) index into the prompts passed to ``sample``
    prompt_ids: torch.Tensor  # (B, Lp) the prompt tokens, left-padded
    prompt_mask: torch.Tensor  # (B, Lp) attention mask of the prompt
    token_ids: torch.Tensor  # (B, T) completion tokens, right-padded with the pad token
    mask: torch.Tensor  # (B, T) True on completion tokens, up to and including the first EOS
    ended: np.ndarray  # (B,) whether the completion emitted EOS within max_new_tokens
    texts: list[str]  # the completions decoded, prompt stripped, special tokens skipped
    # (B,) log pi(y | x) of each completion under the sampling model at the sampling
    # temperature, summed while decoding (plain sampling only; None otherwise): what
    # completion_logprobs would compute, without a second pass over the samples.
    logprobs: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.prompt_index)

    @property
    def lengths(self) -> np.ndarray:
        """Completion lengths in tokens (EOS included)."""
        return self.mask.sum(dim=1).cpu().numpy()


def check_sampling(
    temperature: float, top_k: int, top_p: float, max_new_tokens: int, greedy: bool = False
) -> None:
    """Validate sampling settings, naming the parameter at fault (strings are not numbers)."""
    if not greedy:
        try:
            check_real(temperature, "temperature", minimum=0.0)
        except ValueError as exc:
            if isinstance(temperature, int | float) and temperature <= 0:  # meant greedy?
                raise ValueError(f"{exc}; pass greedy=True for greedy decoding") from None
            raise
    check_int(top_k, "top_k", minimum=0)
    check_real(top_p, "top_p", minimum=0.0, maximum=1.0)
    check_int(max_new_tokens, "max_new_tokens", minimum=1)


def _eos_ids(tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel) -> list[int]:
    eos = model.generation_config.eos_token_id
    if eos is None:
        eos = tokenizer.eos_token_id
    if eos is None:
        return []
    return list(eos) if isinstance(eos, list | tuple) else [int(eos)]


def _completion_mask(token_ids: torch.Tensor, eos: list[int], width: torch.Tensor) -> torch.Tensor:
    """True up to and including the first EOS, and only within each row's generated width."""
    positions = torch.arange(token_ids.shape[1], device=token_ids.device)
    valid = positions[None, :] < width[:, None]
    if not eos:
        return valid
    is_eos = torch.isin(token_ids, torch.tensor(eos, device=token_ids.device)) & valid
    before_or_at_first_eos = (torch.cumsum(is_eos.int(), dim=1) - is_eos.int()) == 0
    return valid & before_or_at_first_eos


def _left_padded(rows: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token id lists as a left-padded (ids, attention mask) pair."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    att = torch.zeros((len(rows), width), dtype=torch.long)
    for j, r in enumerate(rows):  # one small copy per row of a batch, not per sample token
        ids[j, width - len(r) :] = torch.as_tensor(r)
        att[j, width - len(r) :] = 1
    return ids, att


# Names the sampling procedure of ``sample`` (part of the reference-cache key): "cdf" is
# ``draw_tokens`` in ``_decode`` for plain sampling; generate's multinomial drew the caches before.
SAMPLER = "cdf"


def draw_tokens(
    logits: torch.Tensor, temperature: float = 1.0, u: torch.Tensor | None = None
) -> torch.Tensor:
    """One token id per row of ``logits`` (B, V), drawn from softmax(logits / temperature).

    By inverting each row's CDF with one uniform variate (``u``, (B, 1) float64 in [0, 1), drawn
    here when None): torch.multinomial, which ``generate`` uses, draws an exponential variate
    per vocabulary entry, 15x the cost on CPU at GPT-2's 50k-token vocabulary. The softmax is
    float32 (as in ``generate``); the CDF is summed in float64, so that its rounding over 50k
    entries biases no token measurably.
    """
    return _draw(logits, temperature, u)[0]


def _draw(
    logits: torch.Tensor, temperature: float, u: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``draw_tokens``, and each drawn token's probability (B,), from the same softmax."""
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    cdf = probs.double().cumsum_(dim=-1)
    if u is None:
        u = torch.rand((cdf.shape[0], 1), dtype=cdf.dtype, device=cdf.device)
    u = u.to(cdf.device, cdf.dtype) * cdf[:, -1:]
    # right=True: the first entry whose CDF exceeds u, so a zero-probability token (whose CDF
    # equals its predecessor's) is never drawn.
    tokens = torch.searchsorted(cdf, u, right=True).squeeze(1).clamp_(max=cdf.shape[1] - 1)
    return tokens, probs.gather(1, tokens[:, None])[:, 0]


def _cache_keyword(model: PreTrainedModel) -> str:
    """The forward's name for the KV cache: ``cache`` in recent transformers 5 releases,
    ``past_key_values`` before."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


@torch.no_grad()
def _decode(
    model: PreTrainedModel,
    ids: torch.Tensor,
    att: torch.Tensor,
    *,
    max_new_tokens: int,
    temperature: float,
    eos: list[int],
    pad: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Ancestral sampling with a KV cache: the new tokens (B, T), pad after a row's first EOS,
    and each row's log-probability (B,) at ``temperature``, the EOS included.

    ``generate``'s semantics for plain sampling (no top-k/top-p), without its per-step
    machinery and with ``draw_tokens`` in place of torch.multinomial. Position ids count from
    each row's first real token, as ``generate`` does for left-padded GPT-2 prompts.

    Two savings that leave the draws as they were: rows repeating one prompt (several samples
    per prompt) share one prefill of it, whose cache is then copied to each; and once half the
    rows still decoding have ended, the ended ones leave the batch (their cache entries are
    dropped), so a few long completions no longer carry the whole batch to the token budget.
    Every step still draws one uniform variate per row of the batch, ended or not, so each row
    gets the variates it got before.
    """
    batch, width = ids.shape
    device = ids.device
    position = (att.cumsum(dim=1) - 1).clamp(min=0)
    mask = torch.cat([att, torch.ones(batch, max_new_tokens, dtype=att.dtype, device=device)], 1)
    cache = DynamicCache(config=model.config)
    kw = {_cache_keyword(model): cache, "use_cache": True}
    distinct, copy_of = torch.unique(torch.cat([ids, att], dim=1), dim=0, return_inverse=True)
    first = torch.zeros(len(distinct), dtype=torch.long, device=device)
    first.scatter_(0, copy_of.flip(0), torch.arange(batch - 1, -1, -1, device=device))
    logits = model(
        input_ids=ids[first],
        attention_mask=att[first],
        position_ids=position[first],
        logits_to_keep=1,
        **kw,
    ).logits[:, -1]
    if len(distinct) < batch:
        cache.reorder_cache(copy_of)
    logits = logits[copy_of]
    tokens = torch.full((batch, max_new_tokens), pad, dtype=torch.long, device=device)
    rows = torch.arange(batch, device=device)  # the batch row of each row still in the cache
    alive = torch.ones(batch, dtype=torch.bool, device=device)  # per row in the cache
    logprobs = torch.zeros(batch, dtype=torch.float64, device=device)
    eos_t = torch.tensor(eos or [-1], device=device)
    position = position[:, -1:]
    for t in range(max_new_tokens):
        u = torch.rand((batch, 1), dtype=torch.float64, device=device)[rows]
        drawn, prob = _draw(logits, temperature, u)
        logprobs[rows] += torch.where(alive, prob.double().log(), 0.0)
        nxt = torch.where(alive, drawn, pad)
        tokens[rows, t] = nxt
        alive &= ~torch.isin(nxt, eos_t)
        live = int(alive.sum())
        if t == max_new_tokens - 1 or live == 0:
            break
        if live <= len(rows) // 2:
            keep = alive.nonzero().squeeze(1)
            cache.reorder_cache(keep)
            rows, alive, nxt, position = rows[keep], alive[keep], nxt[keep], position[keep]
        position = position + 1
        logits = model(
            input_ids=nxt[:, None],
            attention_mask=mask[rows, : width + t + 1],
            position_ids=position,
            **kw,
        ).logits[:, -1]
    return tokens, logprobs


@torch.no_grad()
def plain_decode(
    model: PreTrainedModel,
    ids: torch.Tensor,
    att: torch.Tensor,
    *,
    max_new_tokens: int,
    temperature: float,
    eos: list[int],
    pad: int,
) -> torch.Tensor:
    """The decoding loop ``_decode`` replaced, kept as its reference: every row's own prefill,
    every row stepped until the last one ends, one uniform per row and step. ``_decode`` must
    draw the same tokens (tests/test_evaluate.py) and is timed against it
    (benchmarks/decoding.py)."""
    batch, width = ids.shape
    position = (att.cumsum(1) - 1).clamp(min=0)
    mask = torch.cat([att, torch.ones(batch, max_new_tokens, dtype=att.dtype)], 1)
    cache = DynamicCache(config=model.config)
    kw = {_cache_keyword(model): cache, "use_cache": True}
    logits = model(input_ids=ids, attention_mask=att, position_ids=position, **kw).logits[:, -1]
    tokens = torch.full((batch, max_new_tokens), pad, dtype=torch.long)
    alive = torch.ones(batch, dtype=torch.bool)
    position = position[:, -1:]
    for t in range(max_new_tokens):
        u = torch.rand((batch, 1), dtype=torch.float64)
        nxt = torch.where(alive, draw_tokens(logits, temperature, u), pad)
        tokens[:, t] = nxt
        alive &= ~torch.isin(nxt, torch.tensor(eos or [-1]))
        if t == max_new_tokens - 1 or not alive.any():
            break
        position = position + 1
        logits = model(
            input_ids=nxt[:, None],
            attention_mask=mask[:, : width + t + 1],
            position_ids=position,
            **kw,
        ).logits[:, -1]
    return tokens


def sample(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    num_samples: int = 1,
    *,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    greedy: bool = False,
    batch_size: int = 64,
    seed: int | None = None,
    progress: bool = False,
) -> Completions:
    """Draw ``num_samples`` completions for each prompt from ``model`` (pi_ref or a policy).

    Prompts are sorted by token length before batching (less left-padding) and each prompt is
    repeated ``num_samples`` times in the flat list of rows, which packs every batch full even
    when ``num_samples`` exceeds ``batch_size`` (benchmarks/reference_sampling.py measures this
    against ``generate``'s own ``num_return_sequences`` expansion). The result is in prompt order,
    ``num_samples`` consecutive rows per prompt, each prompt's samples in draw order.

    Args:
        model, tokenizer: a causal LM and its tokenizer (pad token set).
        prompts: prompt strings.
        num_samples: completions per prompt.
        max_new_tokens, temperature, top_k, top_p: sampling settings (top_k=0, top_p=1: off).
        greedy: greedy decoding instead of sampling (temperature is then ignored).
        batch_size: sequences per decoding call.
        seed: seeds torch's RNG first, so equal calls give equal samples on the same device.
        progress: show a tqdm bar of completions.
    """
    check_sampling(temperature, top_k, top_p, max_new_tokens, greedy)
    check_int(num_samples, "num_samples", minimum=1)
    check_int(batch_size, "batch_size", minimum=1)
    check_int(seed, "seed", minimum=0, allow_none=True)
    if isinstance(prompts, str) or not all(isinstance(p, str) for p in prompts):
        raise ValueError("prompts: must be a list of strings")
    if not prompts:
        raise ValueError("prompts: empty")
    if tokenizer.pad_token_id is None:
        raise ValueError("tokenizer: has no pad token; load it with vbon.models")
    if seed is not None:
        torch.manual_seed(seed)
    device = model.device
    eos = _eos_ids(tokenizer, model)

    encoded = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    if any(len(ids) == 0 for ids in encoded):
        raise ValueError("prompts: an empty prompt has nothing to condition on")
    lengths = np.array([len(ids) for ids in encoded])
    order = np.argsort(lengths, kind="stable")
    # Rows in the order they are generated: prompt p repeated num_samples times.
    flat_prompts = np.repeat(order, num_samples)

    calls = [flat_prompts[i : i + batch_size] for i in range(0, len(flat_prompts), batch_size)]

    config = GenerationConfig(
        do_sample=not greedy,
        temperature=None if greedy else float(temperature),
        top_k=None if greedy else int(top_k),
        top_p=None if greedy else float(top_p),
        max_new_tokens=int(max_new_tokens),
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=eos or None,
        bos_token_id=tokenizer.bos_token_id,
    )
    pad = tokenizer.pad_token_id
    # Plain sampling (the paper's setting) runs our own loop; greedy decoding and top-k/top-p
    # truncation go through generate's logits processors.
    plain = not greedy and top_k == 0 and top_p == 1.0
    prompt_width = int(lengths.max())
    rows_prompt = np.empty(len(flat_prompts), dtype=np.int64)
    prompt_ids = torch.full((len(flat_prompts), prompt_width), pad, dtype=torch.long)
    prompt_mask = torch.zeros((len(flat_prompts), prompt_width), dtype=torch.long)
    token_ids = torch.full((len(flat_prompts), max_new_tokens), pad, dtype=torch.long)
    widths = torch.zeros(len(flat_prompts), dtype=torch.long)
    logprobs = torch.zeros(len(flat_prompts), dtype=torch.float64)

    bar = tqdm(total=len(flat_prompts), desc="sampling", unit="compl", disable=not progress)
    row = 0
    for rows in calls:
        ids, att = _left_padded([encoded[p] for p in rows], pad)
        width = ids.shape[1]
        if plain:
            new, lp = _decode(
                model,
                ids.to(device),
                att.to(device),
                max_new_tokens=int(max_new_tokens),
                temperature=float(temperature),
                eos=eos,
                pad=pad,
            )
            new = new.cpu()
            logprobs[row : row + len(rows)] = lp.cpu()
        else:
            out = model.generate(
                input_ids=ids.to(device), attention_mask=att.to(device), generation_config=config
            )
            new = out[:, width:].cpu()
        n = new.shape[0]
        token_ids[row : row + n, : new.shape[1]] = new
        widths[row : row + n] = new.shape[1]
        prompt_ids[row : row + n, prompt_width - width :] = ids
        prompt_mask[row : row + n, prompt_width - width :] = att
        rows_prompt[row : row + n] = rows
        row += n
        bar.update(n)
    bar.close()

    # Back to prompt order (stable: a prompt's samples keep their draw order).
    back = np.argsort(rows_prompt, kind="stable")
    back_t = torch.from_numpy(back)
    token_ids, widths = token_ids[back_t], widths[back_t]
    mask = _completion_mask(token_ids, eos, widths)
    ended = (mask & torch.isin(token_ids, torch.tensor(eos or [-1]))).any(dim=1).numpy()
    texts = tokenizer.batch_decode(torch.where(mask, token_ids, pad), skip_special_tokens=True)
    return Completions(
        prompt_index=rows_prompt[back],
        prompt_ids=prompt_ids[back_t],
        prompt_mask=prompt_mask[back_t],
        token_ids=token_ids,
        mask=mask,
        ended=ended,
        texts=texts,
        logprobs=logprobs[back_t] if plain else None,
    )


def _completion_logits(
    model: PreTrainedModel,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    token_ids: torch.Tensor,
    mask: torch.Tensor,
    temperature: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits / temperature (n, V) at the kept completion positions, the kept tokens (n,),
    and the keep mask (B, T), all on the model's device."""
    if not temperature > 0:
        raise ValueError(f"temperature: must be > 0, got {temperature!r}")
    from vbon.train.modeling import _scaled_logits

    device = model.device
    token_ids, keep = token_ids.to(device), mask.to(device).bool()
    # The trainer's forward: only the completion tokens on the mask go through the LM head.
    logits, _ = _scaled_logits(
        model, prompt_ids.to(device), prompt_mask.to(device), token_ids, keep, temperature
    )
    return logits, token_ids[keep], keep


def token_logprobs(
    model: PreTrainedModel,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    token_ids: torch.Tensor,
    mask: torch.Tensor,
    *,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Per-token log pi(y_t | x, y_<t) at ``temperature`` for one batch; 0 off the mask.

    Differentiable (the trainer calls it under autograd). Positions are counted from the first
    real prompt token so that left padding does not shift absolute position embeddings.
    """
    logits, tokens, keep = _completion_logits(
        model, prompt_ids, prompt_mask, token_ids, mask, temperature
    )
    from vbon.train.modeling import unpack

    return unpack(keep, logits.gather(-1, tokens.unsqueeze(-1)).squeeze(-1) - logits.logsumexp(-1))


@torch.no_grad()
def completion_logprobs(
    model: PreTrainedModel,
    completions: Completions,
    *,
    temperature: float = 1.0,
    batch_size: int = 64,
    per_token: bool = False,
) -> torch.Tensor:
    """log pi(y | x) of each completion under ``model`` (prompt tokens excluded), no grad.

    Chunked by ``batch_size`` rows to bound memory (the logits are rows x length x vocab).
    Returns sequence sums (B,), or per-token values (B, T) when ``per_token``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size: must be >= 1, got {batch_size}")
    out = []
    for s in range(0, len(completions), batch_size):
        sl = slice(s, s + batch_size)
        out.append(
            token_logprobs(
                model,
                completions.prompt_ids[sl],
                completions.prompt_mask[sl],
                completions.token_ids[sl],
                completions.mask[sl],
                temperature=temperature,
            ).cpu()
        )
    per_tok = torch.cat(out, dim=0) if out else torch.zeros((0, completions.token_ids.shape[1]))
    return per_tok if per_token else per_tok.sum(dim=1)


@torch.no_grad()
def completion_kl_terms(
    policy: PreTrainedModel,
    reference: PreTrainedModel,
    completions: Completions,
    *,
    temperature: float = 1.0,
    batch_size: int = 64,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-token log pi_theta and log pi_ref of the sampled tokens (B, T) and the
    Rao-Blackwellised KL of each completion (B,) (``vbon.evaluate.kl_rb``), from one forward
    of each model per chunk of ``batch_size`` rows, at ``temperature``; no grad."""
    from vbon.evaluate import next_token_kl
    from vbon.train.modeling import unpack

    if batch_size < 1:
        raise ValueError(f"batch_size: must be >= 1, got {batch_size}")
    lp_parts, lr_parts, rb_parts = [], [], []
    for s in range(0, len(completions), batch_size):
        part = (
            completions.prompt_ids[s : s + batch_size],
            completions.prompt_mask[s : s + batch_size],
            completions.token_ids[s : s + batch_size],
            completions.mask[s : s + batch_size],
        )
        logits_p, tokens, keep = _completion_logits(policy, *part, temperature)
        logits_q, _, _ = _completion_logits(reference, *part, temperature)
        logp = torch.log_softmax(logits_p, dim=-1)
        logq = torch.log_softmax(logits_q.to(logp.device), dim=-1)
        del logits_p, logits_q  # (rows x tokens, vocabulary) each: keep two such arrays, not four
        picked = [
            unpack(keep, x.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)) for x in (logp, logq)
        ]
        lp_parts.append(picked[0].cpu())
        lr_parts.append(picked[1].cpu())
        rb_parts.append(unpack(keep, next_token_kl(logp, logq)).sum(-1).cpu())
    if not lp_parts:
        empty = torch.zeros((0, completions.token_ids.shape[1]))
        return empty, empty.clone(), torch.zeros(0)
    return torch.cat(lp_parts), torch.cat(lr_parts), torch.cat(rb_parts)


def sample_vllm(
    model_path: str,
    prompts: list[str],
    num_samples: int = 1,
    *,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    seed: int | None = None,
    **llm_kwargs: Any,
) -> list[list[str]]:
    """Optional vLLM backend (GPU): ``num_samples`` completion texts per prompt.

    Used for the reference cache at paper scale when ``vllm`` is installed
    (``pip install -e .[vllm]``); the Hugging Face path above is the default and the tested one.
    """
    check_sampling(temperature, top_k, top_p, max_new_tokens)
    try:
        from vllm import LLM, SamplingParams
    except ImportError as exc:
        raise ImportError(
            "backend='vllm' needs the vllm package (a GPU install: pip install -e .[vllm]); "
            "the default backend='hf' needs nothing extra"
        ) from exc
    llm = LLM(model=model_path, seed=seed or 0, **llm_kwargs)
    params = SamplingParams(
        n=num_samples,
        temperature=temperature,
        top_k=top_k if top_k > 0 else -1,  # vLLM spells "off" as -1
        top_p=top_p,
        max_tokens=max_new_tokens,
        seed=seed,
    )
    outputs = llm.generate(prompts, params)
    return [[c.text for c in o.outputs] for o in outputs]
