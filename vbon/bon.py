"""Exact Best-of-N maths on a finite support (PAPER.md section 1).

Best-of-N draws y(1..N) iid from pi_ref and keeps the one with the highest reward. Over a finite
support with probabilities pi_ref and rewards r, let for each item y

    F(y)    = P_{y'~pi_ref}(r(y') <  r(y))      (strict CDF)
    pi_ref(C) = P(r(y') == r(y))                (mass of y's tie class C)

With the tie rule "the first maximal draw wins" (equivalently: uniformly among the tied maximal
draws, since the draws are exchangeable), the BoN distribution is

    pi_BoN(y) = pi_ref(y) / pi_ref(C) * ((F + pi_ref(C))^N - F^N)

which reduces to the paper's (F + pi_ref(y))^N - F^N when rewards are injective.

Every function takes arrays whose LAST axis is the support (leading axes are independent
supports, e.g. prompts) and accepts numpy arrays or torch tensors. Everything is computed in log
space in float64 from prefix/suffix log-sums of the tie-class masses, so that F near 0 and near 1
are both accurate; N up to 1e4 and supports of 1e6 items are fine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from vbon._array import as_float64, check_n, is_tensor, like

__all__ = [
    "bon_pmf",
    "bon_log_pmf",
    "kl_bon_ref",
    "kl_bon_bound",
    "bon_win_rate",
    "win_rate_bound",
    "bon_lower_bound",
    "bound_optimum_pmf",
    "ref_cdf",
    "select_best",
    "sample_bon",
]


@dataclass
class _Classes:
    """Tie classes of each support (rows), sorted by reward; padded with zero-mass classes."""

    mass: np.ndarray  # (R, C) pi_ref(C), normalised per row
    f_le: np.ndarray  # (R, C) F_le = P(r <= r_C)
    log_f_le: np.ndarray  # (R, C) log F_le, accurate near 0 and near 1
    order: np.ndarray  # (R, K) argsort of the rewards
    class_col: np.ndarray | None  # (R, K) class of each item in sorted order; None: injective
    p_sorted: np.ndarray  # (R, K) pi_ref of each item in sorted order
    total: np.ndarray  # (R, 1) the input's total mass (1 up to rounding)

    @property
    def log_f(self) -> np.ndarray:
        """log F = log P(r < r_C): F of a class is F_le of the class below it."""
        out = np.empty_like(self.log_f_le)
        out[:, 0] = -np.inf
        out[:, 1:] = self.log_f_le[:, :-1]
        return out

    def per_item(self, per_class: np.ndarray, scale_by_p: bool = False) -> np.ndarray:
        """Spread per-class values to items, in the caller's order (optionally times pi_ref)."""
        if self.injective:  # item i of the sorted order is class i
            values = per_class * self.p_sorted if scale_by_p else per_class.copy()
        else:
            values = _gather(per_class, self.class_col)
            if scale_by_p:
                values *= self.p_sorted
        return _scatter(values, self.order)

    @property
    def injective(self) -> bool:
        return self.class_col is None


def _flat_index(idx: np.ndarray, width: int) -> np.ndarray:
    """Row-major positions of per-row column indices (one flat take beats take_along_axis's
    broadcast index grids several times over)."""
    if idx.shape[0] == 1:
        return idx[0]
    return (idx + (np.arange(idx.shape[0]) * width)[:, None]).ravel()


def _gather(a: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``np.take_along_axis(a, idx, axis=-1)`` for 2-D arrays, faster."""
    return a.ravel().take(_flat_index(idx, a.shape[1])).reshape(idx.shape)


def _scatter(values: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``out`` with ``out[i, idx[i, j]] = values[i, j]`` (idx a permutation per row)."""
    out = np.empty_like(values)
    out.ravel()[_flat_index(idx, values.shape[1])] = values.ravel()
    return out


def _check_shapes(ref: np.ndarray, r: np.ndarray, ref_name: str) -> None:
    if ref.shape != r.shape:
        raise ValueError(f"rewards: shape {r.shape} does not match {ref_name} shape {ref.shape}")
    if ref.ndim == 0 or ref.shape[-1] == 0:
        raise ValueError(f"{ref_name}: the support (last axis) is empty")


def _check_total(total: np.ndarray, ref_name: str) -> None:
    if not np.allclose(total, 1.0, rtol=0.0, atol=1e-6):
        worst = float(total.ravel()[np.argmax(np.abs(total.ravel() - 1.0))])
        raise ValueError(f"{ref_name}: must sum to 1 over the support (last axis), got {worst!r}")


def _probs(ref_probs: Any, rewards: Any) -> tuple[np.ndarray, np.ndarray]:
    p = as_float64(ref_probs, "ref_probs")
    r = as_float64(rewards, "rewards")
    _check_shapes(p, r, "ref_probs")
    if (p < 0).any():
        raise ValueError("ref_probs: probabilities must be non-negative")
    return p, r


def _classes(p: np.ndarray, r: np.ndarray, ref_name: str = "ref_probs") -> _Classes:
    """Group each row's items into tie classes and compute log F_le per class."""
    k = p.shape[-1]
    p = p.reshape(-1, k)
    r = r.reshape(-1, k)
    rows = p.shape[0]

    # Order within a tie class is irrelevant (results are per class), so no stable sort needed.
    order = np.argsort(r, axis=-1)
    r_sorted = _gather(r, order)
    p_sorted = _gather(p, order)

    new_class = np.ones((rows, k), dtype=bool)
    np.not_equal(r_sorted[:, 1:], r_sorted[:, :-1], out=new_class[:, 1:])
    if new_class.all():  # injective rewards: every item is its own class
        class_col = None
        mass = p_sorted.copy()
    else:
        class_col = np.cumsum(new_class, axis=-1) - 1
        # One segmented sum over the flattened rows: each row's first item starts a segment, so
        # segments never straddle rows.
        starts = np.flatnonzero(new_class.ravel())
        mass = np.zeros((rows, int(class_col[:, -1].max()) + 1))
        mass[starts // k, class_col.ravel()[starts]] = np.add.reduceat(p_sorted.ravel(), starts)

    total = mass.sum(axis=-1, keepdims=True)
    _check_total(total, ref_name)
    # Normalised so that F_le of the top class is exactly 1 even if the input sums to 1 +- 1e-7.
    mass /= total

    # F_le from the prefix sum is accurate while small; near 1 use 1 - (suffix mass above),
    # whose relative accuracy survives N log F_le for N up to 1e4.
    prefix = np.cumsum(mass, axis=-1)
    suffix_above = np.empty_like(mass)
    suffix_above[:, -1] = 0.0
    np.cumsum(mass[:, :0:-1], axis=-1, out=suffix_above[:, -2::-1])
    low = prefix < 0.5
    log_f_le = np.empty_like(mass)
    np.negative(suffix_above, out=suffix_above)
    with np.errstate(divide="ignore"):
        np.log(prefix, out=log_f_le, where=low)
        np.log1p(suffix_above, out=log_f_le, where=~low)
    np.add(suffix_above, 1.0, out=prefix, where=~low)  # F_le = 1 - tail, for the division below
    return _Classes(mass, prefix, log_f_le, order, class_col, p_sorted, total)


def _bon_ratio(c: _Classes, n: int, *, log: bool) -> np.ndarray:
    """pi_BoN(C) / pi_ref(C) per class (or its log), with pi_BoN(C) = F_le^N - F^N.

    Written as F_le^N (1 - (F/F_le)^N) with log(F/F_le) = log1p(-pi_ref(C)/F_le) so that no
    difference of nearly equal numbers is taken. A class whose mass underflows to 0 takes the
    limit N F^(N-1).
    """
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        ratio = np.minimum(c.mass / c.f_le, 1.0)
        np.log1p(np.negative(ratio, out=ratio), out=ratio)
        ratio *= n
        one_minus = np.negative(np.expm1(ratio, out=ratio), out=ratio)  # 1 - (F/F_le)^N
        n_log_f_le = n * c.log_f_le
        if log:
            ratio = np.log(one_minus, out=one_minus)
            ratio += n_log_f_le
            ratio -= np.log(c.mass)
        else:
            ratio = one_minus * np.exp(n_log_f_le)
            ratio /= c.mass
        empty = c.mass == 0
        if empty.any():  # the limit N F^(N-1) (F = F_le for an empty class)
            limit = np.log(n) + (n - 1) * c.log_f_le[empty] if n > 1 else 0.0
            ratio[empty] = limit if log else np.exp(limit)
    return ratio


def bon_log_pmf(ref_logprobs: Any, rewards: Any, n: int) -> Any:
    """log pi_BoN(y) over a finite support, from log pi_ref(y) and rewards r(y).

    Args:
        ref_logprobs: log pi_ref over the support (last axis), summing to 1 in probability.
            Items too improbable to represent as a probability (below 1e-308) are handled
            through the limit pi_BoN / pi_ref -> N F^(N-1).
        rewards: r(y), same shape. Ties between distinct items are allowed (see module doc).
        n: N >= 1, the number of Best-of-N draws.

    Returns:
        log pi_BoN, same shape and array type as ``ref_logprobs`` (-inf where pi_ref(y) = 0).
    """
    n = check_n(n)
    lp = as_float64(ref_logprobs, "ref_logprobs")
    r = as_float64(rewards, "rewards")
    _check_shapes(lp, r, "ref_logprobs")
    if (lp > 1e-9).any():
        raise ValueError("ref_logprobs: log-probabilities must be <= 0")
    c = _classes(np.exp(lp), r, "ref_logprobs")
    out = lp.reshape(c.order.shape) - np.log(c.total) + c.per_item(_bon_ratio(c, n, log=True))
    return like(ref_logprobs)(out.reshape(lp.shape))


def bon_pmf(ref_probs: Any, rewards: Any, n: int) -> Any:
    """pi_BoN(y) = pi_ref(y)/pi_ref(C) ((F + pi_ref(C))^N - F^N) over a finite support.

    Args:
        ref_probs: pi_ref over the support (last axis): non-negative, summing to 1.
        rewards: r(y), same shape; ties handled by "first maximal draw wins".
        n: N >= 1.

    Returns:
        pi_BoN, same shape and array type as ``ref_probs``.
    """
    n = check_n(n)
    p, r = _probs(ref_probs, rewards)
    c = _classes(p, r)
    factor = _bon_ratio(c, n, log=False) / c.total  # pi_BoN / pi_ref, constant within a class
    return like(ref_probs)(c.per_item(factor, scale_by_p=True).reshape(p.shape))


def _bon_class_mass(ref_probs: Any, rewards: Any, n: int) -> tuple[_Classes, np.ndarray]:
    """Tie classes and pi_BoN(C) per class."""
    n = check_n(n)
    c = _classes(*_probs(ref_probs, rewards))
    with np.errstate(invalid="ignore"):
        bon_mass = c.mass * _bon_ratio(c, n, log=False)
    return c, np.nan_to_num(bon_mass, nan=0.0)


def _row_result(template: Any, values: np.ndarray, shape: tuple[int, ...]) -> Any:
    values = values.reshape(shape[:-1])
    if values.ndim == 0:
        return float(values)
    return like(template)(values)


def kl_bon_ref(ref_probs: Any, rewards: Any, n: int) -> Any:
    """Exact KL(pi_BoN || pi_ref) in nats, per support (leading axes kept).

    Within a tie class pi_BoN / pi_ref is constant, so the sum runs over classes. It is at most
    ``kl_bon_bound(n)`` = log N - (N-1)/N; ties (few distinct rewards) make it much smaller.
    """
    c, bon_mass = _bon_class_mass(ref_probs, rewards, n)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(bon_mass > 0, bon_mass * np.log(bon_mass / c.mass), 0.0)
    return _row_result(ref_probs, np.maximum(terms.sum(axis=-1), 0.0), np.shape(ref_probs))


def kl_bon_bound(n: int) -> float:
    """The upper bound log N - (N-1)/N on KL(pi_BoN || pi_ref) (Beirami et al. 2024).

    Equality holds only in the continuous limit (no atom carries noticeable mass); it is NOT the
    KL of BoN, and plots should label it as a bound.
    """
    n = check_n(n)
    return float(np.log(n) - (n - 1) / n)


def win_rate_bound(n: int) -> float:
    """N/(N+1): the win rate of BoN against one pi_ref sample for a continuous reward."""
    n = check_n(n)
    return n / (n + 1)


def bon_win_rate(ref_probs: Any, rewards: Any, n: int) -> Any:
    """Exact P(r(y_BoN) > r(y')) + P(r(y_BoN) = r(y'))/2 for y' ~ pi_ref (ties count 1/2).

    Equals sum_C pi_BoN(C) (F + pi_ref(C)/2); at most N/(N+1), with equality without atoms.
    """
    c, bon_mass = _bon_class_mass(ref_probs, rewards, n)
    mid = np.exp(c.log_f) + 0.5 * c.mass
    return _row_result(ref_probs, (bon_mass * mid).sum(axis=-1), np.shape(ref_probs))


def ref_cdf(ref_probs: Any, rewards: Any, *, strict: bool = True) -> Any:
    """F(r(y)) = P_{pi_ref}(r < r(y)) for each item (``strict=False``: P(r <= r(y)))."""
    p, r = _probs(ref_probs, rewards)
    c = _classes(p, r)
    log_f = c.per_item(c.log_f if strict else c.log_f_le)
    return like(ref_probs)(np.exp(log_f).reshape(p.shape))


def _item_log_f_term(p: np.ndarray, c: _Classes, n: int) -> np.ndarray:
    """(N-1) log F(r(y)) + log pi_ref(y) per item (0 * log 0 taken as 0 for N = 1)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        log_p = np.log(p.reshape(c.order.shape) / c.total)
        return log_p + ((n - 1) * c.per_item(c.log_f) if n > 1 else 0.0)


def bon_lower_bound(ref_probs: Any, rewards: Any, n: int) -> Any:
    """The i = 1 term N F^(N-1) pi_ref(y), a lower bound on pi_BoN(y) (tight when pi_ref(y) << F).

    Taking logs gives the bound behind L: log pi_BoN >= log N + (N-1) log F + log pi_ref.
    """
    n = check_n(n)
    p, r = _probs(ref_probs, rewards)
    c = _classes(p, r)
    return like(ref_probs)((n * np.exp(_item_log_f_term(p, c, n))).reshape(p.shape))


def bound_optimum_pmf(ref_probs: Any, rewards: Any, n: int) -> Any:
    """The maximiser of the vBoN bound L: pi*(y) proportional to pi_ref(y) F(r(y))^(N-1).

    It is the KL-regularised optimum for reward log F with beta = 1/(N-1). Items in the lowest
    reward class get probability 0 for N > 1 (log F = -inf there).
    """
    n = check_n(n)
    p, r = _probs(ref_probs, rewards)
    c = _classes(p, r)
    logits = _item_log_f_term(p, c, n)
    log_z = np.logaddexp.reduce(logits, axis=-1, keepdims=True)
    if np.isneginf(log_z).any():
        raise ValueError("rewards: every item ties at the lowest reward, so F = 0 and L is -inf")
    return like(ref_probs)(np.exp(logits - log_z).reshape(p.shape))


def select_best(rewards: Any) -> Any:
    """Best-of-N selection: index of the highest reward along the last axis (the N candidates).

    Ties go to the first maximal candidate, the rule pi_BoN above assumes. Returns an integer
    array (or tensor) with the last axis removed.
    """
    if is_tensor(rewards):
        if rewards.numel() and rewards.isnan().any():
            raise ValueError("rewards: contains NaN")
        if rewards.ndim == 0 or rewards.shape[-1] == 0:
            raise ValueError("rewards: need at least one candidate on the last axis")
        return rewards.argmax(dim=-1)  # documented to return the first maximal index
    r = as_float64(rewards, "rewards")
    if r.ndim == 0 or r.shape[-1] == 0:
        raise ValueError("rewards: need at least one candidate on the last axis")
    return np.argmax(r, axis=-1)


def sample_bon(
    ref_probs: Any, rewards: Any, n: int, size: int, rng: np.random.Generator | int | None = None
) -> np.ndarray:
    """Monte Carlo Best-of-N on one support: ``size`` indices, each the best of N pi_ref draws."""
    n = check_n(n)
    size = check_n(size, "size")
    p, r = _probs(ref_probs, rewards)
    if p.ndim != 1:
        raise ValueError(f"ref_probs: sample_bon takes one support (1-D), got shape {p.shape}")
    _check_total(p.sum(keepdims=True), "ref_probs")
    rng = np.random.default_rng(rng)
    draws = rng.choice(p.size, size=(size, n), p=p / p.sum())
    return np.take_along_axis(draws, select_best(r[draws])[:, None], axis=-1)[:, 0]
