"""Notebook parameters: type checks, coercion of what papermill passes, and range rules.

Every notebook's first code cell is tagged ``parameters`` and holds annotated assignments
(``m: int = 32  # help``). The next code cell calls::

    from vbon.params import check_parameters
    check_parameters(globals())

which, for every annotated name,

1. coerces strings: ``papermill -p n_grid [0,4]`` hands the kernel the *string* ``"[0,4]"``
   (papermill only recognises ints, floats, booleans and None on its command line), so a string
   given where the annotation is not ``str`` is parsed with ``yaml.safe_load`` (the syntax of
   ``-y`` and ``-f params.yaml``), and a number spelled ``3e-4`` (YAML 1.1 reads it as a string)
   with ``float``;
2. checks the type against the annotation (``bool`` is not an ``int``; an ``int`` is a fine
   ``float`` and becomes one; a tuple becomes a list);
3. applies the range rule of the name in :data:`RULES` (or in ``rules``), element by element
   for lists; names without a rule get the type check only;
4. writes the coerced values back into the namespace,

and raises ``ValueError("parameter <name>: <what is wrong>, got <what was given>")`` on the
first bad one, before the notebook loads anything.

The annotations are read from ``namespace["__annotations__"]``, which ipykernel fills for
annotated assignments at the top level of a cell (checked by ``tests/test_params.py`` through a
real papermill run). On Python >= 3.14 (PEP 649), where a cell defines ``__annotate__`` instead,
the annotations are taken from it; as the check runs in the cell right after the parameters
(papermill's injected cell has no annotations), it sees the parameters cell's.
"""

from __future__ import annotations

import math
import numbers
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

__all__ = ["Rule", "RULES", "check_parameters", "check_value"]


@dataclass(frozen=True)
class Rule:
    """What a parameter's value must satisfy beyond its annotated type.

    For a list, ``element`` is the type of every element and the bounds and ``choices`` apply to
    each element; ``nonempty`` rejects ``[]``. Bounds: ``minimum`` (exclusive when ``strict``),
    ``maximum`` (inclusive); numbers are always finite.
    """

    element: type | None = None
    minimum: float | None = None
    strict: bool = False
    maximum: float | None = None
    choices: tuple[Any, ...] | None = None
    nonempty: bool = False
    help: str = ""


_COUNT = Rule(element=int, minimum=1)
_SEED = Rule(element=int, minimum=0)

#: The shared rules, by parameter name. The vocabulary is common to both tasks' notebooks
#: (train_prompts, test_prompts, m, eval_m, n_grid, kl_rl_betas, seeds); a notebook passes
#: ``rules=`` to tighten one for itself (e.g. ``n_grid`` as vBoN's N, which needs N >= 2).
RULES: dict[str, Rule] = {
    "profile": Rule(element=str, choices=("smoke", "converged", "paper")),
    "algorithm": Rule(element=str, choices=("rloo", "ppo")),
    "variant": Rule(element=str, choices=("", "2.8b", "1b", "410m")),
    "seed": _SEED,
    "ref_seed": _SEED,
    "seeds": Rule(element=int, minimum=0, nonempty=True, help="training seeds"),
    **{
        name: _COUNT
        for name in (
            "m",
            "eval_m",
            "train_prompts",
            "test_prompts",
            "eval_prompts",
            "eval_k",
            "steps",
            "sft_steps",
            "workers",
            "bon_pool",
            "bon_resamples",
            "n_resamples",
            "policy_samples",
            "show_prompts",
            "n_show",
            "n_examples",
            "m_study_prompts",
            "m_ablation_n",
            "support_size",
            "n_monte_carlo",
            "study_prompts",
            "study_heldout",
            "enum_steps",
            "world_checks",
            "draws",
            "online_steps",
            "cost_m",
            "cost_prompts",
        )
    },
    "tolerance": Rule(element=float, minimum=0.0, strict=True),
    "enum_n": Rule(element=int, minimum=2, help="vBoN's N (beta = 1/(N-1) needs N >= 2)"),
    "cost_n": Rule(element=int, minimum=2, help="vBoN's N (beta = 1/(N-1) needs N >= 2)"),
    "cost_m_grid": Rule(element=int, minimum=1, nonempty=True),
    "cost_transforms": Rule(element=str, choices=("log", "identity", "exp"), nonempty=True),
    "enum_transforms": Rule(element=str, choices=("log", "identity", "exp"), nonempty=True),
    "estimators": Rule(element=str, choices=("add_one", "posterior"), nonempty=True),
    "cost_estimators": Rule(element=str, choices=("add_one", "posterior", "pooled"), nonempty=True),
    "n_grid": Rule(element=int, minimum=1, nonempty=True, help="Best-of-N sizes N"),
    "bon_n": Rule(element=int, minimum=1, nonempty=True),
    "bon_sft_n": Rule(element=int, minimum=1),
    "vbon_n": Rule(element=int, minimum=2, help="vBoN's N (beta = 1/(N-1) needs N >= 2)"),
    "m_grid": Rule(element=int, minimum=1, nonempty=True),
    "n_study": Rule(element=int, minimum=1, nonempty=True, help="Best-of-N sizes N"),
    "m_ablation": Rule(element=int, minimum=1),
    "kl_rl_betas": Rule(element=float, minimum=0.0, strict=True, help="KL weights beta"),
    "kl_rl_beta": Rule(element=float, minimum=0.0, strict=True, help="KL weights beta"),
    "temperatures": Rule(element=float, minimum=0.0, strict=True, nonempty=True),
    "lr": Rule(element=float, minimum=0.0, strict=True),
    "sft_lr": Rule(element=float, minimum=0.0, strict=True),
}


class _Invalid(Exception):
    """A check failed; the message lacks the ``parameter <name>:`` prefix."""


def _annotations(namespace: Mapping[str, Any]) -> dict[str, Any]:
    found = namespace.get("__annotations__")
    if isinstance(found, Mapping) and found:
        return dict(found)
    annotate = namespace.get("__annotate__")
    if callable(annotate):  # Python >= 3.14: annotations are computed on demand
        return dict(annotate(1))  # 1 is annotationlib.Format.VALUE
    raise ValueError(
        "namespace: no parameter annotations found; the parameters cell must use annotated "
        "assignments (m: int = 32  # help) and check_parameters(globals()) must run in the "
        "notebook's own namespace"
    )


_NAMES = {t.__name__: t for t in (int, float, str, bool, list, dict, tuple, type(None))}


def _resolve(annotation: Any) -> Any:
    if isinstance(annotation, str):  # from __future__ import annotations in the notebook
        try:
            return eval(annotation, {"__builtins__": {}}, {**_NAMES, "None": None})  # noqa: S307
        except Exception:
            return Any
    return annotation


def _split(annotation: Any) -> tuple[list[Any], bool]:
    """(the non-None alternatives of an annotation, whether None is allowed)."""
    annotation = _resolve(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = list(typing.get_args(annotation))
        return [a for a in args if a is not type(None)], type(None) in args
    if annotation is None or annotation is type(None):
        return [], True
    return [annotation], False


def _show(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def _must(subject: str, text: str) -> _Invalid:
    return _Invalid(f"{subject} must {text}" if subject else f"must {text}")


def _scalar(value: Any, kind: type, subject: str) -> Any:
    """``value`` as ``kind`` (int, float, str, bool, or any class), or _Invalid."""
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise _must(subject, f"be true or false, got {_show(value)}")
    if kind is int:
        if isinstance(value, str):  # an element of a YAML list, e.g. "5"
            try:
                value = int(value)
            except ValueError:
                pass
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return int(value)
        raise _must(subject, f"be an integer, got {_show(value)}")
    if kind is float:
        if isinstance(value, str):  # YAML 1.1 reads 3e-4 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            return float(value)
        raise _must(subject, f"be a number, got {_show(value)}")
    if kind is str:
        if isinstance(value, str):
            return value
        raise _must(subject, f"be a string, got {_show(value)}")
    if isinstance(kind, type) and not isinstance(value, kind):
        raise _must(subject, f"be a {kind.__name__}, got {_show(value)}")
    return value


def _bounds(value: Any, rule: Rule, subject: str) -> None:
    if rule.choices is not None and not any(
        type(value) is type(c) and value == c for c in rule.choices
    ):
        raise _must(subject, f"be one of {list(rule.choices)}, got {value!r}")
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        return
    if not math.isfinite(value):
        raise _must(subject, f"be finite, got {value!r}")
    kind = "an integer" if isinstance(value, int) else "a number"
    if rule.minimum is not None:
        low = value <= rule.minimum if rule.strict else value < rule.minimum
        if low:
            sign = ">" if rule.strict else ">="
            raise _must(subject, f"be {kind} {sign} {rule.minimum:g}, got {value!r}")
    if rule.maximum is not None and value > rule.maximum:
        raise _must(subject, f"be {kind} <= {rule.maximum:g}, got {value!r}")


def _parse(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise _Invalid(
            f"could not be read as YAML ({exc.__class__.__name__}), got {text!r}"
        ) from None


def _check(value: Any, annotation: Any, rule: Rule | None) -> Any:
    kinds, none_ok = _split(annotation)
    if value is None:
        if none_ok:
            return None
        raise _Invalid("must not be None, got None")
    if isinstance(value, str) and kinds and str not in kinds:
        value = _parse(value)  # papermill -p passes lists, dicts, ... as strings
        if value is None and none_ok:
            return None
    kind = kinds[0] if len(kinds) == 1 else None
    origin = typing.get_origin(kind) or kind
    if origin in (list, tuple) or (kind is None and isinstance(value, list | tuple)):
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            raise _Invalid(f"must be a list, got {_show(value)}")
        args = typing.get_args(kind) if kind is not None else ()
        element = args[0] if args and isinstance(args[0], type) else None
        element = element or (rule.element if rule else None)
        if rule is not None and rule.nonempty and not value:
            raise _Invalid("must be a non-empty list, got []")
        out = []
        for i, item in enumerate(value):
            subject = f"element {i} of {value!r}"
            if element is not None:
                item = _scalar(item, element, subject)
            if rule is not None:
                _bounds(item, rule, subject)
            out.append(item)
        return out
    if isinstance(kind, type):
        value = _scalar(value, kind, "")
    if rule is not None:
        _bounds(value, rule, "")
    return value


def check_value(
    name: str, value: Any, annotation: Any, rules: Mapping[str, Rule] | None = None
) -> Any:
    """One parameter's value, coerced and checked as :func:`check_parameters` does."""
    table = {**RULES, **(rules or {})}
    try:
        return _check(value, annotation, table.get(name))
    except _Invalid as exc:
        raise ValueError(f"parameter {name}: {exc}") from None


def check_parameters(
    namespace: dict[str, Any], rules: Mapping[str, Rule] | None = None
) -> dict[str, Any]:
    """Coerce and check a notebook's parameters in place; returns ``{name: value}``.

    Args:
        namespace: the notebook's ``globals()``, holding the parameters cell's annotations and
            the values papermill injected after it.
        rules: rules that replace or extend :data:`RULES` for this notebook.

    Raises:
        ValueError: ``parameter <name>: ...`` for the first parameter that is wrong.
    """
    if not isinstance(namespace, dict):
        raise ValueError(f"namespace: expected the notebook's globals(), got {type(namespace)}")
    checked = {}
    for name, annotation in _annotations(namespace).items():
        if name not in namespace:
            continue  # annotated without a value: nothing to check
        checked[name] = check_value(name, namespace[name], annotation, rules)
    namespace.update(checked)
    return checked
