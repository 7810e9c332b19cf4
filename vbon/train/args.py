"""Command-line flags for ``TrainConfig``, shared by ``vbon train`` and ``python -m vbon.train``.

Every config field is a flag (``--num-layers-unfrozen 2``, ``--resume``/``--no-resume``), with
its docstring as help, ``none`` for an optional field's None; ``--config run.json`` reads a saved config first (flags override it) and
``--task-override KEY=VALUE`` (repeatable) fills ``task_overrides``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing
from typing import Any

from vbon.train.config import TrainConfig, field_docs

__all__ = ["add_train_arguments", "config_from_args"]


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


class _NoneValue:
    """An explicit ``none`` on the command line (unset flags are plain None)."""

    def __repr__(self) -> str:
        return "none"


NONE = _NoneValue()


def _scalar_type(annotation: Any) -> tuple[Any, tuple[str, ...] | None]:
    """(argparse type, choices) of a field annotation such as ``int | None`` or a Literal."""
    hint = annotation
    optional = False
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        non_none = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = len(non_none) < len(typing.get_args(hint))
        hint = non_none[0] if len(non_none) == 1 else str
    if typing.get_origin(hint) is typing.Literal:
        return str, tuple(str(a) for a in typing.get_args(hint))
    base = hint if hint in (int, float, str) else _parse_value
    if not optional:
        return base, None

    def parse(text: str) -> Any:
        return NONE if text.lower() in ("none", "null") else base(text)

    parse.__name__ = getattr(base, "__name__", "value")
    return parse, None


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one flag per ``TrainConfig`` field (defaults None: unset flags keep the config's)."""
    docs = field_docs()
    hints = typing.get_type_hints(TrainConfig)
    parser.add_argument("--config", default=None, help="a config.json to start from")
    parser.add_argument(
        "--task-override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an override for vbon.tasks.get_task (repeatable; VALUE is JSON or a string)",
    )
    for f in dataclasses.fields(TrainConfig):
        if f.name == "task_overrides":
            continue
        flag = "--" + f.name.replace("_", "-")
        help_text = docs.get(f.name, "")
        hint = hints[f.name]
        if hint is bool:
            parser.add_argument(
                flag,
                dest=f.name,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=help_text,
            )
        elif f.name == "adam_betas":
            parser.add_argument(
                flag, dest=f.name, type=float, nargs=2, default=None, help=help_text
            )
        else:
            kind, choices = _scalar_type(hint)
            parser.add_argument(
                flag, dest=f.name, type=kind, choices=choices, default=None, help=help_text
            )


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The ``TrainConfig`` of parsed flags (over ``--config`` when given)."""
    base: dict[str, Any] = {}
    if getattr(args, "config", None):
        try:
            with open(args.config) as f:
                base = json.load(f)
        except OSError as exc:
            raise ValueError(f"--config: cannot read {args.config} ({exc.strerror})") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"--config: {args.config} is not a JSON config ({exc})") from None
        if not isinstance(base, dict):
            raise ValueError(f"--config: {args.config} does not hold a config object")
    overrides = dict(base.get("task_overrides") or {})
    for item in getattr(args, "task_override", []) or []:
        if "=" not in item:
            raise ValueError(f"--task-override: expected KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        overrides[key.strip()] = _parse_value(value)
    values = dict(base)
    for f in dataclasses.fields(TrainConfig):
        value = getattr(args, f.name, None)
        if value is NONE:
            values[f.name] = None
        elif value is not None:
            values[f.name] = tuple(value) if f.name == "adam_betas" else value
    values["task_overrides"] = overrides
    return TrainConfig.from_dict(values)
