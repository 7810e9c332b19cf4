"""``python -m vbon.train [flags]`` and ``accelerate launch [...] -m vbon.train [flags]``.

The same flags as ``vbon train``; prints the run directory and the final metrics as JSON (from the
main process). Several processes: ``accelerate launch --num_processes 2 --multi_gpu -m vbon.train``
on GPUs; on a machine without GPUs the same command runs two CPU processes (torchrun, gloo), as
the trainer asks accelerate for the CPU there. (accelerate 1.15's ``--cpu --num_processes 2`` goes
through mpirun and, without an MPI hostfile, starts a single process.)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    from vbon.train.args import add_train_arguments, config_from_args

    parser = argparse.ArgumentParser(
        prog="python -m vbon.train", description=__doc__.splitlines()[0]
    )
    add_train_arguments(parser)
    args = parser.parse_args(argv)
    from vbon.cli import run_reporting_usage_errors

    def run():
        config = config_from_args(args)
        from vbon.train.loop import train

        return train(config)

    result = run_reporting_usage_errors(parser, run)
    if int(os.environ.get("RANK", "0")) == 0:
        print(
            json.dumps({"run_dir": str(result.run_dir), "metrics": result.metrics}, default=float)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
