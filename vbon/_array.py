"""numpy/torch interop for the maths modules, and the one input rule they share.

The input rule of ``vbon.bon``, ``vbon.cdf``, ``vbon.objectives`` and ``vbon.evaluate``: an
array argument may be a Python scalar, a list or tuple (nested, rectangular), a numpy array or a
torch tensor (on any device). Lists and tuples mean exactly what ``np.asarray`` makes of them, so
``[1.0, 2.0, 3.0]`` is the 1-D array of three values. The one place a sequence may be ragged is a
per-prompt collection (``RewardCDF``'s reference rewards): rows of different lengths are then
separate prompts. Results come back as a tensor (same device) when the argument they follow is a
tensor, and as numpy otherwise.

The maths runs in float64 numpy (exactness matters more than speed for these O(n) reductions).
Validation errors name the offending argument, as every public function promises.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

try:  # torch is a hard dependency of the package, but the maths must not need it to import
    import torch
except ImportError:  # pragma: no cover
    torch = None


def is_tensor(x: Any) -> bool:
    return torch is not None and isinstance(x, torch.Tensor)


def as_float64(x: Any, name: str, *, allow_inf: bool = True, check_nan: bool = True) -> np.ndarray:
    """``x`` as a float64 ndarray; ValueError naming ``name`` on NaN (or inf when not allowed).

    ``check_nan=False`` is for callers that find NaN in a pass they make anyway.
    """
    if is_tensor(x):
        x = x.detach().to("cpu", dtype=torch.float64).numpy()
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: expected numbers, got {type(x).__name__} ({exc})") from None
    if check_nan and np.isnan(arr).any():
        raise ValueError(f"{name}: contains NaN")
    if not allow_inf and np.isinf(arr).any():
        raise ValueError(f"{name}: contains inf")
    return arr


def like(template: Any, *, integer: bool = False) -> Callable[[np.ndarray], Any]:
    """A function that turns a result back into the array type (and device) of ``template``
    (a float tensor of the template's float dtype, or int64 for ``integer`` results)."""
    if not is_tensor(template):
        return lambda a: a
    if integer:
        return lambda a: torch.as_tensor(np.asarray(a), dtype=torch.int64, device=template.device)
    dtype = template.dtype if template.is_floating_point() else torch.float64
    device = template.device
    return lambda a: torch.as_tensor(np.asarray(a), dtype=dtype, device=device)


def as_index(x: Any, name: str) -> np.ndarray:
    """``x`` (list, array or tensor of integers, any device) as an int64 ndarray; ValueError
    naming ``name`` for non-integers (bools and integral floats included: an index is an index)."""
    if is_tensor(x):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name}: expected integers, got {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def as_bool(x: Any, name: str) -> np.ndarray:
    """``x`` (list, array or tensor, any device) as a bool ndarray."""
    if is_tensor(x):
        x = x.detach().cpu().numpy()
    try:
        return np.asarray(x, dtype=bool)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: expected booleans, got {type(x).__name__} ({exc})") from None


def check_n(n: Any, name: str = "n", minimum: int = 1) -> int:
    """Validate a Best-of-N sample count: an integer >= ``minimum``."""
    if (is_tensor(n) or isinstance(n, np.ndarray)) and n.ndim == 0:
        n = n.item()  # a 0-d tensor or array from iterating over one
    if isinstance(n, bool) or not isinstance(n, int | np.integer):
        if isinstance(n, float | np.floating) and float(n).is_integer():
            n = int(n)
        else:
            raise ValueError(f"{name}: must be an integer >= {minimum}, got {n!r}")
    if n < minimum:
        raise ValueError(f"{name}: must be an integer >= {minimum}, got {n}")
    return int(n)


def log1mexp(x: np.ndarray) -> np.ndarray:
    """log(1 - exp(x)) for x <= 0, accurate at both ends (Maechler 2012)."""
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(x > -np.log(2.0), np.log(-np.expm1(x)), np.log1p(-np.exp(x)))
