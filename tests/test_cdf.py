"""The empirical CDF estimator F_hat (vbon.cdf)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vbon.cdf import RewardCDF, empirical_log_cdf

REF = np.array([3.0, 1.0, 2.0, 2.0])  # M = 4, unsorted on purpose


@pytest.mark.parametrize(
    ("t", "add_one_lt", "add_one_le", "plain_lt"),
    [
        (0.0, 1 / 5, 1 / 5, 0.0),  # below all samples: never zero with add-one
        (1.0, 1 / 5, 2 / 5, 0.0),  # equal to the smallest cached value
        (2.0, 2 / 5, 4 / 5, 1 / 4),  # equal to a tied cached value
        (2.5, 4 / 5, 4 / 5, 3 / 4),
        (3.0, 4 / 5, 5 / 5, 3 / 4),  # equal to the largest
        (9.0, 5 / 5, 5 / 5, 4 / 4),  # above all samples: log F_hat = 0
        (-np.inf, 1 / 5, 1 / 5, 0.0),
        (np.inf, 5 / 5, 5 / 5, 1.0),
    ],
)
def test_hand_computed_edges(
    t: float, add_one_lt: float, add_one_le: float, plain_lt: float
) -> None:
    x = np.array([t])
    assert np.exp(empirical_log_cdf(REF, x))[0] == pytest.approx(add_one_lt)
    assert np.exp(empirical_log_cdf(REF, x, strict=False))[0] == pytest.approx(add_one_le)
    assert np.exp(empirical_log_cdf(REF, x, smoothing="none"))[0] == pytest.approx(plain_lt)


def test_range_of_the_add_one_reward() -> None:
    rng = np.random.default_rng(0)
    ref = rng.normal(size=300)
    out = empirical_log_cdf(ref, rng.normal(size=1000) * 3)
    assert out.min() >= -np.log(301) - 1e-12 and out.max() <= 0.0


def test_batched_forms_agree_with_per_prompt_searchsorted() -> None:
    rng = np.random.default_rng(1)
    p, m = 50, 37
    ref = rng.normal(size=(p, m)).round(1)  # rounding creates ties with the queries
    queries = rng.normal(size=(p, 9)).round(1)
    expected = np.stack(
        [
            np.log1p(np.searchsorted(np.sort(ref[i]), queries[i], side="left")) - np.log(m + 1)
            for i in range(p)
        ]
    )
    np.testing.assert_allclose(empirical_log_cdf(ref, queries), expected)
    idx = np.repeat(np.arange(p), 9)
    flat = empirical_log_cdf(ref, queries.ravel(), prompt_index=idx)
    np.testing.assert_allclose(flat, expected.ravel())


def test_ragged_prompts_and_truncation() -> None:
    ref = [np.array([1.0, 2.0]), np.array([5.0, 6.0, 7.0, 8.0]), np.array([0.0])]
    cdf = RewardCDF(ref)
    assert cdf.counts.tolist() == [2, 4, 1]
    got = cdf.count_below(np.array([1.5, 7.5, 0.0]), np.array([0, 1, 2]))
    assert got.tolist() == [1, 3, 0]
    # max_m keeps the first draws in the given order, not the smallest rewards.
    small = RewardCDF([np.array([9.0, 1.0, 5.0])], max_m=2)
    assert small.sorted_rewards(0).tolist() == [1.0, 9.0]


def test_torch_in_torch_out() -> None:
    out = empirical_log_cdf(
        torch.tensor([[1.0, 2.0], [3.0, 4.0]]), torch.tensor([[1.5, 9.0], [0.0, 3.5]])
    )
    assert isinstance(out, torch.Tensor)
    torch.testing.assert_close(torch.exp(out) * 3, torch.tensor([[2.0, 3.0], [1.0, 2.0]]))


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: empirical_log_cdf(np.array([]), np.array([1.0])), "ref_rewards"),
        (
            lambda: empirical_log_cdf(
                [np.array([1.0]), np.array([])], np.array([1.0]), prompt_index=np.array([0])
            ),
            "ref_rewards",
        ),
        (lambda: empirical_log_cdf(np.array([1.0, np.nan]), np.array([1.0])), "ref_rewards"),
        (lambda: empirical_log_cdf(np.array([1.0]), np.array([np.nan])), "rewards"),
        (lambda: empirical_log_cdf(np.ones((3, 2)), np.ones(2)), "rewards"),
        (
            lambda: empirical_log_cdf(np.ones((3, 2)), np.ones(2), prompt_index=np.array([0, 3])),
            "prompt_index",
        ),
        (
            lambda: empirical_log_cdf(np.ones((3, 2)), np.ones(2), prompt_index=np.array([0])),
            "prompt_index",
        ),
        (lambda: empirical_log_cdf(np.ones(2), np.ones(2), smoothing="laplace"), "smoothing"),
        (lambda: RewardCDF(np.array([[2.0, 1.0]]), assume_sorted=True), "ref_rewards"),
        (lambda: RewardCDF(np.ones((2, 3)), max_m=0), "max_m"),
    ],
)
def test_bad_input_names_the_argument(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.integers(-50, 50), min_size=1, max_size=40),
    st.lists(st.integers(-50, 50), min_size=1, max_size=20),
)
def test_invariant_under_increasing_transforms(ref: list[float], queries: list[float]) -> None:
    # Integer rewards keep the transforms strictly increasing in floating point too.
    ref_a, q = np.array(ref, dtype=float), np.array(queries, dtype=float)
    base = empirical_log_cdf(ref_a, q)
    for transform in (lambda x: 2 * x + 10, lambda x: np.exp(x / 10), lambda x: x**3):
        np.testing.assert_array_equal(empirical_log_cdf(transform(ref_a), transform(q)), base)


def test_scalar_prompt_index_broadcasts():
    cdf = RewardCDF(np.array([[0.0, 1.0, 2.0], [5.0, 6.0, 7.0]]))
    grid = np.array([0.5, 1.5, 6.5])
    np.testing.assert_array_equal(
        cdf.log_cdf(grid, prompt_index=1), cdf.log_cdf(grid, prompt_index=np.ones(3, int))
    )
