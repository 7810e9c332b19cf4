"""One input rule for the maths modules (vbon._array): lists, tuples, numpy arrays and torch
tensors of the same numbers give the same results, as numpy or as a tensor."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

from vbon import bon, cdf, evaluate, objectives


def _tuple(a: np.ndarray) -> Any:
    return tuple(_tuple(x) for x in a) if a.ndim else a.item()


KINDS: dict[str, Callable[[np.ndarray], Any]] = {
    "list": lambda a: a.tolist(),
    "tuple": _tuple,
    "numpy": lambda a: a,
    "torch": lambda a: torch.as_tensor(a),
}

P = np.array([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]])
R = np.array([[1.0, 2.0, 2.0], [3.0, 1.0, 2.0]])  # a tie in the first row
REF = np.array([[1.0, 2.0, 3.0, 2.0], [0.5, 0.5, 4.0, 1.0]])
Q = np.array([[2.5, 0.0], [0.5, 9.0]])
LOG_F = np.log(np.array([[0.2, 0.6], [0.4, 1.0]]))
LOG_P = np.log(np.array([[0.1, 0.01], [0.3, 0.05]]))
IDX = np.array([0, 1, 1, 0])
FLAT = np.array([2.5, 0.5, 3.0, 0.0])
MASK = np.array([[True, True, False], [True, False, False]])
TOK_P = np.array([[-1.0, -2.0, -9.0], [-0.5, -3.0, -9.0]])
TOK_R = np.array([[-1.5, -1.0, -9.0], [-0.7, -2.0, -9.0]])

# name -> (function, array arguments, keyword arguments that are not arrays)
CASES: dict[str, tuple[Callable[..., Any], tuple[np.ndarray, ...], dict[str, Any]]] = {
    "bon.bon_pmf": (bon.bon_pmf, (P, R), {"n": 4}),
    "bon.bon_log_pmf": (bon.bon_log_pmf, (np.log(P), R), {"n": 4}),
    "bon.kl_bon_ref": (bon.kl_bon_ref, (P, R), {"n": 4}),
    "bon.bon_win_rate": (bon.bon_win_rate, (P, R), {"n": 4}),
    "bon.ref_cdf": (bon.ref_cdf, (P, R), {}),
    "bon.bon_lower_bound": (bon.bon_lower_bound, (P, R), {"n": 4}),
    "bon.bound_optimum_pmf": (bon.bound_optimum_pmf, (P, R), {"n": 4}),
    "bon.select_best": (bon.select_best, (R,), {}),
    "cdf.empirical_log_cdf": (cdf.empirical_log_cdf, (REF, Q), {}),
    "cdf.empirical_log_cdf one prompt": (cdf.empirical_log_cdf, (REF[0], Q[0]), {}),
    "cdf.RewardCDF.log_cdf": (lambda r, q, i: cdf.RewardCDF(r).log_cdf(q, i), (REF, FLAT, IDX), {}),
    "cdf.RewardCDF.count_below": (
        lambda r, q, i: cdf.RewardCDF(r).count_below(q, i),
        (REF, FLAT, IDX),
        {},
    ),
    "objectives.vbon_reward": (objectives.vbon_reward, (LOG_F,), {"n": 8}),
    "objectives.vbon_reward exact": (
        lambda f, p: objectives.vbon_reward(f, 8, "exact", p),
        (LOG_F, LOG_P),
        {},
    ),
    "objectives.log_bon_ratio": (objectives.log_bon_ratio, (LOG_F, LOG_P), {"n": 8}),
    "objectives.kl_rl_reward": (objectives.kl_rl_reward, (R,), {}),
    "objectives.kl_rl_optimum_pmf": (objectives.kl_rl_optimum_pmf, (P, R), {"beta": 0.5}),
    "evaluate.win_rates": (evaluate.win_rates, (Q, REF), {}),
    "evaluate.win_rates flat": (evaluate.win_rates, (FLAT, REF, IDX), {}),
    "evaluate.win_rates first": (evaluate.win_rates, (Q, REF), {"method": "first"}),
    "evaluate.win_rate": (lambda q, r, i: evaluate.win_rate(q, r, i).mean, (FLAT, REF, IDX), {}),
    "evaluate.mean_se": (lambda v, i: evaluate.mean_se(v, i).se, (FLAT, IDX), {}),
    "evaluate.kl_estimates": (
        lambda a, b, m: evaluate.kl_estimates(a, b, m)["k3"].mean,
        (TOK_P, TOK_R, MASK),
        {},
    ),
    "evaluate.pareto_frontier": (evaluate.pareto_frontier, (FLAT, FLAT**2), {}),
    "evaluate.bon_evaluate": (
        lambda r, lp, ref: evaluate.bon_evaluate(r, lp, ref, [1, 2]).to_numpy(),
        (REF, np.log(np.full(REF.shape, 0.01)), REF),
        {},
    ),
}


# Results that are tables or scalars, not arrays following an argument.
NOT_ARRAYS = {"evaluate.bon_evaluate"}


def _numpy(x: Any) -> Any:
    return x.cpu().numpy() if isinstance(x, torch.Tensor) else x


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("case", list(CASES))
def test_every_input_kind_gives_the_numpy_result(case: str, kind: str) -> None:
    fn, arrays, kwargs = CASES[case]
    expected = fn(*arrays, **kwargs)
    got = fn(*(KINDS[kind](a) for a in arrays), **kwargs)
    np.testing.assert_allclose(_numpy(got), _numpy(expected), rtol=1e-12, atol=1e-15)
    if case not in NOT_ARRAYS and isinstance(expected, np.ndarray) and expected.ndim:
        # Array results follow their first argument: a tensor in, a tensor out; else numpy.
        assert isinstance(got, torch.Tensor) == (kind == "torch"), type(got)


@pytest.mark.parametrize("kind", ["list", "tuple", "numpy", "torch"])
def test_a_flat_list_of_references_is_one_prompt(kind: str) -> None:
    ref = KINDS[kind](np.array([1.0, 2.0, 3.0]))
    got = _numpy(cdf.empirical_log_cdf(ref, np.array([2.5])))
    np.testing.assert_allclose(got, [np.log(3 / 4)], rtol=1e-15)
    assert cdf.RewardCDF(ref).num_prompts == 1


def test_ragged_lists_are_prompts_of_their_own_lengths() -> None:
    for ragged in (
        [[1.0, 2.0, 3.0], [0.0, 1.0]],
        [np.array([1.0, 2.0, 3.0]), torch.tensor([0.0, 1.0])],
    ):
        table = cdf.RewardCDF(ragged)
        assert table.counts.tolist() == [3, 2]
        got = cdf.empirical_log_cdf(ragged, [2.5, 0.5], prompt_index=[0, 1])
        np.testing.assert_allclose(got, np.log([3 / 4, 2 / 3]), rtol=1e-15)


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: cdf.RewardCDF([1.0, 2.0]).log_cdf([1.5], [0.0]), "prompt_index"),
        (lambda: cdf.RewardCDF([1.0, 2.0]).log_cdf([1.5], [True]), "prompt_index"),
        (lambda: evaluate.mean_se([1.0, 2.0], [0.5, 1.5]), "prompt_index"),
        (lambda: cdf.empirical_log_cdf(["a", "b"], [1.0]), "ref_rewards"),
        (lambda: objectives.kl_rl_optimum_pmf([0.5, 0.5], [0.0, 1.0], "0.1"), "beta"),
        (lambda: objectives.n_from_beta(True), "beta"),
    ],
)
def test_bad_kinds_name_the_argument(call: Callable[[], Any], name: str) -> None:
    with pytest.raises(ValueError, match=rf"^{name}:"):
        call()
