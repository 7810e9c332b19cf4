"""Intervals and verdicts: every claim a number with a 95% interval, decided by the interval.

All resampling goes through ``scipy.stats.bootstrap`` (percentile intervals, a fixed seed so a
rerun prints the same interval). The experiments are crossed designs: every run of a sweep is
evaluated on the same test prompts, so a metric lives in a (seeds, prompts) table and both are
sources of error. ``crossed_bootstrap`` resamples the seeds and the prompts independently (the
two index vectors are two samples of one bootstrap), which keeps the pairing of prompts across
runs and of seeds across prompts; ``mean_ci`` is its common case, the grand mean.

With three seeds a bootstrap over seeds has only ten distinct resamples and its percentile
interval can never reach beyond the three seeds' own range: it **under-covers** the
seed-to-seed variation (a t-interval over three values is 4.3 standard errors wide on each side,
the percentile bootstrap about 1.4). The crossed intervals of the IMDB claims therefore state
the prompts' sampling error well and the seeds' spread optimistically; a claim that holds by a
margin smaller than the seeds' spread should be read as suggestive. Claims whose only random
unit is the seed (the enumerable world, where every metric is exact given the run) use
``seed_interval``, a Student-t interval that does not under-cover.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from scipy import stats as sps

__all__ = [
    "CONFIDENCE",
    "N_RESAMPLES",
    "Interval",
    "crossed_bootstrap",
    "mean_ci",
    "seed_interval",
    "Claim",
    "decide",
    "exact_claim",
]

CONFIDENCE = 0.95
# Percentile intervals at 95% from 2000 resamples: the Monte Carlo error of each end is about
# 1% of the interval's width, well below its sampling error.
N_RESAMPLES = 2000
SEED = 20250407


@dataclass(frozen=True)
class Interval:
    """A point estimate with a ``CONFIDENCE`` interval and what was resampled."""

    estimate: float
    low: float
    high: float
    unit: str = ""

    @property
    def ci(self) -> list[float]:
        return [self.low, self.high]

    def __str__(self) -> str:
        return f"{self.estimate:.3f} [{self.low:.3f}, {self.high:.3f}]"


def crossed_bootstrap(
    statistic: Callable[[np.ndarray, np.ndarray], Any],
    n_seeds: int,
    n_prompts: int,
    *,
    n_resamples: int = N_RESAMPLES,
    seed: int = SEED,
    standard_error: bool = False,
) -> tuple[np.ndarray, ...]:
    """Estimate and percentile interval of ``statistic(seed_idx, prompt_idx)``.

    ``statistic`` receives index arrays into the seeds and the prompts (the full ones for the
    estimate, resampled with replacement for the interval) and returns a float or a 1-D array
    (one interval per entry). A dimension of size 1 is not resampled.

    Returns:
        (estimate, low, high), arrays of the statistic's shape; with ``standard_error`` also
        the standard error, the SD of the same bootstrap distribution.
    """
    if n_seeds < 1 or n_prompts < 1:
        raise ValueError(f"n_seeds, n_prompts: need >= 1 each, got {n_seeds} and {n_prompts}")
    seeds, prompts = np.arange(n_seeds), np.arange(n_prompts)
    estimate = np.asarray(statistic(seeds, prompts), dtype=float)
    data, fixed = [], {}
    for name, idx in (("seeds", seeds), ("prompts", prompts)):
        if idx.size > 1:
            data.append(idx)
        else:
            fixed[name] = idx
    if not data:
        fixed_out = (estimate, estimate.copy(), estimate.copy())
        return (*fixed_out, np.zeros_like(estimate)) if standard_error else fixed_out

    def resampled(*samples: np.ndarray) -> np.ndarray:
        it = iter(samples)
        s = fixed["seeds"] if "seeds" in fixed else next(it)
        p = fixed["prompts"] if "prompts" in fixed else next(it)
        return np.asarray(statistic(np.asarray(s), np.asarray(p)), dtype=float)

    with np.errstate(invalid="ignore"):
        res = sps.bootstrap(
            data,
            resampled,
            n_resamples=n_resamples,
            vectorized=False,
            paired=False,
            confidence_level=CONFIDENCE,
            method="percentile",
            rng=np.random.default_rng(seed),
        )
    low = np.asarray(res.confidence_interval.low, dtype=float)
    high = np.asarray(res.confidence_interval.high, dtype=float)
    # A statistic constant across resamples (e.g. a count that never changes) has no spread:
    # scipy reports NaN there, and the interval is then the point itself.
    low = np.where(np.isnan(low), estimate, low)
    high = np.where(np.isnan(high), estimate, high)
    if standard_error:
        se = np.asarray(res.standard_error, dtype=float)
        return estimate, low, high, np.where(np.isnan(se), 0.0, se)
    return estimate, low, high


def mean_ci(values: Any, *, unit: str | None = None) -> Interval:
    """The mean of a (seeds, prompts) table (or a 1-D table of prompts) with its interval,
    resampling seeds and prompts (``crossed_bootstrap``); NaN entries are left out."""
    v = np.asarray(values, dtype=float)
    if v.ndim == 1:
        v = v[None, :]
    if v.ndim != 2 or v.size == 0:
        raise ValueError(f"values: expected a (seeds, prompts) table, got shape {v.shape}")

    def stat(s: np.ndarray, p: np.ndarray) -> float:
        return float(np.nanmean(v[np.ix_(s, p)]))

    est, lo, hi = crossed_bootstrap(stat, *v.shape)
    if unit is None:
        unit = f"{v.shape[0]} seed(s) x {v.shape[1]} prompts"
    return Interval(float(est), float(lo), float(hi), unit)


def seed_interval(values: Any, *, unit: str | None = None) -> Interval:
    """The mean of one value per training seed with its Student-t ``CONFIDENCE`` interval
    (``scipy.stats.ttest_1samp``): for claims whose only source of error is the seed, where a
    bootstrap over a handful of seeds under-covers (module docstring)."""
    v = np.asarray(values, dtype=float).ravel()
    v = v[np.isfinite(v)]
    if v.size < 2:
        raise ValueError(f"values: a t-interval needs >= 2 finite seeds, got {v.size}")
    if np.ptp(v) == 0:
        low = high = float(v[0])
    else:
        ci = sps.ttest_1samp(v, 0.0).confidence_interval(CONFIDENCE)
        low, high = float(ci.low), float(ci.high)
    return Interval(float(v.mean()), low, high, unit or f"{v.size} seeds, t-interval")


Direction = Literal[">", "<", "within"]


@dataclass
class Claim:
    """One verdict of a notebook, as ``results.json`` stores it.

    ``holds`` follows from the interval alone (``decide``); ``decision`` also tells a failed
    claim (the interval lies on the wrong side) from an inconclusive one (it straddles).
    """

    claim: str
    estimate: float
    ci: list[float]
    seeds: list[int]
    holds: bool
    decision: str
    figure: str = ""
    evidence: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out = {
            "claim": self.claim,
            "estimate": float(self.estimate),
            "ci": [float(x) for x in self.ci],
            "seeds": [int(s) for s in self.seeds],
            "holds": bool(self.holds),
            "decision": self.decision,
            "figure": self.figure,
            "evidence": self.evidence,
        }
        out.update(self.extra)
        return out


def decide(
    claim: str,
    interval: Interval,
    *,
    seeds: Sequence[int],
    direction: Direction = ">",
    threshold: float = 0.0,
    figure: str = "",
    evidence: str = "",
) -> Claim:
    """A claim that the quantity is ``direction`` ``threshold``, decided by its interval.

    It holds when the whole interval lies on the claimed side, fails when the whole interval
    lies on the other side (or touches the threshold from there), and is inconclusive otherwise.
    ``direction="within"`` claims |quantity| < threshold (an equivalence claim): it holds when
    the interval lies inside (-threshold, threshold) and fails when it lies outside.
    """
    if direction not in (">", "<", "within"):
        raise ValueError(f"direction: expected '>', '<' or 'within', got {direction!r}")
    lo, hi = interval.low, interval.high
    if direction == ">":
        holds, fails = lo > threshold, hi <= threshold
    elif direction == "<":
        holds, fails = hi < threshold, lo >= threshold
    else:
        if not threshold > 0:
            raise ValueError(f"threshold: 'within' needs a margin > 0, got {threshold!r}")
        holds = -threshold < lo and hi < threshold
        fails = lo >= threshold or hi <= -threshold
    decision = "holds" if holds else ("fails" if fails else "inconclusive")
    side = f"within +-{threshold:g}" if direction == "within" else f"{direction} {threshold:g}"
    text = evidence or f"{interval} ({interval.unit}); claimed {side}"
    return Claim(
        claim=claim,
        estimate=interval.estimate,
        ci=interval.ci,
        seeds=list(seeds),
        holds=bool(holds),
        decision=decision,
        figure=figure,
        evidence=text,
    )


def exact_claim(
    claim: str, value: float, holds: bool, *, figure: str = "", evidence: str = "exact"
):
    """A claim about an exactly computed quantity: no sampling error, so its interval is the
    point itself and it holds or fails outright (notebook 01's theory checks)."""
    v = float(value)
    return Claim(claim, v, [v, v], [], bool(holds), "holds" if holds else "fails", figure, evidence)
