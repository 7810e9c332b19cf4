"""Exact Best-of-N maths on a finite support (the paper's background on Best-of-N).

Best-of-N draws y(1..N) iid from pi_ref and keeps the one with the highest reward. Over a finite
support with probabilities pi_ref and rewards r, let for each item y

    F(y)    = P_{y'~pi_ref}(r(y') <  r(y))      (strict CDF)
    pi_ref(C) = P(r(y') == r(y))                (mass of y's tie class C)

With the tie rule "the first maximal draw wins" (equivalently: uniformly among the tied maximal
draws, since the draws are exchangeable), the BoN distribution is

    pi_BoN(y) = pi_ref(y) / pi_ref(C) * ((F + pi_ref(C))^N - F^N)

which reduces to the paper's (F + pi_ref(y))^N - F^N when rewards are injective.

Every function takes arrays whose LAST axis is the support (leading axes are independent
supports, e.g. prompts) and accepts numpy arrays or torch tensors. Everything is computed in
float64 from prefix/suffix sums of the tie-class masses, with log1p/expm1 wherever a difference
of nearly equal numbers would appear, so that F near 0 and near 1 are both accurate; N up to 1e4
and supports of 1e6 items are fine (tests/test_bon.py checks 1e-10 relative error per item
against long double).

Speed (benchmarks/bon_math.py): the items are put in reward order by sorting the rewards as
values with each item's column packed into the low mantissa bits (numpy's argsort costs 3x its
sort), the elementwise maths runs through torch on zero-copy views of the numpy buffers, and the
temporaries live in per-thread buffers reused from call to call (``_Scratch``).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import torch

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
    "quantile_optimum_pmf",
    "ref_cdf",
    "select_best",
    "sample_bon",
]


@dataclass
class _Classes:
    """Tie classes of each support (rows), sorted by reward; padded with zero-mass classes."""

    mass: np.ndarray  # (R, C) pi_ref(C), normalised per row
    order: np.ndarray  # (R, K) argsort of the rewards
    class_col: np.ndarray | None  # (R, K) class of each item in sorted order; None: injective
    share: np.ndarray  # (R, K) pi_ref of each item in sorted order, normalised like ``mass``
    total: np.ndarray  # (R, 1) the input's total mass (1 up to rounding)

    @cached_property
    def _cdf(self) -> tuple[np.ndarray, np.ndarray]:
        return _log_f_le(self.mass)

    @property
    def f_le(self) -> np.ndarray:
        """(R, C) F_le = P(r <= r_C), computed on first use (bon_pmf does without it)."""
        return self._cdf[0]

    @property
    def log_f_le(self) -> np.ndarray:
        """(R, C) log F_le, accurate near 0 and near 1."""
        return self._cdf[1]

    @property
    def log_f(self) -> np.ndarray:
        """log F = log P(r < r_C): F of a class is F_le of the class below it."""
        out = np.empty_like(self.log_f_le)
        out[:, 0] = -np.inf
        out[:, 1:] = self.log_f_le[:, :-1]
        return out

    def per_item(self, per_class: np.ndarray, scale_by_p: bool = False) -> np.ndarray:
        """Spread per-class values to items, in the caller's order (optionally times ``share``)."""
        if self.injective:  # item i of the sorted order is class i
            values = per_class * self.share if scale_by_p else per_class
        else:
            values = _gather(per_class, self.class_col)
            if scale_by_p:
                values *= self.share
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


def _gather(a: np.ndarray, idx: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``np.take_along_axis(a, idx, axis=-1)`` for 2-D arrays, faster.

    Into ``out`` (float64), torch's index_select runs 1.5x faster than ``take`` at 1e5-1e6 items.
    """
    flat = _flat_index(idx, a.shape[1])
    if out is None:
        return a.ravel().take(flat).reshape(idx.shape)
    torch.index_select(_t(a.ravel()), 0, torch.from_numpy(flat), out=_t(out.reshape(-1)))
    return out


# From here on torch's index_copy_ (2 threads) beats numpy's single-threaded scatter.
_PARALLEL_SCATTER_ITEMS = 1 << 18


def _scatter(values: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``out`` with ``out[i, idx[i, j]] = values[i, j]`` (idx a permutation per row)."""
    out = np.empty_like(values)
    flat = _flat_index(idx, values.shape[1])
    if values.size >= _PARALLEL_SCATTER_ITEMS and values.dtype == np.float64:
        _t(out.reshape(-1)).index_copy_(0, torch.from_numpy(flat), _t(values.reshape(-1)))
    else:
        out.ravel()[flat] = values.ravel()
    return out


_ZERO = torch.zeros((), dtype=torch.float64)


def _t(a: np.ndarray) -> torch.Tensor:
    """A zero-copy torch view of a C-contiguous float64 array: torch's SIMD exp/log and cumsum
    run several times faster than numpy's on CPU, and write straight into numpy buffers."""
    return torch.from_numpy(a)


_SCRATCH_MIN_ITEMS = 1 << 12  # below this a dict lookup costs more than what it saves
_SCRATCH_MAX_ITEMS = 1 << 20


class _Scratch(threading.local):
    """Per-thread buffers that the temporaries of the sort and of ``bon_pmf`` reuse from call to
    call.

    The first touch of fresh memory costs a page fault per 4 KiB, about 2 us each on this kind of
    VM: as much as the maths on those 512 items. Whether malloc hands back recycled memory or
    fresh pages depends on the rest of the process's heap: with fresh temporaries a call on 1e6
    items took 1,000-3,700 faults, depending on the process; with these buffers it takes none.
    Buffers of more than ``_SCRATCH_MAX_ITEMS`` items are not kept, so a thread holds at most
    five of 8 MiB (four buffers and the column indices); a result handed to a caller never lives
    in one.
    """

    def __init__(self) -> None:
        self.buffers: dict[str, np.ndarray] = {}
        self.arange = np.arange(0)

    def columns(self, k: int) -> np.ndarray:
        """0, 1, ..., k - 1 as int64 (read only)."""
        if k > self.arange.size:
            cols = np.arange(k)
            cols.flags.writeable = False
            if k > _SCRATCH_MAX_ITEMS:
                return cols
            self.arange = cols
        return self.arange[:k]

    def get(self, name: str, shape: tuple[int, int], dtype: type = np.float64) -> np.ndarray:
        size = shape[0] * shape[1]
        if not _SCRATCH_MIN_ITEMS <= size <= _SCRATCH_MAX_ITEMS:
            return np.empty(shape, dtype)
        buf = self.buffers.get(name)
        if buf is None or buf.size < size:
            buf = self.buffers[name] = np.empty(size, np.float64)
        return buf[:size].view(dtype).reshape(shape)


_scratch = _Scratch()


def _argsort_classes(r: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Reference path of ``_sorted_order``: a plain argsort and a comparison of neighbours.

    Rewards reach the maths unchecked for NaN (see ``_sorted_order``), so the check is here.
    """
    if np.isnan(r).any():
        raise ValueError("rewards: contains NaN")
    order = np.argsort(r, axis=-1)
    r_sorted = _gather(r, order)
    new_class = np.ones(r.shape, dtype=bool)
    np.not_equal(r_sorted[:, 1:], r_sorted[:, :-1], out=new_class[:, 1:])
    return order, (None if new_class.all() else new_class)


def _sorted_order(r: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Per-row argsort of the rewards (R, K), and which sorted items start a new tie class.

    numpy's SIMD sort covers values but not argsort, which costs 3x the sort. So the rewards are
    sorted as values with each item's column written into the low ``b`` mantissa bits: rewards
    that differ above those bits keep their order, and the sort carries the columns along. Items
    that agree above them (ties, or rewards within about 2^(b-52) relative of each other) form
    runs; a run holding distinct rewards is re-sorted by the full reward. For continuous rewards
    such runs are rare (~30 pairs in 1e6 normal draws); for discrete rewards they are ties, which
    need no re-sorting because every result is per tie class.

    Returns ``(order, new_class)``; ``new_class`` is None when the rewards are injective.
    """
    rows, k = r.shape
    b = max(1, (k - 1).bit_length())
    if b > 40:
        return _argsort_classes(r)
    low = (1 << b) - 1
    # A copy, with -0.0 turned into +0.0 so the two zeros tie.
    key = np.add(r, 0.0, out=_scratch.get("key", (rows, k)))
    bits = key.view(np.int64)
    bits &= ~low
    bits |= _scratch.columns(k)
    key.sort(axis=-1)
    # Column bits turn +-inf into NaN (except at column 0, where inf keeps its place), and the
    # sort puts NaN last: one look at the last column replaces passes of isnan and isfinite.
    # Both infinities and NaN rewards (rejected there) go to the argsort path.
    if np.isnan(key[:, -1]).any():
        return _argsort_classes(r)
    # Same bits above the column bits: the xor of neighbours is at most ``low`` (as unsigned,
    # since neighbours of opposite sign differ in the top bit).
    xor = np.bitwise_xor(
        bits[:, 1:], bits[:, :-1], out=_scratch.get("xor", (rows, k - 1), np.int64)
    )
    run = xor.view(np.uint64) <= np.uint64(low)
    bits &= low
    if not run.any():
        return bits, None
    return bits, _sort_runs(r, bits, run)


def _run_positions(run: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat positions of the sorted items in runs, and which of them start a run.

    ``run[i, j]``: sorted items j and j + 1 of row i share their high bits. Few runs (continuous
    rewards) are handled on the positions alone; many (discrete rewards) with full-size masks.
    """
    rows, k1 = run.shape
    left = np.flatnonzero(run)
    left += left // k1  # (row, j) of the (R, K - 1) pairs -> row * K + j
    if left.size * 16 < run.size:
        pos = np.union1d(left, left + 1)
        return pos, ~np.isin(pos - 1, left, assume_unique=True)
    pair = np.zeros(rows * (k1 + 1) + 1, dtype=bool)
    pair[left] = True
    in_run = pair.copy()
    in_run[1:] |= pair[:-1]
    pos = np.flatnonzero(in_run)
    first = np.ones(pos.size, dtype=bool)
    first[1:] = ~pair[pos[1:] - 1]
    return pos, first


def _sort_runs(r: np.ndarray, order: np.ndarray, run: np.ndarray) -> np.ndarray | None:
    """Finish ``_sorted_order``: re-sort runs of equal high bits in place; return new_class
    (None when no two rewards are equal)."""
    rows, k = order.shape
    flat = order.ravel()
    pos, first = _run_positions(run)
    row_start = pos - pos % k
    vals = r.ravel()[flat[pos] + row_start]
    mixed = ~first[1:] & (vals[1:] != vals[:-1])
    if mixed.any():
        run_id = np.cumsum(first)
        is_mixed = np.zeros(int(run_id[-1]) + 1, dtype=bool)
        is_mixed[run_id[1:][mixed]] = True
        sel = is_mixed[run_id]
        perm = np.lexsort((vals[sel], run_id[sel]))
        at = pos[sel]
        flat[at] = flat[at[perm]]
        vals[sel] = vals[sel][perm]
    tied = ~first[1:] & (vals[1:] == vals[:-1])
    if not tied.any():
        return None
    new_class = np.ones((rows, k), dtype=bool)
    new_class.ravel()[pos[1:][tied]] = False
    return new_class


def _check_shapes(ref: np.ndarray, r: np.ndarray, ref_name: str) -> None:
    if ref.shape != r.shape:
        raise ValueError(f"rewards: shape {r.shape} does not match {ref_name} shape {ref.shape}")
    if ref.ndim == 0 or ref.shape[-1] == 0:
        raise ValueError(f"{ref_name}: the support (last axis) is empty")


def _check_total(total: np.ndarray, ref_name: str) -> float:
    """ValueError unless every row's total mass is 1 within 1e-6; returns the largest |total - 1|
    (NaN totals fail too)."""
    deviation = np.abs(total.ravel() - 1.0)
    worst = deviation.max()
    if not worst <= 1e-6:
        got = float(total.ravel()[np.argmax(np.nan_to_num(deviation, nan=np.inf))])
        raise ValueError(f"{ref_name}: must sum to 1 over the support (last axis), got {got!r}")
    return float(worst)


def _probs(ref_probs: Any, rewards: Any) -> tuple[np.ndarray, np.ndarray]:
    """Both inputs as float64 of one shape. NaN rewards are caught by the sort
    (``_sorted_order``) and the probabilities are checked by ``_classes``, after it."""
    p = as_float64(ref_probs, "ref_probs", check_nan=False)
    r = as_float64(rewards, "rewards", check_nan=False)
    _check_shapes(p, r, "ref_probs")
    return p, r


def _check_probs(p: np.ndarray, ref_name: str = "ref_probs") -> None:
    """NaN and sign of pi_ref in one pass (NaN fails ``>= 0`` too)."""
    if not (p >= 0).all():
        if np.isnan(p).any():
            raise ValueError(f"{ref_name}: contains NaN")
        raise ValueError(f"{ref_name}: probabilities must be non-negative")


def _classes(p: np.ndarray, r: np.ndarray, ref_name: str = "ref_probs") -> _Classes:
    """Group each row's items into tie classes (sorted by reward, masses normalised); F_le and
    log F_le follow on first use."""
    k = p.shape[-1]
    p = p.reshape(-1, k)
    r = r.reshape(-1, k)
    rows = p.shape[0]

    order, new_class = _sorted_order(r)
    # Checked after the sort, not before: the pass leaves p in cache for the random gather.
    _check_probs(p, ref_name)
    share = _gather(p, order, out=_scratch.get("share", (rows, k)))
    if new_class is None:  # injective rewards: every item is its own class
        class_col = None
        mass = share
    else:
        class_col = np.cumsum(new_class, axis=-1) - 1
        # One segmented sum over the flattened rows: each row's first item starts a segment, so
        # segments never straddle rows.
        starts = np.flatnonzero(new_class.ravel())
        mass = np.zeros((rows, int(class_col[:, -1].max()) + 1))
        mass[starts // k, class_col.ravel()[starts]] = np.add.reduceat(share.ravel(), starts)

    total = mass.sum(axis=-1, keepdims=True)
    deviation = _check_total(total, ref_name)
    # Normalised so that the masses sum to 1 even if the input sums to 1 +- 1e-7. A total within
    # a few ulps of 1 (any normalised input) is taken as 1: the pass would change nothing visible.
    if deviation > 1e-15:
        mass /= total
        if class_col is not None:
            share /= total
    else:
        total = np.ones_like(total)
    return _Classes(mass, order, class_col, share, total)


def _log_f_le(mass: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """F_le = P(r <= r_C) per class and its log, accurate near 0 and near 1.

    F_le from the prefix sum is accurate while small; near 1 it is 1 - (suffix mass above), whose
    relative accuracy survives N log F_le for N up to 1e4.
    """
    tm = _t(mass)
    f_le = torch.cumsum(tm, dim=-1)
    minus_tail = torch.zeros_like(tm)  # minus the mass strictly above each class
    minus_tail[:, :-1] = torch.cumsum(tm[:, 1:].flip(1), dim=1).flip(1).neg_()
    low = f_le < 0.5
    log_f_le = torch.where(low, torch.log(f_le), torch.log1p(minus_tail))
    torch.where(low, f_le, minus_tail.add_(1.0), out=f_le)
    return f_le.numpy(), log_f_le.numpy()


def _bon_mass(c: _Classes, n: int, *, log: bool = False) -> np.ndarray:
    """pi_BoN(C) = F_le^N - F^N per class (or its log), written F_le^N (1 - (F/F_le)^N).

    log(F/F_le) = log1p(-pi_ref(C)/F_le), so no difference of nearly equal numbers is taken, and
    the log form never forms F_le^N, which underflows for large N.
    """
    # Fused ops (addcdiv, addcmul against a broadcast 0) save whole passes.
    minus_q = torch.addcdiv(_ZERO, _t(c.mass), _t(c.f_le), value=-1.0)
    minus_q.clamp_(min=-1.0)  # pi_ref(C) <= F_le up to rounding
    if (c.f_le[:, 0] == 0).any():  # 0/0: empty classes with nothing below (F_le is monotone)
        minus_q.nan_to_num_(nan=0.0)
    ratio_m1 = minus_q.log1p_().mul_(n).expm1_()  # (F/F_le)^N - 1
    n_log_f_le = torch.mul(_t(c.log_f_le), n)
    if log:
        return ratio_m1.neg_().log_().add_(n_log_f_le).numpy()
    return torch.addcmul(_ZERO, ratio_m1, n_log_f_le.exp_(), value=-1.0, out=ratio_m1).numpy()


def _injective_bon_mass(mass: np.ndarray, n: int) -> np.ndarray:
    """pi_BoN(y) = F_le^N - F^N for injective rewards, items in reward order (R, K).

    Item i's F is item i-1's F_le, so F_le^N is the product of (F/F_le)^N over the items above
    it: one cumulative product replaces the log F_le and the suffix sums that ``_bon_mass``
    needs. 1 - (F/F_le)^N comes from log1p/expm1 as there, so no nearly equal numbers are
    subtracted. This is the fast path of ``bon_pmf``. It overwrites ``mass`` and returns a
    scratch buffer (see ``_Scratch``), which the caller copies out of.
    """
    tm = _t(mass)
    out = _scratch.get("pmf", mass.shape)
    to = _t(out)
    torch.cumsum(tm, dim=-1, out=to)  # F_le
    # No clamp to -1 is needed: rounding is monotone and every partial sum is non-negative, so
    # the cumulative sum is >= the item's own mass and pi_ref(y) / F_le <= 1 exactly.
    torch.addcdiv(_ZERO, tm, to, value=-1.0, out=to)  # -pi_ref(y) / F_le
    if not mass[:, 0].all():  # 0/0: items of mass 0 below all others have F_le = 0
        to.nan_to_num_(nan=0.0)
    to.log1p_().mul_(float(n))  # N log(F/F_le)
    # F_le^N of item i = product over j > i of (F/F_le)_j^N, built from the top down in the
    # reversed order. The factors come from exp, not 1 + expm1, which would round small factors
    # to 0. The top factor's sign is flipped so that the products come out as -F_le^N, which
    # saves the pass that would negate (F/F_le)^N - 1 below.
    minus_above = mass[:, :-1]
    np.copyto(minus_above, out[:, :0:-1])
    factors = _t(minus_above).exp_()
    np.negative(minus_above[:, :1], out=minus_above[:, :1])  # empty for a support of one item
    factors.cumprod_(-1)
    to.expm1_()  # (F/F_le)^N - 1
    np.multiply(out[:, :-1], minus_above[:, ::-1], out=out[:, :-1])
    np.negative(out[:, -1], out=out[:, -1])  # the top item: F_le = 1
    return out


def _bon_ratio(c: _Classes, n: int, *, log: bool) -> np.ndarray:
    """pi_BoN(C) / pi_ref(C) per class (or its log). A class whose mass underflows to 0 takes
    the limit N F^(N-1)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        bon_mass = _bon_mass(c, n, log=log)
        ratio = bon_mass - np.log(c.mass) if log else bon_mass / c.mass
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
    r = as_float64(rewards, "rewards", check_nan=False)  # caught by the sort
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
    if c.injective:  # every class is one item: pi_BoN(C) is the answer, in sorted order
        values = c.per_item(_injective_bon_mass(c.mass, n))
    else:  # pi_BoN / pi_ref is constant within a class; share carries the 1/total
        values = c.per_item(_bon_ratio(c, n, log=False), scale_by_p=True)
    return like(ref_probs)(values.reshape(p.shape))


def _bon_class_mass(ref_probs: Any, rewards: Any, n: int) -> tuple[_Classes, np.ndarray]:
    """Tie classes and pi_BoN(C) per class."""
    n = check_n(n)
    c = _classes(*_probs(ref_probs, rewards))
    return c, _bon_mass(c, n)


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


def quantile_optimum_pmf(
    ref_probs: Any, rewards: Any, beta: float, transform: str = "log", t: float | None = None
) -> Any:
    """The optimum of a quantile reward: pi*(y) proportional to pi_ref(y) exp(f(F(r(y))) / beta).

    F is the strict CDF (``ref_cdf``), so ties share one F; f is ``transform`` ("log",
    "identity" or "exp" with temperature ``t``; ``vbon.objectives.quantile_reward``). With
    "log" and beta = 1/(N-1) this is ``bound_optimum_pmf`` at N, and the lowest reward class
    gets probability 0.
    """
    from vbon._checks import check_real
    from vbon.objectives import check_transform

    beta = check_real(beta, "beta", minimum=0.0)
    transform, t = check_transform(transform, t)
    p, r = _probs(ref_probs, rewards)
    c = _classes(p, r)
    log_f = c.per_item(c.log_f)
    with np.errstate(divide="ignore"):
        log_p = np.log(p.reshape(c.order.shape) / c.total)
    if transform == "log":
        score = log_f
    elif transform == "identity":
        score = np.exp(log_f)
    else:
        score = np.exp(t * np.exp(log_f))
    logits = log_p + score / beta
    log_z = np.logaddexp.reduce(logits, axis=-1, keepdims=True)
    if np.isneginf(log_z).any():
        raise ValueError(
            "rewards: every item ties at the lowest reward, so F = 0 and log F is -inf"
        )
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
    _check_probs(p)
    if p.ndim != 1:
        raise ValueError(f"ref_probs: sample_bon takes one support (1-D), got shape {p.shape}")
    _check_total(p.sum(keepdims=True), "ref_probs")
    rng = np.random.default_rng(rng)
    draws = rng.choice(p.size, size=(size, n), p=p / p.sum())
    return np.take_along_axis(draws, select_best(r[draws])[:, None], axis=-1)[:, 0]
