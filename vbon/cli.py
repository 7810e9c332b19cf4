"""The ``vbon`` command: ``vbon reproduce``, ``vbon toy build``, ...

Each sub-command lives in its own ``_add_*`` function so that the parser reads top to bottom.
A configuration error (the package's ``ValueError``: a bad flag value, an unknown task, an
interrupted run without ``--resume``, a model that cannot be loaded offline) is printed the way
argparse prints its own: the sub-command's usage and an ``error:`` line, exit status 2, no
traceback (``VBON_TRACEBACK=1`` shows it).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any


def run_reporting_usage_errors(parser: argparse.ArgumentParser, action: Callable[[], Any]) -> Any:
    """``action()``, with a ValueError or a missing file turned into ``parser.error`` (exit 2)."""
    try:
        return action()
    except (ValueError, FileNotFoundError) as exc:
        if os.environ.get("VBON_TRACEBACK"):
            raise
        message = str(exc) if isinstance(exc, ValueError) else f"{exc.strerror}: {exc.filename}"
        parser.error(message)


def _add_reproduce(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reproduce", help="run the notebook sequence with papermill")
    p.add_argument(
        "--profile",
        default="smoke",
        help="smoke (toy worlds, minutes), converged (toy worlds, under an hour) or paper (GPU)",
    )
    p.add_argument("--only", default=None, help="comma-separated notebook numbers, e.g. 01,03")
    p.add_argument("--resume", action="store_true", help="skip notebooks already executed")
    p.add_argument(
        "--publish",
        action="store_true",
        help="then copy the executed notebooks over notebooks/ (outputs as committed)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="paper profile: generate nothing; check that every hub model and dataset resolves "
        "(offline: in the local cache) and that the GPU fits, print the plan; exit 1 naming "
        "what is missing",
    )
    p.add_argument(
        "--allow-cpu",
        action="store_true",
        help="--dry-run: accept a machine without a CUDA GPU (otherwise a failure)",
    )
    p.add_argument(
        "--gpu-check",
        default=None,
        help="--dry-run: gpu_check JSON to project times from (default runs/paper/gpu_check.json)",
    )

    def run(args: argparse.Namespace) -> int:
        if args.dry_run:
            from vbon.dryrun import dry_run

            return dry_run(args.profile, allow_cpu=args.allow_cpu, gpu_check=args.gpu_check)
        from vbon.reproduce import publish, reproduce

        only = [s.strip() for s in args.only.split(",")] if args.only else None
        reproduce(profile=args.profile, only=only, resume=args.resume)
        if args.publish:
            for path in publish(args.profile, only):
                print(f"[vbon] published {path.name}")
        return 0

    p.set_defaults(func=run, parser=p)


def _add_toy(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("toy", help="the offline toy worlds")
    toy_sub = p.add_subparsers(dest="toy_command", required=True)
    b = toy_sub.add_parser("build", help="build the toy worlds into the cache (a no-op when built)")
    b.add_argument(
        "--world",
        action="append",
        choices=["toy-sentiment", "toy-tldr"],
        help="build only this world (repeatable; default: both)",
    )
    b.add_argument(
        "--cache", default=None, help="cache directory (default: $VBON_CACHE or the user cache)"
    )
    b.add_argument("--force", action="store_true", help="rebuild even when already built")

    def run(args: argparse.Namespace) -> int:
        from vbon.toy import WORLDS, build_toy_worlds, format_quality, world_dir

        names = args.world or list(WORLDS)
        cached = [
            n
            for n in names
            if not args.force and (world_dir(n, cache=args.cache) / "quality.json").is_file()
        ]
        # Fresh builds print their own quality report.
        worlds = build_toy_worlds(names=names, cache=args.cache, force=args.force)
        for name in cached:
            print(f"already built, nothing to do:\n{format_quality(worlds[name])}")
        return 0

    b.set_defaults(func=run, parser=b)


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="fine-tune a policy: vbon, vbon_exact, kl_rl (rloo or ppo), bon_sft, vbon_offline, "
        "bonbon, bond or jbond",
        description="Every TrainConfig field is a flag; prints the run directory and final metrics.",
    )
    from vbon.train.args import add_train_arguments

    add_train_arguments(p)

    def run(args: argparse.Namespace) -> int:
        import json

        from vbon.train.args import config_from_args

        config = config_from_args(args)  # validated here, before torch is imported
        from vbon.train import train

        result = train(config)
        print(
            json.dumps({"run_dir": str(result.run_dir), "metrics": result.metrics}, default=float)
        )
        return 0

    p.set_defaults(func=run, parser=p)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vbon", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _add_reproduce(sub)
    _add_toy(sub)
    _add_train(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(run_reporting_usage_errors(args.parser, lambda: args.func(args)) or 0)


if __name__ == "__main__":
    sys.exit(main())
