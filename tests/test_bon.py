"""Exact BoN maths (vbon.bon) against brute force, Monte Carlo and the paper's inequalities."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vbon import bon


def brute_force_bon(p: np.ndarray, r: np.ndarray, n: int) -> np.ndarray:
    """Enumerate all K^N draws; the first maximal draw wins."""
    out = np.zeros(len(p))
    for draw in itertools.product(range(len(p)), repeat=n):
        winner = draw[int(np.argmax(r[list(draw)]))]
        out[winner] += np.prod(p[list(draw)])
    return out


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_pmf_equals_enumeration(n: int, ties: bool) -> None:
    rng = np.random.default_rng(100 * n + ties)
    for _ in range(5):
        k = int(rng.integers(2, 6))
        p = rng.dirichlet(np.ones(k))
        r = rng.integers(0, 3, k).astype(float) if ties else rng.normal(size=k)
        expected = brute_force_bon(p, r, n)
        np.testing.assert_allclose(bon.bon_pmf(p, r, n), expected, rtol=0, atol=1e-12)
        np.testing.assert_allclose(
            np.exp(bon.bon_log_pmf(np.log(p), r, n)), expected, rtol=0, atol=1e-12
        )


def test_pmf_matches_monte_carlo_with_ties() -> None:
    p = np.array([0.1, 0.25, 0.15, 0.3, 0.2])
    r = np.array([0.0, 1.0, 1.0, 2.0, 0.5])
    n, size = 4, 200_000
    draws = bon.sample_bon(p, r, n, size, rng=0)
    freq = np.bincount(draws, minlength=len(p)) / size
    exact = bon.bon_pmf(p, r, n)
    se = np.sqrt(exact * (1 - exact) / size)
    assert np.all(np.abs(freq - exact) < 4 * se + 1e-12), (freq, exact)


def test_tie_rule_splits_class_mass_by_ref_probability() -> None:
    p = np.array([0.2, 0.3, 0.5])
    r = np.array([1.0, 1.0, 0.0])
    out = bon.bon_pmf(p, r, 3)
    class_mass = 1 - 0.5**3
    np.testing.assert_allclose(out[:2], class_mass * np.array([0.4, 0.6]), atol=1e-15)


def test_injective_formula_and_known_values() -> None:
    p = np.array([0.5, 0.3, 0.2])
    r = np.array([1.0, 2.0, 3.0])
    np.testing.assert_allclose(bon.bon_pmf(p, r, 2), [0.25, 0.39, 0.36], atol=1e-15)
    assert bon.bon_win_rate(p, r, 1) == pytest.approx(0.5)
    assert bon.kl_bon_ref(p, r, 1) == pytest.approx(0.0, abs=1e-15)


def test_batched_rows_equal_single_rows() -> None:
    rng = np.random.default_rng(3)
    p = rng.dirichlet(np.ones(6), size=4)
    r = rng.integers(0, 4, size=(4, 6)).astype(float)
    batched = bon.bon_pmf(p, r, 3)
    for i in range(4):
        np.testing.assert_allclose(batched[i], bon.bon_pmf(p[i], r[i], 3), atol=1e-15)
    np.testing.assert_allclose(
        bon.kl_bon_ref(p, r, 3), [bon.kl_bon_ref(p[i], r[i], 3) for i in range(4)]
    )


def test_torch_in_torch_out() -> None:
    p = torch.tensor([0.5, 0.5], dtype=torch.float32)
    out = bon.bon_pmf(p, torch.tensor([0.0, 1.0]), 2)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    torch.testing.assert_close(out, torch.tensor([0.25, 0.75]))
    assert bon.select_best(torch.tensor([[1.0, 3.0, 3.0]])).tolist() == [1]


def test_large_support_and_large_n_are_stable() -> None:
    rng = np.random.default_rng(0)
    k = 200_000
    p = rng.dirichlet(np.ones(k))
    r = rng.normal(size=k)
    for n in (2, 256, 10_000):
        out = bon.bon_pmf(p, r, n)
        assert np.isfinite(out).all() and (out >= 0).all()
        assert out.sum() == pytest.approx(1.0, abs=1e-9)
        log_out = bon.bon_log_pmf(np.log(p), r, n)
        np.testing.assert_allclose(np.exp(log_out), out, rtol=1e-9, atol=1e-300)
    # With almost no atoms the KL approaches the continuous-limit bound from below.
    assert bon.kl_bon_ref(p, r, 16) == pytest.approx(bon.kl_bon_bound(16), abs=1e-3)
    assert bon.bon_win_rate(p, r, 16) == pytest.approx(16 / 17, abs=1e-4)


def test_tiny_probabilities_in_log_space() -> None:
    # A sequence-level support: log-probs far below float64's smallest probability.
    lp = np.array([np.log(0.6), np.log(0.4) - 1e-12, -2000.0, -3000.0])
    lp[1] = np.log1p(-0.6)  # keep the total exactly 1 in probability
    r = np.array([0.0, 2.0, 1.0, 3.0])
    out = bon.bon_log_pmf(lp, r, 8)
    assert np.isfinite(out).all()
    # The underflowing items take the exact limit N F^(N-1) pi_ref(y).
    assert out[2] == pytest.approx(np.log(8) + 7 * np.log(0.6) - 2000.0)
    assert out[3] == pytest.approx(np.log(8) - 3000.0)


def test_bounds() -> None:
    assert bon.kl_bon_bound(1) == pytest.approx(0.0, abs=1e-15)
    assert bon.kl_bon_bound(4) == pytest.approx(np.log(4) - 0.75)
    assert bon.win_rate_bound(3) == 0.75


def test_ties_make_kl_far_below_the_bound() -> None:
    p = np.array([0.9, 0.1])
    r = np.array([0.0, 1.0])
    n = 64
    # Two classes: pi_BoN puts 1 - 0.9^64 on the top item.
    top = 1 - 0.9**n
    exact = top * np.log(top / 0.1) + (1 - top) * np.log((1 - top) / 0.9)
    assert bon.kl_bon_ref(p, r, n) == pytest.approx(exact, rel=1e-12)
    # KL to pi_ref can never exceed log(1/0.1) here, far below log N - (N-1)/N.
    assert bon.kl_bon_ref(p, r, n) < np.log(10) < 0.75 * bon.kl_bon_bound(n)


def test_select_best_first_maximum_and_errors() -> None:
    r = np.array([[1.0, 5.0, 5.0], [2.0, 0.0, 2.0]])
    assert bon.select_best(r).tolist() == [1, 0]
    with pytest.raises(ValueError, match="rewards"):
        bon.select_best(np.array([1.0, np.nan]))


def test_lower_bound_optimum() -> None:
    p = np.array([0.2, 0.3, 0.5])
    r = np.array([0.0, 1.0, 2.0])
    f = bon.ref_cdf(p, r)
    np.testing.assert_allclose(f, [0.0, 0.2, 0.5])
    np.testing.assert_allclose(bon.ref_cdf(p, r, strict=False), [0.2, 0.5, 1.0])
    opt = bon.bound_optimum_pmf(p, r, 3)
    expected = p * f**2 / (p * f**2).sum()
    np.testing.assert_allclose(opt, expected)
    np.testing.assert_allclose(bon.bound_optimum_pmf(p, r, 1), p)
    np.testing.assert_allclose(bon.bon_lower_bound(p, r, 3), 3 * f**2 * p)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: bon.bon_pmf([0.5, 0.5], [0.0, 1.0], 0), "n"),
        (lambda: bon.bon_pmf([0.5, 0.5], [0.0, 1.0], 2.5), "n"),
        (lambda: bon.bon_pmf([0.5, 0.4], [0.0, 1.0], 2), "ref_probs"),
        (lambda: bon.bon_pmf([1.5, -0.5], [0.0, 1.0], 2), "ref_probs"),
        (lambda: bon.bon_pmf([0.5, 0.5], [0.0, 1.0, 2.0], 2), "rewards"),
        (lambda: bon.bon_pmf([0.5, 0.5], [0.0, np.nan], 2), "rewards"),
        (lambda: bon.bon_pmf([], [], 2), "ref_probs"),
        (lambda: bon.bon_log_pmf([0.1, -1.0], [0.0, 1.0], 2), "ref_logprobs"),
        (lambda: bon.bound_optimum_pmf([0.5, 0.5], [1.0, 1.0], 3), "rewards"),
    ],
)
def test_bad_input_names_the_argument(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()


support = st.integers(min_value=1, max_value=8).flatmap(
    lambda k: st.tuples(
        st.lists(st.floats(0.01, 1.0), min_size=k, max_size=k),
        st.lists(st.integers(-3, 3), min_size=k, max_size=k),
        st.integers(1, 64),
    )
)


@settings(max_examples=200, deadline=None)
@given(support)
def test_properties(case) -> None:
    weights, int_rewards, n = case
    p = np.array(weights) / np.sum(weights)
    r = np.array(int_rewards, dtype=float)
    pmf = bon.bon_pmf(p, r, n)
    assert pmf.sum() == pytest.approx(1.0, abs=1e-12)
    assert bon.kl_bon_ref(p, r, n) <= bon.kl_bon_bound(n) + 1e-12
    assert bon.bon_win_rate(p, r, n) <= n / (n + 1) + 1e-12
    assert np.all(pmf >= bon.bon_lower_bound(p, r, n) * (1 - 1e-12) - 1e-300)
    # Monotone transforms leave pi_BoN unchanged (only the order of rewards matters).
    np.testing.assert_allclose(bon.bon_pmf(p, np.exp(r) * 3 - 7, n), pmf, atol=1e-14)


def check_sorted_order(r: np.ndarray) -> None:
    """bon._sorted_order agrees with a plain argsort: a permutation that sorts each row, and tie
    classes starting exactly where the sorted reward changes."""
    r = np.atleast_2d(r)
    order, new_class = bon._sorted_order(r)
    assert np.array_equal(np.sort(order, axis=-1), np.broadcast_to(np.arange(r.shape[1]), r.shape))
    r_sorted = np.take_along_axis(r, order, axis=-1)
    assert (r_sorted[:, 1:] >= r_sorted[:, :-1]).all()
    expected = np.ones(r.shape, dtype=bool)
    expected[:, 1:] = r_sorted[:, 1:] != r_sorted[:, :-1]
    if expected.all():
        assert new_class is None
    else:
        assert np.array_equal(new_class, expected)


def test_sorted_order_packed_keys_edge_cases() -> None:
    """The packed-key sort (columns in the low mantissa bits) against argsort where it is
    hardest: rewards equal in their high bits but distinct, exact ties, signed zeros, infinities,
    subnormals, several rows, tiny supports."""
    rng = np.random.default_rng(0)
    near = 1.0 + rng.integers(0, 5, 4000) * 2e-16 + rng.integers(0, 3, 4000)  # 1-ulp apart
    check_sorted_order(near)
    check_sorted_order(-near)
    check_sorted_order(rng.normal(size=(3, 10**5)))  # continuous: ~30 runs per 1e6, few here
    check_sorted_order(np.round(rng.normal(size=(4, 5000)), 1))  # many ties: the dense path
    check_sorted_order(np.array([0.0, -0.0, 1.0, -0.0, 0.0]))  # -0.0 == 0.0 ties
    check_sorted_order(np.array([np.inf, 1.0, -np.inf, 2.0]))  # inf at column 0 and later
    check_sorted_order(np.array([np.inf, np.inf, 1.0, -np.inf, -np.inf]))
    check_sorted_order(np.array([5e-324, 0.0, 1e-320, 5e-324, -5e-324]))  # subnormals
    check_sorted_order(np.array([3.0]))
    # Mixed runs and ties in one run, in several rows.
    mixed = np.tile(np.array([1.0, 1.0 + 2e-16, 1.0, 1.0 + 4e-16, 1.0 + 2e-16]), (3, 1))
    check_sorted_order(mixed * rng.choice([1.0, -1.0], size=(3, 1)))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.floats(allow_nan=False, width=64) | st.sampled_from([0.0, -0.0, 1.0, 1.0 + 2**-52]),
        min_size=1,
        max_size=300,
    )
)
def test_sorted_order_property(values) -> None:
    check_sorted_order(np.array(values))


def test_packed_sort_gives_the_same_pmf_as_argsort(monkeypatch) -> None:
    """The fast sort path and the argsort path give the same pi_BoN, with and without ties."""
    rng = np.random.default_rng(1)
    p = rng.dirichlet(np.ones(20000))
    for r in (rng.normal(size=20000), np.round(rng.normal(size=20000), 2)):
        fast = bon.bon_pmf(p, r, 16)
        with monkeypatch.context() as m:
            m.setattr(bon, "_sorted_order", bon._argsort_classes)
            reference = bon.bon_pmf(p, r, 16)
        np.testing.assert_allclose(fast, reference, rtol=1e-13, atol=1e-300)


def _all_results(p: np.ndarray, r: np.ndarray, n: int) -> list[np.ndarray]:
    """Every public result that goes through the sort and the scratch buffers."""
    return [
        np.asarray(x)
        for x in (
            bon.bon_pmf(p, r, n),
            bon.bon_log_pmf(np.log(p), r, n),
            bon.kl_bon_ref(p, r, n),
            bon.bon_win_rate(p, r, n),
            bon.ref_cdf(p, r),
            bon.bon_lower_bound(p, r, n),
            bon.bound_optimum_pmf(p, r, n),
        )
    ]


def test_results_never_share_the_scratch_buffers(monkeypatch) -> None:
    """The temporaries live in per-thread buffers reused from call to call: a result must not be
    one of them (a later call would overwrite it), and results must not depend on whether a
    buffer was reused, newly grown or (above the size limit) not kept at all."""
    rng = np.random.default_rng(5)
    k = 3 * bon._SCRATCH_MIN_ITEMS
    inputs = [
        (rng.dirichlet(np.ones(k), size=2), rng.normal(size=(2, k))),  # injective
        (rng.dirichlet(np.ones(k), size=2), np.round(rng.normal(size=(2, k)), 1)),  # ties
    ]
    first = [_all_results(p, r, 16) for p, r in inputs]
    snapshot = [[a.copy() for a in results] for results in first]
    # Different values of the same shapes, then other shapes: every buffer gets rewritten.
    _all_results(rng.dirichlet(np.ones(k), size=2), rng.normal(size=(2, k)), 16)
    _all_results(rng.dirichlet(np.ones(2 * k)), rng.normal(size=2 * k), 3)
    for results, copies in zip(first, snapshot, strict=True):
        for a, b in zip(results, copies, strict=True):
            np.testing.assert_array_equal(a, b)
    torch_out = bon.bon_pmf(torch.from_numpy(inputs[0][0]), torch.from_numpy(inputs[0][1]), 16)
    kept = torch_out.clone()
    _all_results(*inputs[1], 16)
    assert torch.equal(torch_out, kept)
    # The same results with no buffer kept (every temporary fresh).
    with monkeypatch.context() as m:
        m.setattr(bon, "_SCRATCH_MAX_ITEMS", 0)
        m.setattr(bon, "_scratch", bon._Scratch())
        for (p, r), expected in zip(inputs, snapshot, strict=True):
            for a, b in zip(_all_results(p, r, 16), expected, strict=True):
                np.testing.assert_array_equal(a, b)
        assert not bon._scratch.buffers and bon._scratch.arange.size == 0


def test_scratch_buffers_are_per_thread() -> None:
    """Concurrent calls from several threads give the serial results."""
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(6)
    k = 4 * bon._SCRATCH_MIN_ITEMS
    jobs = [(rng.dirichlet(np.ones(k)), rng.normal(size=k), n) for n in (2, 16, 256, 1000) * 3]
    serial = [bon.bon_pmf(*job) for job in jobs]
    with ThreadPoolExecutor(4) as pool:
        for _ in range(3):
            concurrent = list(pool.map(lambda job: bon.bon_pmf(*job), jobs))
            for a, b in zip(concurrent, serial, strict=True):
                np.testing.assert_array_equal(a, b)


@pytest.mark.skipif(
    np.finfo(np.longdouble).eps > 1e-18, reason="needs 80-bit (or wider) long double"
)
def test_pmf_against_extended_precision() -> None:
    """bon_pmf (cumulative products in float64) against the same maths in long double, where
    F_le^N comes straight from exp(N log F_le): relative error far below 1e-10 on every item that
    float64 can represent, for N up to 1e4 on a support of 1e5 items."""
    rng = np.random.default_rng(3)
    k = 100_000
    p = rng.dirichlet(np.ones(k))
    r = rng.normal(size=k)
    order = np.argsort(r)
    ps = p[order].astype(np.longdouble)
    ps /= ps.sum()
    f_le = np.cumsum(ps)
    for n in (2, 16, 256, 10_000):
        with np.errstate(divide="ignore"):
            pi = np.exp(n * np.log(f_le)) * -np.expm1(n * np.log1p(-ps / f_le))
        expected = np.empty(k, dtype=np.longdouble)
        expected[order] = pi
        got = bon.bon_pmf(p, r, n)
        shown = expected > 1e-300
        rel = np.abs(got[shown] - expected[shown]) / expected[shown]
        print(f"N={n}: max relative error {float(rel.max()):.1e} over {shown.sum()} items")
        assert rel.max() < 1e-10
        assert (got[~shown] < 1e-290).all()
