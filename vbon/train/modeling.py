"""The policy, its value head and pi_ref: freezing, memory sharing and shared trunk compute.

Only the top ``num_layers_unfrozen`` transformer blocks train (plus the final norm, and the LM
head when it is not tied to the frozen input embeddings), as in the authors' trlx setup. The
frozen bottom of the network is then identical in pi_theta and pi_ref, which buys two things:

- memory: pi_ref is a deep copy of the policy that *shares* every frozen tensor (only the top
  blocks, the final norm and an untied head are copied), like trlx's "hydra" models;
- compute: on a batch both models see, the frozen trunk runs once. ``TrunkCache.record`` keeps
  the output of the last frozen block during the policy's forward, and ``TrunkCache.replay``
  makes pi_ref's (or a later policy pass's) frozen blocks return it instead of recomputing it.
  RLOO's reference log-probs and every PPO epoch after the rollout then cost only the top blocks.

Dropout is off in both models (they stay in eval mode), and all log-probabilities are taken at
the sampling temperature, so that pi_theta is exactly the distribution the rollouts came from.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel

__all__ = [
    "PolicyWithValue",
    "TrunkCache",
    "decoder_blocks",
    "final_norm",
    "freeze_bottom",
    "shared_reference",
    "trunk_trains",
    "packed_logits",
    "sequence_log_softmax",
    "separable_head",
    "sequence_logprobs",
    "unpack",
]


def decoder_blocks(model: PreTrainedModel) -> nn.ModuleList:
    """The transformer blocks of a causal LM (GPT-2 ``h``, GPTNeoX/Llama ``layers``, ...)."""
    base = model.base_model
    for name in ("h", "layers", "blocks", "block"):
        blocks = getattr(base, name, None)
        if isinstance(blocks, nn.ModuleList):
            return blocks
    lists = [m for m in model.modules() if isinstance(m, nn.ModuleList)]
    if not lists:
        raise ValueError(f"model: cannot find the transformer blocks of {type(model).__name__}")
    return max(lists, key=len)


def final_norm(model: PreTrainedModel) -> nn.Module | None:
    """The norm after the last block (GPT-2 ``ln_f``, GPTNeoX ``final_layer_norm``, Llama ``norm``)."""
    base = model.base_model
    for name in ("ln_f", "final_layer_norm", "norm", "final_layernorm"):
        module = getattr(base, name, None)
        if isinstance(module, nn.Module):
            return module
    return None


def _head_is_tied(model: PreTrainedModel) -> bool:
    out = model.get_output_embeddings()
    inp = model.get_input_embeddings()
    return out is not None and inp is not None and out.weight is inp.weight


def freeze_bottom(model: PreTrainedModel, num_layers_unfrozen: int, *, rule: str = "blocks") -> int:
    """Freeze all but the top ``num_layers_unfrozen`` blocks (-1: train everything).

    ``rule="blocks"``: trainable are the top blocks, the final norm, and the LM head if it is
    not tied to the input embeddings; token and position embeddings stay frozen.
    ``rule="authors"``: trlx's ``freeze_bottom_causal_layers``: only the bottom blocks and the
    token embedding (with a head tied to it) freeze, so everything else trains, GPT-2's position
    embedding ``wpe`` included. Returns the number of frozen blocks.
    """
    if rule not in ("blocks", "authors"):
        raise ValueError(f"trainable: expected 'blocks' or 'authors', got {rule!r}")
    blocks = decoder_blocks(model)
    if num_layers_unfrozen < 0:
        model.requires_grad_(True)
        return 0
    if num_layers_unfrozen > len(blocks):
        raise ValueError(
            f"num_layers_unfrozen: {num_layers_unfrozen} exceeds the model's {len(blocks)} blocks"
        )
    n_frozen = len(blocks) - num_layers_unfrozen
    if rule == "authors":
        model.requires_grad_(True)
        for block in list(blocks)[:n_frozen]:
            block.requires_grad_(False)
        model.get_input_embeddings().requires_grad_(False)
        head = model.get_output_embeddings()
        if head is not None and (num_layers_unfrozen == 0 or _head_is_tied(model)):
            head.requires_grad_(False)
        return n_frozen
    model.requires_grad_(False)
    for block in list(blocks)[n_frozen:]:
        block.requires_grad_(True)
    norm = final_norm(model)
    if norm is not None:
        norm.requires_grad_(True)
    head = model.get_output_embeddings()
    if head is not None and not _head_is_tied(model):
        head.requires_grad_(True)
    return n_frozen


def _branch_parameters(model: PreTrainedModel) -> set[int]:
    """ids of the parameters of trlx's hydra branch: the blocks that train, the final norm and
    the LM head (what the KL reference keeps its own frozen copy of)."""
    modules = [b for b in decoder_blocks(model) if any(p.requires_grad for p in b.parameters())]
    modules += [m for m in (final_norm(model), model.get_output_embeddings()) if m is not None]
    return {id(p) for m in modules for p in m.parameters()}


def trunk_trains(model: PreTrainedModel) -> bool:
    """Whether a parameter below the trainable blocks trains (e.g. ``wpe`` under
    ``freeze_bottom(rule="authors")``): the frozen blocks' output then changes as the policy
    trains, so ``TrunkCache`` may not replay it."""
    branch = _branch_parameters(model)
    return any(p.requires_grad and id(p) not in branch for p in model.parameters())


def shared_reference(policy: PreTrainedModel, *, share_trunk: bool = False) -> PreTrainedModel:
    """A frozen pi_ref equal to ``policy`` now, sharing every frozen tensor with it.

    The policy's frozen parameters and all buffers are put in ``deepcopy``'s memo, so the copy
    refers to the same storage: only trainable tensors are duplicated (no transient copy of the
    whole model either). Tied weights stay tied. Call after ``freeze_bottom``.

    ``share_trunk``: also share the trainable parameters below the top blocks (``wpe`` under
    the authors' freezing), as trlx's hydra reference, a frozen copy of the top blocks, final
    norm and head on the policy's *current* trunk: this pi_ref then drifts as the trunk trains.
    """
    memo: dict[int, Any] = {}
    branch = _branch_parameters(policy) if share_trunk else set()
    for p in policy.parameters():
        if not p.requires_grad or (share_trunk and id(p) not in branch):
            memo[id(p)] = p
    for b in policy.buffers():
        memo[id(b)] = b
    reference = copy.deepcopy(policy, memo)
    shared = set(memo)
    for p in reference.parameters():
        if id(p) not in shared:  # a shared trunk tensor keeps training in the policy
            p.requires_grad_(False)
    return reference.eval()


class _Replayed(Exception):
    pass


class TrunkCache:
    """Runs the frozen trunk (blocks below the trainable ones) once for two forward passes.

    ``record()`` hooks the policy's last frozen block and keeps its output; ``replay(blocks,
    hidden)`` makes a block list's frozen blocks skip their work: the lower ones pass their input
    through, the last one returns ``hidden``. Requires blocks that return a tensor (transformers
    >= 5); ``usable`` is False otherwise, and callers then run full forwards.
    """

    def __init__(self, policy_blocks: nn.ModuleList, n_frozen: int) -> None:
        self.policy_blocks = policy_blocks
        self.n_frozen = n_frozen
        self.usable = n_frozen > 0

    @contextmanager
    def record(self) -> Iterator[dict[str, torch.Tensor]]:
        """Inside, the policy's forward stores the trunk output in the yielded dict ("hidden")."""
        store: dict[str, torch.Tensor] = {}
        if not self.usable:
            yield store
            return

        def hook(_module: nn.Module, _args: Any, output: Any) -> None:
            if not isinstance(output, torch.Tensor):
                raise TypeError(
                    f"TrunkCache: blocks return {type(output).__name__}, not a tensor; "
                    "pass share_reference=False"
                )
            store["hidden"] = output.detach()

        handle = self.policy_blocks[self.n_frozen - 1].register_forward_hook(hook)
        try:
            yield store
        finally:
            handle.remove()

    @contextmanager
    def replay(self, blocks: nn.ModuleList, hidden: torch.Tensor) -> Iterator[None]:
        """Inside, ``blocks``' frozen part returns ``hidden`` without computing anything."""
        patched = list(blocks)[: self.n_frozen]

        def passthrough(*args: Any, **kwargs: Any) -> Any:
            return args[0] if args else kwargs["hidden_states"]

        def last(*_args: Any, **_kwargs: Any) -> torch.Tensor:
            return hidden

        for block in patched[:-1]:
            block.forward = passthrough  # instance attribute shadows the class's forward
        patched[-1].forward = last
        try:
            yield
        finally:
            for block in patched:
                del block.forward


class PolicyWithValue(nn.Module):
    """pi_theta (a causal LM) and, for PPO, a value head on its last hidden state.

    One ``nn.Module`` so that DDP/accelerate wrap both and synchronise their gradients. The value
    head is trlx's: Linear(h, 2h) - ReLU - Linear(2h, 1), read after the final norm.
    """

    def __init__(self, lm: PreTrainedModel, with_value_head: bool = False) -> None:
        super().__init__()
        self.lm = lm
        self.v_head: nn.Module | None = None
        if with_value_head:
            hidden = int(lm.config.hidden_size)
            # fp32 whatever the checkpoint's dtype: it trains (see vbon.precision), and under
            # autocast its matmuls run in the compute dtype anyway.
            self.v_head = nn.Sequential(
                nn.Linear(hidden, 2 * hidden), nn.ReLU(), nn.Linear(2 * hidden, 1)
            ).to(device=lm.device, dtype=torch.float32)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        positions: torch.Tensor,
        keep: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits (n, V) at the ``keep`` (B, T) entries of ``positions`` (1-D indices into the
        sequence) and, with a value head, values (B, T) at every position."""
        logits, hidden = packed_logits(
            self.lm, input_ids, attention_mask, position_ids, positions, keep
        )
        values = None
        if self.v_head is not None:
            values = self.v_head(hidden).squeeze(-1).float()
        return logits, values


def separable_head(lm: PreTrainedModel) -> bool:
    """Whether ``lm``'s logits are its output embedding applied to its base model's last hidden
    state (GPT-2, GPTNeoX, Llama, ...), checked once per model on a three-token input, so that
    models that scale or cap their logits fall back to the full forward.

    The check runs a forward pass: call it once before ``TrunkCache.replay`` patches the blocks
    (the trainer does so for pi_theta and pi_ref when it builds them)."""
    known = lm.__dict__.get("_vbon_separable_head")
    if known is None:
        head = lm.get_output_embeddings()
        known = False
        if head is not None and hasattr(lm, "base_model") and lm.base_model is not lm:
            ids = torch.zeros((1, 3), dtype=torch.long, device=lm.device)
            with torch.no_grad():
                full = lm(input_ids=ids, use_cache=False).logits.float()
                split = head(lm.base_model(input_ids=ids, use_cache=False)[0]).float()
            known = bool(torch.allclose(full, split, rtol=1e-4, atol=1e-4))
        lm.__dict__["_vbon_separable_head"] = known
    return known


def packed_logits(
    lm: PreTrainedModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    position_ids: torch.Tensor,
    positions: torch.Tensor,
    keep: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (n, V) at the ``keep`` (B, T) entries of ``positions``, and the final hidden
    states (B, T, H) at ``positions``.

    Only the kept positions go through the LM head. The (rows x positions x vocab) logits are
    the bulk of a small model's compute and memory traffic, and completions end at different
    lengths, so skipping the padding after each row's EOS roughly halves the head's work.
    """
    if separable_head(lm):
        hidden = lm.base_model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=False,
        )[0][:, positions]
        return lm.get_output_embeddings()(hidden[keep]), hidden
    # Fallback: the full forward, with the hidden state read after the final norm (what a
    # value head sees) by a hook, or the last hidden state when the model has no final norm.
    norm = final_norm(lm)
    store: dict[str, torch.Tensor] = {}
    handle = None
    if norm is not None:

        def hook(_m: nn.Module, _a: Any, out: torch.Tensor) -> None:
            store["h"] = out

        handle = norm.register_forward_hook(hook)
    try:
        out = lm(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            logits_to_keep=positions,
            use_cache=False,
            output_hidden_states=norm is None,
        )
    finally:
        if handle is not None:
            handle.remove()
    hidden = (store["h"] if "h" in store else out.hidden_states[-1])[:, positions]
    return out.logits[keep], hidden


def unpack(mask: torch.Tensor, packed: torch.Tensor) -> torch.Tensor:
    """Values packed over ``mask``'s True entries, (n,), back to (B, T) with 0 off the mask
    (differentiable in ``packed``)."""
    out = torch.zeros(mask.shape, dtype=packed.dtype, device=packed.device)
    return out.masked_scatter(mask.bool(), packed)


def _scaled_logits(
    model: nn.Module,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    token_ids: torch.Tensor,
    mask: torch.Tensor,
    temperature: float,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Logits / temperature (n, V) at the kept completion positions, and values (B, T)."""
    input_ids = torch.cat([prompt_ids, token_ids], dim=1)
    attention = torch.cat([prompt_mask.bool(), mask.bool()], dim=1).long()
    position_ids = (attention.cumsum(dim=1) - 1).clamp(min=0)
    # The T positions whose next token is a completion token: the last prompt position and all
    # completion positions but the last.
    length, width = input_ids.shape[1], token_ids.shape[1]
    positions = torch.arange(length - width - 1, length - 1, device=input_ids.device)
    keep = mask.bool()
    if isinstance(model, PreTrainedModel):
        logits, _ = packed_logits(model, input_ids, attention, position_ids, positions, keep)
        values = None
    else:
        logits, values = model(input_ids, attention, position_ids, positions, keep)
    logits = logits.float()
    if temperature != 1.0:  # no (n, vocab) copy at temperature 1
        logits = logits / temperature
    if values is not None:
        values = values * mask.to(values.dtype)
    return logits, values


def sequence_logprobs(
    model: nn.Module,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    token_ids: torch.Tensor,
    mask: torch.Tensor,
    *,
    temperature: float,
    with_values: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-token log pi(y_t | x, y_<t) at ``temperature`` (B, T), 0 off the mask, and values.

    ``model`` is a ``PolicyWithValue`` (possibly wrapped by DDP) or a bare causal LM (pi_ref).
    Only the T positions that predict completion tokens go through the LM head (the prompt
    positions are skipped: for TL;DR that is most of the sequence). Values (B, T) are V(x, y_<t),
    the state each token is sampled from. Position ids count from the first real prompt token,
    so left padding does not shift GPT-2's absolute positions.
    """
    logits, values = _scaled_logits(model, prompt_ids, prompt_mask, token_ids, mask, temperature)
    tokens = token_ids[mask.bool()].unsqueeze(-1)
    picked = unpack(mask, logits.gather(-1, tokens).squeeze(-1) - logits.logsumexp(-1))
    return picked, values if with_values else None


def sequence_log_softmax(
    model: nn.Module,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    token_ids: torch.Tensor,
    mask: torch.Tensor,
    *,
    temperature: float,
    full: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """``sequence_logprobs`` plus the whole next-token distribution: per-token log-probs
    (B, T), log pi(. | x, y_<t) at ``temperature`` at the kept positions, packed (n, V) in
    the order of ``mask``'s True entries (None unless ``full``), and values (None for a bare
    causal LM). The packed distributions are what the Rao-Blackwellised KL needs."""
    if not full:
        picked, values = sequence_logprobs(
            model,
            prompt_ids,
            prompt_mask,
            token_ids,
            mask,
            temperature=temperature,
            with_values=True,
        )
        return picked, None, values
    logits, values = _scaled_logits(model, prompt_ids, prompt_mask, token_ids, mask, temperature)
    logp = torch.log_softmax(logits, dim=-1)
    picked = unpack(mask, logp.gather(-1, token_ids[mask.bool()].unsqueeze(-1)).squeeze(-1))
    return picked, logp, values
