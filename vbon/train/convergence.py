"""Has a run converged? Its own objective per step, and whether it still rises at the end.

Every RL method here maximises J = E_pi[score] - beta KL(pi || pi_ref), and the trainers log
its on-policy estimate at each step (``objective``, the mean of score - beta k1 over the step's
rollouts, with its standard error over prompts). A run has converged when J stops improving:
``plateau`` compares the mean of the last quarter of the steps with the quarter before it
(Welch's t interval, scipy.stats), so a run that still climbs shows a positive improvement
whose interval excludes 0. The size of that improvement says how far the run is from its
plateau on the scale of its own objective.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from vbon.stats import CONFIDENCE

__all__ = ["objective_curve", "plateau", "plateau_table"]


def objective_curve(history: Any) -> pd.DataFrame:
    """The per-step objective of a run: columns step, objective, objective_se.

    ``history`` is a ``TrainResult`` or its history (list of metric rows or DataFrame).
    """
    rows = getattr(history, "history", history)
    df = pd.DataFrame(rows)
    if "phase" in df.columns:
        df = df[df["phase"] == "train"]
    if "objective" not in df.columns:
        raise ValueError("history: no 'objective' logged (a bon_sft run, or a run from before it)")
    out = df[["step", "objective"]].copy()
    out["objective_se"] = df["objective_se"] if "objective_se" in df.columns else np.nan
    return out.reset_index(drop=True)


def plateau(history: Any, *, window: float = 0.25) -> dict[str, float]:
    """Whether a run's objective still improves over its last ``window`` of steps.

    Returns:
        ``final`` (mean objective over the last window), ``improvement`` (last window minus
        the window before it) with its ``CONFIDENCE`` interval ``improvement_low`` /
        ``improvement_high`` (Welch), ``steps_per_window``, and ``converged``: True when the
        interval does not lie above 0, i.e. the data do not show the run still improving.
    """
    if not 0 < window <= 0.5:
        raise ValueError(f"window: must lie in (0, 0.5], got {window!r}")
    y = objective_curve(history)["objective"].to_numpy(dtype=float)
    w = int(np.ceil(window * len(y)))
    if w < 2 or 2 * w > len(y):
        raise ValueError(f"history: {len(y)} steps are too few for two windows of {window:.0%}")
    last, before = y[-w:], y[-2 * w : -w]
    test = sps.ttest_ind(last, before, equal_var=False)
    ci = test.confidence_interval(confidence_level=CONFIDENCE)
    return {
        "final": float(last.mean()),
        "final_se": float(last.std(ddof=1) / np.sqrt(w)),
        "improvement": float(last.mean() - before.mean()),
        "improvement_low": float(ci.low),
        "improvement_high": float(ci.high),
        "steps_per_window": w,
        "converged": bool(ci.low <= 0.0),
    }


def plateau_table(results: dict[str, Any], *, window: float = 0.25) -> pd.DataFrame:
    """``plateau`` of several runs (``{label: TrainResult}``), one row per run."""
    return pd.DataFrame([{"run": name, **plateau(r, window=window)} for name, r in results.items()])
