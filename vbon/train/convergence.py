"""Has a run converged? Its own objective per step, and whether it still rises at the end.

Every RL method here maximises J = E_pi[score] - beta KL(pi || pi_ref), and the trainers log
its on-policy estimate at each step (``objective``, the mean of score - beta k1 over the step's
rollouts, with its standard error over prompts). A run has converged when J stops improving:
``plateau`` fits the trend of J over the second half of the run and asks whether training on for
another half at that pace would move J by more than one step's estimate can resolve.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from vbon.stats import CONFIDENCE, Claim, Interval
from vbon.train.config import BON_PAIR_METHODS

__all__ = ["objective_curve", "plateau", "sweep_curves", "sweep_plateaus", "convergence_claim"]


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


def plateau(history: Any) -> dict[str, Any]:
    """Whether a run's objective still rises at the end of training, and by how much.

    A straight line is fitted to the per-step objective over the second half of the steps
    (scipy.stats.linregress). Its slope, times another half of the run's steps, is the
    improvement that training on at the same pace would bring (``projected``, with its
    ``CONFIDENCE`` interval). It is compared with the noise of one step's estimate of the
    objective (``step_se``, the median logged standard error over the second half): the run has
    **converged** when the whole interval lies below it (what is left of the trend is smaller
    than one step can measure), is **improving** when the whole interval lies above it, and
    is inconclusive otherwise.

    Returns:
        ``final`` (mean objective over the last quarter of the steps), ``gain`` (``final``
        minus the mean of the first 5% of the steps, near pi_ref), ``projected`` with
        ``projected_low`` / ``projected_high``, ``step_se``, ``status`` and ``converged``.
    """
    curve = objective_curve(history)
    y = curve["objective"].to_numpy(dtype=float)
    if len(y) < 8:
        raise ValueError(f"history: {len(y)} steps are too few to judge a trend (need 8)")
    half = len(y) // 2
    steps = curve["step"].to_numpy(dtype=float)[half:]
    fit = sps.linregress(steps, y[half:])
    q = sps.t.ppf(0.5 + CONFIDENCE / 2, len(steps) - 2)
    span = len(y) - half
    projected = (
        fit.slope * span,
        (fit.slope - q * fit.stderr) * span,
        (fit.slope + q * fit.stderr) * span,
    )
    se = curve["objective_se"].to_numpy(dtype=float)[half:]
    step_se = (
        float(np.nanmedian(se))
        if np.isfinite(se).any()
        else float(np.std(y[half:] - fit.intercept - fit.slope * steps, ddof=2))
    )
    if projected[2] < step_se:
        status = "converged"
    elif projected[1] > step_se:
        status = "improving"
    else:
        status = "inconclusive"
    final = y[-max(2, len(y) // 4) :].mean()
    return {
        "final": float(final),
        "gain": float(final - y[: max(2, int(np.ceil(0.05 * len(y))))].mean()),
        "projected": float(projected[0]),
        "projected_low": float(projected[1]),
        "projected_high": float(projected[2]),
        "step_se": step_se,
        "status": status,
        "converged": status == "converged",
    }


def sweep_curves(table: pd.DataFrame) -> pd.DataFrame:
    """The training history of every RL run of a sweep table (``run_sweep``), long format.

    Columns: config (``vbon.findings.config_label``), method, setting (the config without its
    method), seed, then the per-step metrics (step, objective, objective_se, score, kl, reward).
    """
    from vbon.findings import config_label
    from vbon.train.loop import load_run

    parts = []
    for row in table.itertuples(index=False):
        if row.method in BON_PAIR_METHODS:  # no KL-RL objective to plateau
            continue
        label = config_label(row.method, row.n, row.beta, getattr(row, "max_m", None))
        frame = load_run(row.run_dir).frame("train")
        keep = [c for c in _CURVE_COLUMNS if c in frame]
        parts.append(
            frame[keep].assign(
                config=label, method=row.method, setting=label.split(" ", 1)[1], seed=int(row.seed)
            )
        )
    out = pd.concat(parts, ignore_index=True)
    lead = ["config", "method", "setting", "seed"]
    return out[lead + [c for c in out.columns if c not in lead]]


_CURVE_COLUMNS = ("step", "objective", "objective_se", "score", "kl", "reward")


def sweep_plateaus(table: pd.DataFrame) -> pd.DataFrame:
    """``plateau`` of every RL run of a sweep table: one row per run (config, seed, ...).

    J-BOND and iterated BOND are left out (``TrainConfig.moving_anchor``): the J they log is
    taken against an anchor that follows the policy, so the curve is flat from the start and a
    plateau says nothing of convergence.
    """
    from vbon.findings import config_label
    from vbon.train.loop import load_run

    rows = []
    for row in table.itertuples(index=False):
        if row.method in BON_PAIR_METHODS:
            continue
        result = load_run(row.run_dir)
        if result.config.moving_anchor:
            continue
        label = config_label(row.method, row.n, row.beta, getattr(row, "max_m", None))
        rows.append(
            {
                "config": label,
                "method": row.method,
                "seed": int(row.seed),
                "n": result.config.n,
                "beta": float(result.config.beta),
                "steps": int(result.config.steps),
                **plateau(result),
            }
        )
    return pd.DataFrame(rows)


def convergence_claim(
    plateaus: pd.DataFrame, seeds: Sequence[int], *, figure: str = ""
) -> tuple[Claim, Interval]:
    """The claim "every RL run converged" over ``sweep_plateaus`` rows, and the run closest to
    still improving.

    The share of converged runs is bracketed by the runs shown converged and those not shown
    improving (the inconclusive ones counted either way): that range, not a 95% interval, is
    the claim's ``ci``. It holds only when every run is shown converged and fails when some run
    is shown still improving. The second value is, for the run whose projected improvement
    exceeds one step's noise by the most, that excess with its interval.
    """
    counts = plateaus["status"].value_counts()
    counts = {k: int(counts.get(k, 0)) for k in ("converged", "inconclusive", "improving")}
    excess = plateaus["projected_low"] - plateaus["step_se"]
    worst = plateaus.loc[excess.idxmax()]
    still = Interval(
        float(worst["projected"] - worst["step_se"]),
        float(worst["projected_low"] - worst["step_se"]),
        float(worst["projected_high"] - worst["step_se"]),
        f"projected improvement minus one step's noise, {worst['config']} seed {worst['seed']}",
    )
    low = counts["converged"] / len(plateaus)
    high = 1 - counts["improving"] / len(plateaus)
    decision = "holds" if low == 1 else ("fails" if high < 1 else "inconclusive")
    claim = Claim(
        "every RL run converged (share of runs; a range, not a 95% interval: the inconclusive "
        "runs counted either way)",
        float(low),
        [float(low), float(high)],
        [int(s) for s in seeds],
        low == 1,
        decision,
        figure,
        f"{counts}; closest to still improving: {still}",
    )
    return claim, still
