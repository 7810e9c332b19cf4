"""Tokenizer training and the small training loops that build the toy models.

Plain PyTorch loops rather than ``transformers.Trainer``: the models are tiny, and on two CPU cores
the Trainer's per-step overhead would cost more than the arithmetic.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerFast

EOS = "<|endoftext|>"


def train_bpe(texts: Sequence[str], vocab_size: int, special_tokens: Sequence[str]) -> Tokenizer:
    """A byte-level BPE tokenizer (GPT-2 style: no prefix space, bytes as the base alphabet)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def wrap_tokenizer(
    tok: Tokenizer,
    *,
    pad_token: str,
    model_max_length: int,
    padding_side: str,
    cls_token: str | None = None,
) -> PreTrainedTokenizerFast:
    """Wrap a trained tokenizer for transformers.

    ``<|endoftext|>`` is BOS and EOS as in GPT-2 and Pythia; the pad token is a dedicated special
    token of the vocabulary so that padding never collides with content or EOS. With ``cls_token``
    the tokenizer prepends it (an encoder classifier reads its first position).
    """
    tok = Tokenizer.from_str(tok.to_str())
    extra: dict[str, str] = {}
    if cls_token is not None:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{cls_token} $A",
            pair=f"{cls_token} $A $B:1",
            special_tokens=[(cls_token, tok.token_to_id(cls_token))],
        )
        extra["cls_token"] = cls_token
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=EOS,
        eos_token=EOS,
        unk_token=EOS,
        pad_token=pad_token,
        model_max_length=model_max_length,
        padding_side=padding_side,
        model_input_names=["input_ids", "attention_mask"],
        clean_up_tokenization_spaces=False,
        **extra,
    )


def pad(
    seqs: Sequence[Sequence[int]], pad_id: int, side: str = "right"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad id lists into ``(input_ids, attention_mask)`` tensors."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        if side == "right":
            ids[i, : len(s)] = torch.as_tensor(s, dtype=torch.long)
            mask[i, : len(s)] = 1
        else:
            ids[i, width - len(s) :] = torch.as_tensor(s, dtype=torch.long)
            mask[i, width - len(s) :] = 1
    return ids, mask


def _schedule(step: int, steps: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


def run_steps(
    model: torch.nn.Module,
    loss_fn: Callable[[np.ndarray], torch.Tensor],
    n_examples: int,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    desc: str,
    weight_decay: float = 0.01,
    progress: bool = True,
    position: int | None = None,
) -> list[float]:
    """AdamW with warmup and cosine decay over random mini-batches; returns the loss curve.

    ``loss_fn`` maps an index array of examples to the mini-batch loss.
    """
    rng = np.random.default_rng(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: _schedule(s, steps, max(1, steps // 20))
    )
    model.train()
    losses: list[float] = []
    order = rng.permutation(n_examples)
    pos = 0
    bar = tqdm(
        range(steps),
        desc=desc,
        leave=False,
        mininterval=1.0,
        disable=not progress,
        position=position,
    )
    for _ in bar:
        if pos + batch_size > n_examples:
            order, pos = rng.permutation(n_examples), 0
        idx = order[pos : pos + batch_size]
        pos += batch_size
        loss = loss_fn(idx)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if len(losses) % 50 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.3f}")
    model.eval()
    return losses


def lm_loss_fn(
    model: torch.nn.Module, seqs: Sequence[Sequence[int]], loss_from: Sequence[int], pad_id: int
) -> Callable[[np.ndarray], torch.Tensor]:
    """Next-token loss on ``seqs[i][loss_from[i]:]`` (tokens before it only condition).

    The output layer runs only on the positions that carry a loss: the logits of a whole padded
    batch are the largest tensor of the step, and on a CPU their size, not the FLOPs, sets the pace.
    """
    head = model.get_output_embeddings()

    def fn(idx: np.ndarray) -> torch.Tensor:
        ids, mask = pad([seqs[i] for i in idx], pad_id)
        starts = torch.as_tensor([max(1, loss_from[i]) for i in idx]).unsqueeze(1)
        targets = (mask == 1) & (torch.arange(ids.shape[1]).unsqueeze(0) >= starts)
        hidden = model.base_model(input_ids=ids, attention_mask=mask).last_hidden_state
        # Position t predicts token t + 1.
        logits = head(hidden[:, :-1][targets[:, 1:]])
        return torch.nn.functional.cross_entropy(logits, ids[:, 1:][targets[:, 1:]])

    return fn


def classifier_loss_fn(
    model: torch.nn.Module, seqs: Sequence[Sequence[int]], labels: np.ndarray, pad_id: int
) -> Callable[[np.ndarray], torch.Tensor]:
    """Cross-entropy of a sequence classifier."""

    def fn(idx: np.ndarray) -> torch.Tensor:
        ids, mask = pad([seqs[i] for i in idx], pad_id)
        return model(input_ids=ids, attention_mask=mask, labels=torch.as_tensor(labels[idx])).loss

    return fn


def bradley_terry_group_loss_fn(
    model: torch.nn.Module,
    groups: Sequence[Sequence[Sequence[int]]],
    pairs: Sequence[Sequence[tuple[int, int]]],
    pad_id: int,
    center: float = 0.01,
) -> Callable[[np.ndarray], torch.Tensor]:
    """Bradley-Terry over all ranked pairs within groups of sequences (one forward per sequence).

    ``groups[g]`` holds the token ids of a group's sequences, ``pairs[g]`` its ``(better, worse)``
    index pairs. Bradley-Terry is blind to a constant shift; a small pull of rewards towards 0
    pins the scale's origin, so that a fixed penalty such as -1 for a missing EOS means the same
    thing from one build to the next. Left padding puts each sequence's last token at the last
    position, where the model pools; positions count from each sequence's first real token.
    """

    def fn(idx: np.ndarray) -> torch.Tensor:
        seqs, better, worse, offset = [], [], [], 0
        for g in idx:
            seqs += list(groups[g])
            better += [offset + i for i, _ in pairs[g]]
            worse += [offset + j for _, j in pairs[g]]
            offset += len(groups[g])
        ids, mask = pad(seqs, pad_id, side="left")
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        r = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits.squeeze(-1)
        margin = r[torch.as_tensor(better)] - r[torch.as_tensor(worse)]
        return -torch.nn.functional.logsigmoid(margin).mean() + center * (r**2).mean()

    return fn
