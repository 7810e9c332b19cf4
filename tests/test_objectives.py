"""vBoN rewards, beta <-> N, and the KL-RL comparison (vbon.objectives)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vbon import bon
from vbon.cdf import empirical_log_cdf
from vbon.objectives import (
    beta_from_n,
    kl_rl_optimum_pmf,
    log_bon_ratio,
    n_from_beta,
    vbon_reward,
)


def test_beta_n_round_trip() -> None:
    for n in (2, 3, 8, 201, 10_000):
        assert n_from_beta(beta_from_n(n)) == n
    assert beta_from_n(201) == pytest.approx(0.005)
    assert n_from_beta(0.005) == 201
    with pytest.raises(ValueError, match="beta"):
        n_from_beta(0.3)
    assert n_from_beta(0.3, rounding="nearest") == 4
    # The authors' int(1/beta) + 1 truncates: 1/0.3 = 3.33 -> 4, and 1/0.07 = 14.29 -> 15.
    assert n_from_beta(0.3, rounding="authors") == 4
    assert n_from_beta(0.07, rounding="authors") == 15


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: beta_from_n(1), "n"),
        (lambda: n_from_beta(0.0), "beta"),
        (lambda: n_from_beta(-1.0), "beta"),
        (lambda: n_from_beta(0.1, rounding="floor"), "rounding"),
        (lambda: vbon_reward(np.array([-1.0]), 1), "n"),
        (lambda: vbon_reward(np.array([-1.0]), 4, bound="exact"), "ref_logprob"),
        (lambda: vbon_reward(np.array([-1.0]), 4, bound="upper"), "bound"),
        (lambda: vbon_reward(np.array([0.5]), 4), "log_cdf"),
        (lambda: vbon_reward(np.array([-1.0]), 4, "exact", np.array([-1.0, -2.0])), "ref_logprob"),
        (lambda: vbon_reward(np.array([-1.0]), 4, scaling="trlx"), "scaling"),
        (lambda: kl_rl_optimum_pmf([0.5, 0.5], [0.0, 1.0], 0.0), "beta"),
    ],
)
def test_bad_input_names_the_argument(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()


def test_exact_ratio_equals_enumerated_bon() -> None:
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(9))
    r = rng.normal(size=9)
    with np.errstate(divide="ignore"):  # the lowest item has F = 0
        log_f = np.log(bon.ref_cdf(p, r))
    for n in (1, 2, 7, 64):
        expected = bon.bon_log_pmf(np.log(p), r, n) - np.log(p)
        np.testing.assert_allclose(log_bon_ratio(log_f, np.log(p), n), expected, atol=1e-12)


def test_exact_reward_scaling_and_its_bound() -> None:
    log_f = np.array([-2.0, -0.5, -1e-3])
    ref_lp = np.array([-40.0, -80.0, -120.0])  # sequence log-probs: pi_ref << F
    n = 16
    exact = vbon_reward(log_f, n, "exact", ref_lp)
    # For pi_ref << F the exact reward is (log N)/(N-1) + log F: the bound plus a constant.
    np.testing.assert_allclose(exact, np.log(n) / (n - 1) + log_f, atol=1e-12)
    authors = vbon_reward(log_f, n, "exact", ref_lp, scaling="authors")
    np.testing.assert_allclose(authors, exact * (n - 1) / n)
    np.testing.assert_allclose(vbon_reward(log_f, n, "L"), log_f)
    np.testing.assert_allclose(vbon_reward(log_f, n, "L", scaling="authors"), log_f)


def test_exact_handles_unsmoothed_zero_cdf_and_large_n() -> None:
    out = log_bon_ratio(np.array([-np.inf, -1.0]), np.array([-3.0, -5.0]), 5)
    # F = 0: only i = N survives, pi_ref^(N-1).
    assert out[0] == pytest.approx(4 * -3.0)
    big = log_bon_ratio(np.full(3, -0.01), np.full(3, -30.0), 10_000)
    assert np.isfinite(big).all()


def test_torch_in_torch_out() -> None:
    out = vbon_reward(torch.tensor([-1.0, -0.5]), 8, "exact", torch.tensor([-50.0, -60.0]))
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(-50, 50), min_size=2, max_size=30),
    st.lists(st.integers(-50, 50), min_size=1, max_size=10),
    st.integers(2, 50),
)
def test_vbon_rewards_invariant_under_increasing_transforms(ref, queries, n) -> None:
    # Integer rewards keep the transforms strictly increasing in floating point too.
    ref_a, q = np.array(ref, dtype=float), np.array(queries, dtype=float)
    lp = np.full(len(q), -20.0)
    for bound in ("L", "exact"):
        base = vbon_reward(empirical_log_cdf(ref_a, q), n, bound, lp)
        moved = vbon_reward(
            empirical_log_cdf(np.exp(ref_a / 10) * 5, np.exp(q / 10) * 5), n, bound, lp
        )
        np.testing.assert_array_equal(moved, base)


def test_kl_rl_optimum_moves_with_reward_scale_but_vbon_does_not() -> None:
    p = np.array([0.4, 0.3, 0.2, 0.1])
    r = np.array([0.0, 1.0, 2.0, 3.0])
    a = kl_rl_optimum_pmf(p, r, 0.5)
    b = kl_rl_optimum_pmf(p, 10 * r, 0.5)
    assert np.abs(a - b).max() > 0.1
    np.testing.assert_allclose(kl_rl_optimum_pmf(p, 10 * r, 5.0), a)
    np.testing.assert_allclose(bon.bound_optimum_pmf(p, 10 * r, 4), bon.bound_optimum_pmf(p, r, 4))
