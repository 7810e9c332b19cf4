"""``python -m vbon.train [flags]`` and ``accelerate launch [--num_processes 2 --cpu] -m vbon.train``.

The same flags as ``vbon train``; prints the run directory and the final metrics as JSON.
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
    config = config_from_args(parser.parse_args(argv))
    from vbon.train.loop import train

    result = train(config)
    if int(os.environ.get("RANK", "0")) == 0:
        print(
            json.dumps({"run_dir": str(result.run_dir), "metrics": result.metrics}, default=float)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
