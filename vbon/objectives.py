"""Reward transforms for fine-tuning: vBoN (bound L and exact) and KL-RL, as the paper defines them.

vBoN minimises KL(pi_theta || pi_BoN). Up to a constant that is KL-regularised RL

    maximise  E_{pi_theta}[R(y)] - beta * KL(pi_theta || pi_ref)

with one of two rewards, always paired with beta = 1/(N-1) (``beta_from_n``):

- bound L: R = log F(r(y)) (in practice log F_hat from ``vbon.cdf``). Multiplying the objective
  by N-1 and adding log N gives L = log N + (N-1) E[log F] - KL, a lower bound on -KL(pi_theta ||
  pi_BoN); its optimum is proportional to pi_ref F^(N-1).
- exact: R = (log pi_BoN(y) - log pi_ref(y)) / (N-1), where
  log pi_BoN - log pi_ref = log sum_{i=1..N} C(N,i) F^(N-i) pi_ref(y)^(i-1)
  and pi_ref(y) is the completion's probability given the prompt (prompt tokens excluded).

F is invariant under strictly increasing transforms of the task reward r, so both vBoN rewards
are too; KL-RL uses r itself and its effective beta rescales with r.

The quantile-reward family. vBoN's reward is one transform f of the reward's quantile
u = F(r(y)) under pi_ref; other methods train against the same target with other transforms
(``quantile_reward``): f = log (vBoN's bound L, BOND's backward term), f(u) = u (InfAlign's
calibrated reward, the win rate against pi_ref) and f(u) = exp(t u) (InfAlign-CTRL). Each
maximises E_pi[f(F(r(y)))] - beta KL(pi || pi_ref), whose optimum is pi* = pi_ref exp(f(F) /
beta) / Z. Without ties F(r(y)) is uniform under pi_ref, so Z_f(beta) = E_U[exp(f(U)/beta)] has a
closed form (``quantile_log_partition``); for f = log and beta = 1/(N-1), log Z = -log N and pi*
is the Best-of-N density N F^(N-1) pi_ref. QRPO (Matrenok et al. 2025) uses that closed form to
fit the policy offline (``vbon.train.offline``).

Authors' code (``scaling="authors"``): the exact reward was divided by N rather than N-1 while
the KL weight stayed beta, and N was computed as int(1/beta) + 1 (``n_from_beta(...,
rounding="authors")``). Both are available for reproducing their runs, off by default.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from scipy.special import expi, gammaln, logsumexp

from vbon._array import as_float64, check_n, like
from vbon._checks import check_real

__all__ = [
    "beta_from_n",
    "n_from_beta",
    "vbon_reward",
    "log_bon_ratio",
    "kl_rl_reward",
    "kl_rl_optimum_pmf",
    "TRANSFORMS",
    "check_transform",
    "quantile_reward",
    "quantile_log_partition",
    "bonbon_beta",
    "bonbon_loss",
]

Bound = Literal["L", "exact"]
Scaling = Literal["paper", "authors"]
Transform = Literal["log", "identity", "exp"]
TRANSFORMS = ("log", "identity", "exp")

# Cap on the (batch x N) terms materialised at once by the exact reward's logsumexp.
_EXACT_BLOCK = 1 << 22


def beta_from_n(n: int) -> float:
    """beta = 1/(N-1), the KL weight that pairs with the vBoN rewards (N >= 2)."""
    n = check_n(n, "n", minimum=2)
    return 1.0 / (n - 1)


def n_from_beta(beta: float, *, rounding: Literal["exact", "nearest", "authors"] = "exact") -> int:
    """N = 1/beta + 1, the Best-of-N whose vBoN objective has KL weight beta.

    Args:
        beta: KL weight, > 0.
        rounding: "exact" rejects a beta for which 1/beta + 1 is not an integer (to 1e-9);
            "nearest" rounds; "authors" truncates, int(1/beta) + 1, as the authors' code did.
    """
    beta = check_real(beta, "beta", minimum=0.0)
    n_real = 1.0 / float(beta) + 1.0
    if rounding == "authors":
        return int(1.0 / float(beta)) + 1
    if rounding == "nearest":
        return max(int(round(n_real)), 2)
    if rounding != "exact":
        raise ValueError(f"rounding: expected 'exact', 'nearest' or 'authors', got {rounding!r}")
    n = int(round(n_real))
    if abs(n_real - n) > 1e-9 * n_real:
        raise ValueError(
            f"beta: 1/beta + 1 = {n_real:.6g} is not an integer N; pass rounding='nearest' "
            "(or 'authors' for int(1/beta) + 1)"
        )
    return n


def log_bon_ratio(log_cdf: Any, ref_logprob: Any, n: int) -> Any:
    """log pi_BoN(y) - log pi_ref(y) = log sum_{i=1..N} C(N,i) F^(N-i) pi_ref(y)^(i-1).

    Computed as a logsumexp over i with log-binomials (exact for any N, no cancellation).

    Args:
        log_cdf: log F(r(y)) (e.g. log F_hat), <= 0.
        ref_logprob: log pi_ref(y | x) of the completion, prompt tokens excluded; same shape.
        n: N >= 1.
    """
    n = check_n(n)
    lf = as_float64(log_cdf, "log_cdf")
    lp = as_float64(ref_logprob, "ref_logprob")
    if lf.shape != lp.shape:
        raise ValueError(f"ref_logprob: shape {lp.shape} does not match log_cdf shape {lf.shape}")
    if (lf > 1e-9).any():
        raise ValueError("log_cdf: must be <= 0 (a log-probability)")
    if (lp > 1e-9).any():
        raise ValueError("ref_logprob: must be <= 0 (a log-probability)")
    i = np.arange(1, n + 1, dtype=np.float64)
    log_binom = gammaln(n + 1.0) - gammaln(i + 1.0) - gammaln(n - i + 1.0)
    f_pow, p_pow = n - i, i - 1  # 0 * log 0 is 0 here: F^0 = pi_ref^0 = 1
    flat_f, flat_p = lf.ravel(), lp.ravel()
    out = np.empty(flat_f.shape)
    block = max(1, _EXACT_BLOCK // n)
    for s in range(0, flat_f.size, block):  # bounds memory for large N; blocks, not samples
        f, p = flat_f[s : s + block, None], flat_p[s : s + block, None]
        with np.errstate(invalid="ignore"):  # 0 * -inf, discarded by the where
            terms = log_binom + np.where(f_pow > 0, f_pow * f, 0.0)
            terms += np.where(p_pow > 0, p_pow * p, 0.0)
        out[s : s + block] = logsumexp(terms, axis=1)
    return like(log_cdf)(out.reshape(lf.shape))


def vbon_reward(
    log_cdf: Any,
    n: int,
    bound: Bound = "L",
    ref_logprob: Any = None,
    *,
    scaling: Scaling = "paper",
) -> Any:
    """The vBoN reward to pair with KL weight ``beta_from_n(n)`` = 1/(N-1).

    With ``scaling="paper"``, reward - beta * KL is the vBoN objective divided by N-1:
    bound "L" gives log F; "exact" gives (log pi_BoN - log pi_ref) / (N-1).

    Args:
        log_cdf: log F(r(y)) of each completion (``vbon.cdf``), numpy or torch (returned alike).
        n: N >= 2 of the Best-of-N being approximated.
        bound: "L" (the lower bound, reward log F) or "exact".
        ref_logprob: log pi_ref(y | x), prompt excluded; required for ``bound="exact"``.
        scaling: "paper" or "authors" (exact reward divided by N instead of N-1, as in the
            authors' code; "L" is unaffected).
    """
    n = check_n(n, "n", minimum=2)
    if scaling not in ("paper", "authors"):
        raise ValueError(f"scaling: expected 'paper' or 'authors', got {scaling!r}")
    if bound == "L":
        lf = as_float64(log_cdf, "log_cdf")
        if (lf > 1e-9).any():
            raise ValueError("log_cdf: must be <= 0 (a log-probability)")
        return like(log_cdf)(lf)
    if bound != "exact":
        raise ValueError(f"bound: expected 'L' or 'exact', got {bound!r}")
    if ref_logprob is None:
        raise ValueError("ref_logprob: required for bound='exact' (log pi_ref of the completion)")
    divisor = n if scaling == "authors" else n - 1
    ratio = as_float64(log_bon_ratio(as_float64(log_cdf, "log_cdf"), ref_logprob, n), "ratio")
    return like(log_cdf)(ratio / divisor)


def kl_rl_reward(rewards: Any) -> Any:
    """The KL-RL baseline's reward: the task reward r itself (with a free beta)."""
    return like(rewards)(as_float64(rewards, "rewards"))


def kl_rl_optimum_pmf(ref_probs: Any, rewards: Any, beta: float) -> Any:
    """Optimum of KL-RL on a finite support: pi*(y) proportional to pi_ref(y) exp(r(y) / beta).

    Unlike vBoN's optimum, it changes when r is rescaled (scaling r by c is beta / c).
    """
    beta = check_real(beta, "beta", minimum=0.0)
    p = as_float64(ref_probs, "ref_probs")
    r = as_float64(rewards, "rewards", allow_inf=False)
    if p.shape != r.shape:
        raise ValueError(f"rewards: shape {r.shape} does not match ref_probs shape {p.shape}")
    if (p < 0).any():
        raise ValueError("ref_probs: probabilities must be non-negative")
    with np.errstate(divide="ignore"):
        logits = np.log(p) + r / beta
    return like(ref_probs)(np.exp(logits - logsumexp(logits, axis=-1, keepdims=True)))


def check_transform(transform: str, t: float | None = None) -> tuple[str, float | None]:
    """Validate a quantile transform f and its temperature: ("exp", t) needs a finite t != 0,
    "log" and "identity" take no t. Returns (transform, t)."""
    if transform not in TRANSFORMS:
        raise ValueError(f"transform: expected one of {TRANSFORMS}, got {transform!r}")
    if transform == "exp":
        t = check_real(t, "transform_t")
        if t == 0:
            raise ValueError("transform_t: must be non-zero (exp(0 u) = 1 is a constant reward)")
        return transform, float(t)
    if t is not None:
        raise ValueError(
            f"transform_t: only the 'exp' transform takes one, got {t!r} with {transform!r}"
        )
    return transform, None


def quantile_reward(log_cdf: Any, transform: Transform = "log", t: float | None = None) -> Any:
    """f(F(r(y))) from log F: log F ("log", vBoN's reward), F ("identity", the win rate against
    pi_ref) or exp(t F) ("exp"). numpy or torch in, the same type out."""
    transform, t = check_transform(transform, t)
    lf = as_float64(log_cdf, "log_cdf")
    if (lf > 1e-9).any():
        raise ValueError("log_cdf: must be <= 0 (a log-probability)")
    if transform == "log":
        out = lf
    elif transform == "identity":
        out = np.exp(lf)
    else:
        out = np.exp(t * np.exp(lf))
    return like(log_cdf)(out)


def _scaled_ei(x: float) -> float:
    """exp(-x) Ei(x) for x > 0, without overflow (the asymptotic series beyond x = 700)."""
    if x <= 700.0:
        return float(np.exp(-x) * expi(x))
    k = np.arange(12)
    return float(np.sum(np.exp(gammaln(k + 1.0) - (k + 1.0) * np.log(x))))


def quantile_log_partition(transform: Transform, beta: float, t: float | None = None) -> float:
    """log Z_f(beta) = log E_{U ~ Uniform(0, 1)}[exp(f(U) / beta)], the partition function of
    the quantile-reward optimum pi* = pi_ref exp(f(F) / beta) / Z when rewards have no ties.

    Closed forms: "log": Z = beta / (beta + 1) (= 1/N at beta = 1/(N-1)); "identity":
    Z = beta (e^(1/beta) - 1); "exp": Z = (Ei(e^t / beta) - Ei(1 / beta)) / t (Ei the
    exponential integral; substitute v = e^(t u) / beta), all evaluated in log space.
    """
    beta = check_real(beta, "beta", minimum=0.0)
    transform, t = check_transform(transform, t)
    if transform == "log":
        return float(np.log(beta) - np.log1p(beta))
    if transform == "identity":
        return float(np.log(beta) + 1.0 / beta + np.log(-np.expm1(-1.0 / beta)))
    lo, hi = sorted((1.0 / beta, np.exp(t) / beta))
    # Ei(hi) - Ei(lo) = e^hi (g(hi) - e^(lo - hi) g(lo)), g(x) = e^-x Ei(x) > 0 for x > 0.37.
    # Both ends exceed 0.37 only when beta is small enough; otherwise expi is safe directly.
    if hi <= 700.0:
        return float(np.log((expi(hi) - expi(lo)) / abs(t)))
    diff = _scaled_ei(hi) - np.exp(lo - hi) * _scaled_ei(lo)
    return float(hi + np.log(diff / abs(t)))


def bonbon_beta(n: int) -> float:
    """BoNBoN's beta*_n = 1 / (2 (n-1) sum_{k=1}^{n-1} 1/k) (Gui, Garbacea, Veitch, NeurIPS 2024).

    The IPO loss at this beta has the Best-of-n distribution among its minimisers: under
    pi_BoN(n) the expected log-ratio gap between the best and the worst of n samples is
    1 / (2 beta*_n). n = 8 gives 0.0275482094, the value of the authors' README command.
    """
    n = check_n(n, "n", minimum=2)
    return 1.0 / (2.0 * (n - 1) * float(np.sum(1.0 / np.arange(1, n))))


def bonbon_loss(
    best_log_ratio: Any,
    worst_log_ratio: Any,
    best_logprob: Any,
    n: int,
    alpha: float = 0.005,
) -> Any:
    """BoNBoN's per-pair loss alpha SFT(best) + (1 - alpha) IPO(best vs worst of n).

    Args:
        best_log_ratio, worst_log_ratio: log pi_theta(y) - log pi_ref(y) of the best and the
            worst of n reference samples, summed over the completion's tokens.
        best_logprob: log pi_theta(best), the SFT term's log-likelihood (a sequence sum, as the
            authors' code takes it, not a token mean).
        n: the n of the best and worst of n.
        alpha: the SFT weight (the authors' 0.005).

    Returns:
        alpha (-log pi_theta(best)) + (1 - alpha) (h - 1 / (2 beta*_n))^2 per pair, with
        h = best_log_ratio - worst_log_ratio; torch in, torch out (differentiable).
    """
    alpha = check_real(alpha, "bonbon_alpha", minimum=0.0, strict=False, maximum=1.0)
    margin = 1.0 / (2.0 * bonbon_beta(n))
    gap = best_log_ratio - worst_log_ratio
    return alpha * (-best_logprob) + (1.0 - alpha) * (gap - margin) ** 2
