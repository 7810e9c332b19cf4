"""The ``vbon`` command: ``vbon reproduce``, ``vbon toy build``, ...

Each sub-command lives in its own ``_add_*`` function so that the parser reads top to bottom.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _add_reproduce(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reproduce", help="run the notebook sequence with papermill")
    p.add_argument("--profile", default="smoke", help="smoke (toy worlds, CPU) or paper (hub, GPU)")
    p.add_argument("--only", default=None, help="comma-separated notebook numbers, e.g. 01,03")
    p.add_argument("--resume", action="store_true", help="skip notebooks already executed")

    def run(args: argparse.Namespace) -> int:
        from vbon.reproduce import reproduce

        only = [s.strip() for s in args.only.split(",")] if args.only else None
        reproduce(profile=args.profile, only=only, resume=args.resume)
        return 0

    p.set_defaults(func=run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vbon", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _add_reproduce(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
