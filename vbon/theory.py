"""Exact optima of each objective on a finite support: the theory frontier (paper sections 2-3).

Every fine-tuning method compared here maximises a KL-regularised objective

    J(pi) = E_pi[s(y)] - beta * KL(pi || pi_ref)

whose maximiser is pi*(y) proportional to pi_ref(y) exp(s(y) / beta), with value
J* = beta * log E_ref[exp(s / beta)]. So on a finite support every optimum, its reward, win rate
and KL are exact numbers, and a policy's optimisation gap J* - J(pi) equals beta * KL(pi || pi*):

- KL-RL: s = r, free beta. Since pi_ref exp(r / beta) maximises E[r] at its own KL, the KL-RL
  optima trace the reward-vs-KL frontier: no policy has more reward at the same KL.
- vBoN, bound L: s = log F(r), beta = 1/(N-1); pi* is proportional to pi_ref F^(N-1).
- vBoN, exact: s = (log pi_BoN - log pi_ref)/(N-1), beta = 1/(N-1); pi* = pi_BoN itself, and
  J(pi) = -KL(pi || pi_BoN)/(N-1).

A trained policy's place against these curves says how much of its distance from BoN is the
objective and how much is optimisation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import brentq
from scipy.special import logsumexp

from vbon._array import as_float64, check_n
from vbon.bon import bon_pmf, bound_optimum_pmf, ref_cdf
from vbon.objectives import beta_from_n, kl_rl_optimum_pmf, log_bon_ratio

__all__ = [
    "kl_divergence",
    "policy_metrics",
    "objective_value",
    "optimum_value",
    "optimisation_gap",
    "beta_for_kl",
    "frontier_at",
    "with_frontier_gaps",
    "kl_rl_curve",
    "win_rate_curve",
    "vbon_curve",
    "theory_frontier",
    "continuous_vbon_optimum",
    "sampled_optimum",
    "bound_gap",
]


def _support(ref_probs: Any, rewards: Any) -> tuple[np.ndarray, np.ndarray]:
    p = as_float64(ref_probs, "ref_probs")
    r = as_float64(rewards, "rewards", allow_inf=False)
    if p.ndim != 1 or p.shape != r.shape:
        raise ValueError(
            f"rewards: expected one support, 1-D and of the shape of ref_probs {p.shape}, "
            f"got {r.shape}"
        )
    if (p < 0).any() or not np.isclose(p.sum(), 1.0, atol=1e-9):
        raise ValueError("ref_probs: must be non-negative and sum to 1")
    return p, r


def kl_divergence(p: Any, q: Any) -> float:
    """Exact KL(p || q) in nats on one support (0 log 0 = 0; inf where p > 0 = q)."""
    p = as_float64(p, "p")
    q = as_float64(q, "q")
    if p.shape != q.shape:
        raise ValueError(f"q: shape {q.shape} does not match p {p.shape}")
    on = p > 0
    if (q[on] <= 0).any():
        return float("inf")
    return float(max(np.sum(p[on] * (np.log(p[on]) - np.log(q[on]))), 0.0))


def policy_metrics(pmf: Any, ref_probs: Any, rewards: Any) -> dict[str, float]:
    """Exact E_pi[r], win rate against one pi_ref sample (ties 1/2) and KL(pi || pi_ref)."""
    p, r = _support(ref_probs, rewards)
    q = as_float64(pmf, "pmf")
    if q.shape != p.shape:
        raise ValueError(f"pmf: shape {q.shape} does not match ref_probs {p.shape}")
    mid = 0.5 * (ref_cdf(p, r) + ref_cdf(p, r, strict=False))  # F + pi_ref(tie class) / 2
    return {
        "reward": float(q @ r),
        "win_rate": float(q @ mid),
        "kl": kl_divergence(q, p),
    }


def objective_value(pmf: Any, ref_probs: Any, score: Any, beta: float) -> float:
    """J(pi) = E_pi[s] - beta KL(pi || pi_ref) (s = -inf where pi = 0 contributes nothing)."""
    q = as_float64(pmf, "pmf")
    s = as_float64(score, "score")
    p = as_float64(ref_probs, "ref_probs")
    if not beta > 0:
        raise ValueError(f"beta: must be > 0, got {beta!r}")
    on = q > 0
    if np.isneginf(s[on]).any():
        return float("-inf")
    return float(q[on] @ s[on] - beta * kl_divergence(q, p))


def optimum_value(ref_probs: Any, score: Any, beta: float) -> float:
    """J* = max_pi J(pi) = beta log E_ref[exp(s / beta)], in log space."""
    p = as_float64(ref_probs, "ref_probs")
    s = as_float64(score, "score")
    if not beta > 0:
        raise ValueError(f"beta: must be > 0, got {beta!r}")
    with np.errstate(divide="ignore"):
        return float(beta * logsumexp(np.log(p) + s / beta))


def optimisation_gap(pmf: Any, ref_probs: Any, score: Any, beta: float) -> float:
    """J* - J(pi) = beta KL(pi || pi*) >= 0: how far a policy is from its objective's optimum."""
    return optimum_value(ref_probs, score, beta) - objective_value(pmf, ref_probs, score, beta)


def frontier_at(ref_probs: Any, rewards: Any, kl: float, metric: str = "reward") -> float:
    """The most any policy reaches at KL(pi || pi_ref) = ``kl``: E[r] (``metric="reward"``,
    attained by KL-RL's optimum) or the win rate against pi_ref (``"win_rate"``, attained by
    the optimum for the calibrated reward F)."""
    p, r = _support(ref_probs, rewards)
    if metric == "reward":
        score = r
    elif metric == "win_rate":
        score = 0.5 * (ref_cdf(p, r) + ref_cdf(p, r, strict=False))
    else:
        raise ValueError(f"metric: expected 'reward' or 'win_rate', got {metric!r}")
    if kl <= 0:
        return float(policy_metrics(p, p, r)[metric])
    top = np.where(score == score.max(), p, 0.0)
    top /= top.sum()
    if kl >= kl_divergence(top, p) * (1 - 1e-12):
        return policy_metrics(top, p, r)[metric]  # all mass on the best class: nothing is higher
    best = kl_rl_optimum_pmf(p, score, beta_for_kl(p, score, kl))
    return policy_metrics(best, p, r)[metric]


def with_frontier_gaps(curves: pd.DataFrame, ref_probs: Any, rewards: Any) -> pd.DataFrame:
    """``curves`` (rows with a ``kl``, ``reward`` and ``win_rate``) plus ``reward_gap`` and
    ``win_rate_gap``: how far below the reward and win-rate frontiers (``frontier_at``) each
    point lies at its own KL (>= 0 for any policy)."""
    out = curves.copy()
    for metric in ("reward", "win_rate"):
        best = [frontier_at(ref_probs, rewards, kl, metric) for kl in out["kl"]]
        out[f"{metric}_gap"] = np.asarray(best) - out[metric].to_numpy()
    return out


def beta_for_kl(ref_probs: Any, rewards: Any, kl: float) -> float:
    """The beta at which KL-RL's optimum pi_ref exp(r/beta) has KL(pi* || pi_ref) = ``kl``.

    The optimum's KL falls monotonically from KL(best item || pi_ref) at beta -> 0 to 0 at
    beta -> inf, so a root search on log beta finds it (brentq).
    """
    p, r = _support(ref_probs, rewards)
    kl = float(kl)
    sup = kl_divergence(np.where(r == r.max(), p, 0.0) / p[r == r.max()].sum(), p)
    if not 0 < kl < sup:
        raise ValueError(f"kl: must lie in (0, {sup:.4g}) on this support, got {kl!r}")

    def excess(log_beta: float) -> float:
        return kl_divergence(kl_rl_optimum_pmf(p, r, float(np.exp(log_beta))), p) - kl

    lo, hi = -10.0, 10.0
    while excess(lo) < 0:
        lo -= 10.0
    while excess(hi) > 0:
        hi += 10.0
    return float(np.exp(brentq(excess, lo, hi, xtol=1e-12)))


def continuous_vbon_optimum(n: int, m: int | None = None, *, bound: str = "L") -> float:
    """The optimum J* of vBoN's objective divided by N-1, for a continuous reward.

    ``bound="L"``: J = E[log F] - KL/(N-1), whose optimum is log E_ref[F^(N-1)] / (N-1) =
    -log N / (N-1) with the true F, and with the add-one F_hat of ``m`` references (the number
    k of references below a fresh pi_ref sample is uniform on 0..M) log mean_k ((1+k)/(M+1))^(N-1)
    / (N-1). ``bound="exact"``: J = -KL(pi || pi_BoN)/(N-1), whose optimum is 0 (with F_hat,
    log(N mean_k ...)/(N-1), the same up to the i >= 2 terms, negligible for text).
    """
    n = check_n(n, "n", minimum=2)
    if m is None:
        log_mean = -np.log(n)
    else:
        k = np.arange(check_n(m, "m") + 1, dtype=float)
        log_mean = float(logsumexp((n - 1) * np.log((1.0 + k) / (m + 1.0))) - np.log(m + 1.0))
    if bound == "L":
        return float(log_mean / (n - 1))
    if bound == "exact":
        return float((np.log(n) + log_mean) / (n - 1))
    raise ValueError(f"bound: expected 'L' or 'exact', got {bound!r}")


def sampled_optimum(method: str, value: float, ref_rewards: Any) -> float:
    """The optimum J* of a method's objective on a text task, from the M reference rewards
    of each train prompt (``ref_rewards``, (prompts, M)), averaged over the prompts.

    ``value`` is N for ``vbon`` / ``vbon_exact`` (``continuous_vbon_optimum`` with the add-one
    F_hat of M references) and beta for ``kl_rl``, whose optimum beta log E_ref[exp(r/beta)] is
    estimated by the sample mean over the M rewards: biased low for small beta, where one rare
    completion carries the expectation.
    """
    r = np.asarray(ref_rewards, dtype=float)
    if r.ndim != 2 or r.size == 0:
        raise ValueError(f"ref_rewards: expected (prompts, M), got shape {r.shape}")
    m = r.shape[1]
    if method == "kl_rl":
        beta = float(value)
        if not beta > 0:
            raise ValueError(f"value: kl_rl needs beta > 0, got {value!r}")
        return float(np.mean(beta * (logsumexp(r / beta, axis=1) - np.log(m))))
    if method in ("vbon", "vbon_exact"):
        return continuous_vbon_optimum(int(value), m, bound="L" if method == "vbon" else "exact")
    raise ValueError(f"method: expected 'vbon', 'vbon_exact' or 'kl_rl', got {method!r}")


def bound_gap(n: int, cdf: float, ref_probs: Any) -> pd.DataFrame:
    """How much the bound L drops from log(pi_BoN / pi_ref), at an item y with F(r(y)) =
    ``cdf`` and each pi_ref(y) of ``ref_probs``.

    The exact log ratio log sum_i C(N,i) F^(N-i) pi_ref(y)^(i-1) (``log_bon_ratio``) minus the
    bound's i = 1 term log N + (N-1) log F: about (N-1)/2 pi_ref(y)/F for small pi_ref(y), so
    the bound is tight for any completion that is unlikely under pi_ref.
    """
    p = as_float64(ref_probs, "ref_probs")
    if not 0 < cdf <= 1:
        raise ValueError(f"cdf: expected F in (0, 1], got {cdf!r}")
    exact = np.asarray(log_bon_ratio(np.full_like(p, np.log(cdf)), np.log(p), n), dtype=float)
    bound = np.log(n) + (n - 1) * np.log(cdf)
    return pd.DataFrame(
        {
            "pi_ref(y)": p,
            "exact log(pi_BoN/pi_ref)": exact,
            "bound log N + (N-1) log F": bound,
            "gap": exact - bound,
        }
    )


def _curve_rows(method: str, pmfs: dict[Any, np.ndarray], p: np.ndarray, r: np.ndarray, key: str):
    return [{"method": method, key: k, **policy_metrics(q, p, r)} for k, q in pmfs.items()]


def kl_rl_curve(ref_probs: Any, rewards: Any, betas: Sequence[float]) -> pd.DataFrame:
    """KL-RL's optimum at each beta: columns method, beta, reward, win_rate, kl."""
    p, r = _support(ref_probs, rewards)
    pmfs = {float(b): kl_rl_optimum_pmf(p, r, float(b)) for b in betas}
    return pd.DataFrame(_curve_rows("kl_rl", pmfs, p, r, "beta"))


def win_rate_curve(ref_probs: Any, rewards: Any, betas: Sequence[float]) -> pd.DataFrame:
    """The win-rate frontier: the optimum of E[win rate] - beta KL at each beta.

    The win rate of y against one pi_ref sample is F(r(y)) + pi_ref(tie class)/2, so this is
    KL-RL with the calibrated reward F instead of r (InfAlign's), and no policy has a higher
    win rate at the same KL. Columns as ``kl_rl_curve``, method "win_rate_optimum".
    """
    p, r = _support(ref_probs, rewards)
    mid = 0.5 * (ref_cdf(p, r) + ref_cdf(p, r, strict=False))
    pmfs = {float(b): kl_rl_optimum_pmf(p, mid, float(b)) for b in betas}
    return pd.DataFrame(_curve_rows("win_rate_optimum", pmfs, p, r, "beta"))


def vbon_curve(
    ref_probs: Any, rewards: Any, ns: Sequence[int], *, bound: str = "L"
) -> pd.DataFrame:
    """vBoN's optimum at each N: pi_ref F^(N-1) (``bound="L"``) or pi_BoN (``"exact"``).

    Columns method ("vbon" or "vbon_exact"), n, beta = 1/(N-1), reward, win_rate, kl. The exact
    objective's optimum is BoN itself, so ``"exact"`` is also BoN's curve.
    """
    p, r = _support(ref_probs, rewards)
    if bound not in ("L", "exact"):
        raise ValueError(f"bound: expected 'L' or 'exact', got {bound!r}")
    ns = [check_n(n, "ns", minimum=2) for n in ns]
    make = bound_optimum_pmf if bound == "L" else bon_pmf
    pmfs = {n: make(p, r, n) for n in ns}
    out = pd.DataFrame(_curve_rows("vbon" if bound == "L" else "vbon_exact", pmfs, p, r, "n"))
    out.insert(2, "beta", [beta_from_n(n) for n in ns])
    return out


def theory_frontier(
    ref_probs: Any, rewards: Any, ns: Sequence[int], betas: Sequence[float] | None = None
) -> pd.DataFrame:
    """Every objective's optimum on one support: KL-RL and the win-rate optimum over ``betas``
    (default: a log grid wide enough to span the vBoN curves' KL), vBoN bound L and exact
    (= BoN) over ``ns``. The KL-RL curve is the reward-vs-KL frontier, the win-rate optimum's
    the win-rate-vs-KL frontier."""
    p, r = _support(ref_probs, rewards)
    if betas is None:
        betas = np.geomspace(1e-3, 1e2, 61)
    return pd.concat(
        [
            kl_rl_curve(p, r, betas),
            win_rate_curve(p, r, betas),
            vbon_curve(p, r, ns, bound="L"),
            vbon_curve(p, r, ns, bound="exact"),
        ],
        ignore_index=True,
    )
