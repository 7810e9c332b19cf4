"""Validation of scalar settings: one wording for every ``ValueError`` the package raises.

Every message starts with the parameter's name, says what is expected and repeats what was
given, e.g. ``"m: must be an integer >= 1, got 2.5"``. A string is never read as a number here
(``"32"`` is not 32): values typed in a notebook or a YAML file are coerced once, by
:func:`vbon.params.check_parameters`, and the library below it sees real numbers. ``bool`` is not
an integer either, although Python says it is.

This module imports nothing heavy (the CLI validates its configuration before loading torch).
"""

from __future__ import annotations

import math
import numbers
import os
from typing import Any

__all__ = ["check_int", "check_real", "check_text", "check_choice", "check_run_name"]


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_int(
    value: Any, name: str, *, minimum: int | None = None, allow_none: bool = False
) -> int | None:
    """``value`` as an ``int``, or ValueError naming ``name``.

    Accepts Python and numpy integers; rejects bools, floats (even 2.0: a count that arrives as a
    float is a sign of a computation gone wrong upstream) and strings.
    """
    if value is None and allow_none:
        return None
    if not _is_int(value):
        bound = f" >= {minimum}" if minimum is not None else ""
        none = " or None" if allow_none else ""
        raise ValueError(
            f"{name}: must be an integer{bound}{none}, got {value!r} ({type(value).__name__})"
        )
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name}: must be an integer >= {minimum}, got {value}")
    return value


def check_real(
    value: Any,
    name: str,
    *,
    minimum: float | None = None,
    strict: bool = True,
    maximum: float | None = None,
    finite: bool = True,
    allow_none: bool = False,
) -> float | None:
    """``value`` as a ``float``, or ValueError naming ``name``.

    ``minimum`` is exclusive when ``strict`` (``> minimum``), inclusive otherwise; ``maximum`` is
    inclusive. Accepts Python/numpy integers and floats, never bools or strings; NaN is always
    rejected and infinities unless ``finite=False``.
    """
    if value is None and allow_none:
        return None
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise ValueError(f"{name}: must be a number, got {value!r} ({type(value).__name__})")
    value = float(value)
    if math.isnan(value) or (finite and math.isinf(value)):
        raise ValueError(f"{name}: must be a finite number, got {value!r}")
    if minimum is not None and (value <= minimum if strict else value < minimum):
        raise ValueError(f"{name}: must be {'>' if strict else '>='} {minimum:g}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name}: must be <= {maximum:g}, got {value!r}")
    return value


def check_text(value: Any, name: str, *, what: str = "a non-empty string") -> str:
    """``value`` itself if it is a non-empty string (or path), else ValueError naming ``name``."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name}: must be {what}, got {value!r}")
    return value


def check_choice(value: Any, name: str, choices: tuple[Any, ...]) -> Any:
    """``value`` itself if it is one of ``choices``, else ValueError naming ``name``."""
    # Compared by type too: True == 1 must not select the choice 1.
    if not any(type(value) is type(c) and value == c for c in choices):
        raise ValueError(f"{name}: expected one of {list(choices)}, got {value!r}")
    return value


def check_run_name(value: Any, name: str = "run_name") -> str:
    """A directory name that stays inside its parent: no separators, ``..``, absolute paths."""
    value = check_text(value, name, what="a directory name")
    if value in (".", "..") or value != value.strip():
        raise ValueError(f"{name}: {value!r} is not a directory name of its own")
    seps = {"/", os.sep} | ({os.altsep} if os.altsep else set())
    if any(s in value for s in seps) or os.path.isabs(value) or "\0" in value:
        raise ValueError(
            f"{name}: must be one directory name without path separators (it is created under "
            f"the output directory), got {value!r}; use output_dir to choose the parent"
        )
    return value
