"""Fine-tune a policy so that one sample behaves like Best-of-N (the paper's objective and experiments).

One loop serves every method the paper compares: ``vbon`` (reward log F_hat, beta = 1/(N-1),
the bound L), ``vbon_exact`` (the exact reward log(pi_BoN/pi_ref)/(N-1)), ``kl_rl`` (raw reward,
free beta) with ``rloo`` or the paper's ``ppo``, ``bon_sft`` (supervised fine-tuning on the
best of n reference samples), ``vbon_offline`` (vBoN's optimum fitted from the reference
cache alone, ``vbon.train.offline``) and ``bonbon`` (SFT plus IPO on the best and worst of n
reference samples, ``vbon.train.bonbon``), ``bond`` and ``jbond`` (BOND and J-BOND: the Jeffreys
divergence to Best-of-n of pi_ref or of an EMA anchor, ``vbon.train.bond``). vbon's reward can be any quantile transform f(F)
(``transform``: log, identity, exp) with F estimated three ways (``cdf_estimator``); the
online methods' KL term can be the Rao-Blackwellised estimate (``kl_estimator="rb"``).

    from vbon.train import TrainConfig, train
    result = train(TrainConfig(task="imdb", profile="smoke", method="vbon", n=8))
    result.metrics["win_rate"], result.policy_path

Also ``vbon train ...`` on the command line and ``accelerate launch -m vbon.train ...``.
The configuration is importable without torch (the CLI builds its parser from it); the loop and
the trainers load on first use.
"""

from __future__ import annotations

from typing import Any

from vbon.train.config import ALGORITHMS, METHODS, PROFILE_DEFAULTS, TrainConfig, field_docs

__all__ = [
    "ALGORITHMS",
    "METHODS",
    "PROFILE_DEFAULTS",
    "Sampling",
    "SftExample",
    "TrainConfig",
    "TrainResult",
    "TrainSetup",
    "bon_sft_examples",
    "build_setup",
    "field_docs",
    "latest_checkpoint",
    "load_run",
    "train",
]

_LAZY = {
    "TrainResult": "vbon.train.loop",
    "latest_checkpoint": "vbon.train.loop",
    "load_run": "vbon.train.loop",
    "train": "vbon.train.loop",
    "Sampling": "vbon.train.setup",
    "SftExample": "vbon.train.setup",
    "TrainSetup": "vbon.train.setup",
    "bon_sft_examples": "vbon.train.setup",
    "build_setup": "vbon.train.setup",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vbon.train' has no attribute {name!r}")
