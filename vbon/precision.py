"""One numerical policy for every forward pass of a run: rollouts, F_hat's reference samples,
evaluation and the updates.

The paper needs the reference samples behind F_hat and the training rollouts to come from the same
numerical policy, whatever the precision: a policy sampled in bf16 and an F_hat estimated from fp32
samples compare two different distributions. A precision is named by one string:

- ``"fp32"``: every weight and activation in float32, no autocast;
- ``"bf16-autocast"`` / ``"fp16-autocast"``: ``torch.autocast`` at that dtype; weights may be
  stored in fp32 (the trainable ones: master weights) or in the checkpoint's half dtype (the
  frozen ones), the matmuls run in half precision either way.

``sampling_precision(mixed_precision, device)`` maps a run's ``mixed_precision`` to that name; the
trainer and ``vbon.reference.build_task_reference`` both draw under ``precision_context``, and the
reference cache's key records the name.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch

__all__ = [
    "PRECISIONS",
    "check_model_precision",
    "check_precision",
    "default_precision",
    "load_dtype",
    "precision_context",
    "resolve_mixed_precision",
    "resolve_precision",
    "sampling_precision",
    "upcast_trainable",
]

PRECISIONS = ("fp32", "bf16-autocast", "fp16-autocast")
_AUTOCAST_DTYPES = {"bf16-autocast": torch.bfloat16, "fp16-autocast": torch.float16}


def _device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_mixed_precision(mixed_precision: str, device: str | torch.device | None) -> str:
    """accelerate's ``mixed_precision`` ("no", "bf16", "fp16") for a run's setting.

    ``"auto"`` is bf16 on a CUDA device that supports it and "no" (full precision) elsewhere.
    """
    if mixed_precision not in ("auto", "no", "bf16", "fp16"):
        raise ValueError(f"mixed_precision: expected auto/no/bf16/fp16, got {mixed_precision!r}")
    if mixed_precision != "auto":
        return mixed_precision
    dev = _device(device)
    if dev.type == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16"
    return "no"


def sampling_precision(mixed_precision: str, device: str | torch.device | None = None) -> str:
    """The precision name (one of ``PRECISIONS``) of a run with this ``mixed_precision``."""
    resolved = resolve_mixed_precision(mixed_precision, device)
    return {"no": "fp32", "bf16": "bf16-autocast", "fp16": "fp16-autocast"}[resolved]


def default_precision(device: str | torch.device | None = None) -> str:
    """The precision a run with the default ``mixed_precision="auto"`` uses on ``device``."""
    return sampling_precision("auto", device)


def resolve_precision(precision: str | None, device: str | torch.device | None = None) -> str:
    """``precision`` checked, or the device's default (``default_precision``) when None."""
    return check_precision(default_precision(device) if precision is None else precision)


def load_dtype(precision: str) -> dict[str, Any]:
    """The loader keyword a model sampled at ``precision`` needs: fp32 weights for "fp32" (a GPU
    loads the checkpoint's dtype by default); under autocast the checkpoint's dtype stays."""
    return {"dtype": torch.float32} if check_precision(precision) == "fp32" else {}


def check_precision(precision: str) -> str:
    """``precision`` if it is one of ``PRECISIONS``, else ValueError naming it."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision: expected one of {list(PRECISIONS)}, got {precision!r}")
    return precision


def precision_context(
    precision: str, device: str | torch.device | None
) -> AbstractContextManager[Any]:
    """The context every forward pass of ``precision`` runs in (autocast, or nothing for fp32).

    On a CPU too: a bf16 frozen trunk beside fp32 trainable blocks only meets in one matmul
    under autocast, and the reference sampler must round the same way the rollouts do.
    """
    check_precision(precision)
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device_type=_device(device).type, dtype=_AUTOCAST_DTYPES[precision])


def check_model_precision(model: Any, precision: str) -> None:
    """Refuse to call half-precision weights fp32: without autocast they would compute in half."""
    check_precision(precision)
    if precision != "fp32":
        return
    low = sorted(
        {str(p.dtype) for p in model.parameters() if p.is_floating_point()} - {"torch.float32"}
    )
    if low:
        raise ValueError(
            f"precision: 'fp32' but the model holds {', '.join(low)} weights; load it in "
            "float32 or sample under an autocast precision"
        )


def upcast_trainable(model: torch.nn.Module, *, everything: bool = False) -> int:
    """Store the trainable parameters (all of them with ``everything``) in float32.

    AdamW on bf16 weights loses the update: at the paper's lr 3e-6 a step is far below bf16's
    resolution (8 significant bits), so the weight never changes. fp32 master weights (and hence
    fp32 optimiser state) keep it; frozen weights may stay in the checkpoint's dtype under
    autocast. ``param.data`` is replaced in place, so tied weights stay one Parameter. Returns
    the number of parameters converted.
    """
    changed = 0
    for p in model.parameters():
        if (everything or p.requires_grad) and p.is_floating_point() and p.dtype != torch.float32:
            p.data = p.data.float()
            changed += 1
    if everything:  # floating buffers too (e.g. rotary frequencies), as model.float() does
        for b in model.buffers():
            if b.is_floating_point() and b.dtype != torch.float32:
                b.data = b.data.float()
    return changed
