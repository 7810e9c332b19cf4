"""The Rao-Blackwellised KL estimator (Amini, Vieira, Cotterell, NeurIPS 2025): ``kl_rb``.

On a two-step autoregressive model given as tables, every expectation over y ~ pi_theta is an
exact sum over the 9 sequences, so the estimator's claims are checked without sampling error:
unbiased (E[kl_rb] = E[k1] = KL); each position's term is k1's term averaged over the next
token given the prefix, so its variance is at most k1's term's (Rao-Blackwell, position by
position); the sum along a sequence has no such guarantee (k1's terms can cancel where kl_rb's
cannot: a two-step counterexample); and the surrogate the trainers differentiate (detached
kl_rb in the score-function part plus its pathwise part) has the exact gradient of
KL(pi_theta || pi_ref).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from vbon.evaluate import kl_estimates, kl_rb, next_token_kl

V = 3


def _tables(seed: int, requires_grad: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits of y_1 (V,) and of y_2 given y_1 (V, V)."""
    g = torch.Generator().manual_seed(seed)
    first = torch.randn(V, generator=g, dtype=torch.float64)
    second = torch.randn(V, V, generator=g, dtype=torch.float64)
    return first.requires_grad_(requires_grad), second.requires_grad_(requires_grad)


def _log_softmax_along(tables, seqs: torch.Tensor) -> torch.Tensor:
    """(S, 2, V) next-token log-softmax at both positions of each sequence."""
    first, second = tables
    at1 = torch.log_softmax(first, -1).expand(len(seqs), V)
    at2 = torch.log_softmax(second, -1)[seqs[:, 0]]
    return torch.stack([at1, at2], dim=1)


SEQS = torch.tensor(list(itertools.product(range(V), repeat=2)))


def _picked(full: torch.Tensor) -> torch.Tensor:
    return full.gather(-1, SEQS.unsqueeze(-1)).squeeze(-1)


def _moments(lp: torch.Tensor, lq: torch.Tensor) -> dict[str, np.ndarray]:
    """Exact weights pi_theta(y) of the 9 sequences, per-position k1 and kl_rb terms (9, 2)."""
    weights = _picked(lp).sum(-1).exp().numpy()
    k1 = (_picked(lp) - _picked(lq)).numpy()
    rb = (lp.exp() * (lp - lq)).sum(-1).numpy()
    return {"w": weights, "k1": k1, "rb": rb}


def _var(w: np.ndarray, v: np.ndarray) -> float:
    return float(w @ (v - w @ v) ** 2)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kl_rb_is_unbiased_and_rao_blackwellises_each_position(seed):
    lp = _log_softmax_along(_tables(seed), SEQS)
    lq = _log_softmax_along(_tables(100 + seed), SEQS)
    m = _moments(lp, lq)
    w = m["w"]
    assert w.sum() == pytest.approx(1.0, abs=1e-12)
    exact = float(w @ m["k1"].sum(-1))
    rb = kl_rb(lp, lq).numpy()
    k1 = kl_estimates(_picked(lp).numpy(), _picked(lq).numpy())["k1_per_sample"]
    assert exact > 0
    assert float(w @ rb) == pytest.approx(exact, rel=1e-12)
    assert float(w @ k1) == pytest.approx(exact, rel=1e-12)
    for t in range(2):  # Var(E[k1_t | y_<t]) <= Var(k1_t): the theorem, position by position
        assert _var(w, m["rb"][:, t]) <= _var(w, m["k1"][:, t]) + 1e-15
    assert np.all(rb >= 0)


def test_summed_kl_rb_can_be_noisier_than_k1():
    """Two steps: the first token is a coin for pi_theta (1/2, 1/2) against pi_ref's
    (0.6, 0.4); after token 0 pi_theta is sure of a token pi_ref gives e^-5, after token 1 the
    two agree. k1's first term is negative exactly where its second is large, and the two
    partly cancel; kl_rb's first term is a constant, so nothing cancels. Both are unbiased,
    and kl_rb's variance is the larger (6.25 against 5.28, by hand)."""
    big = 60.0  # a logit gap that leaves the other tokens about e^-60
    policy_first = torch.tensor([0.0, 0.0, -big], dtype=torch.float64)
    ref_first = torch.log(torch.tensor([0.6, 0.4, 1e-26], dtype=torch.float64))
    policy_second = torch.zeros(V, V, dtype=torch.float64)
    policy_second[0] = torch.tensor([big, 0.0, 0.0])
    ref_second = torch.zeros(V, V, dtype=torch.float64)
    rest = (1.0 - np.exp(-5.0)) / 2
    ref_second[0] = torch.log(torch.tensor([np.exp(-5.0), rest, rest], dtype=torch.float64))
    lp = _log_softmax_along((policy_first, policy_second), SEQS)
    lq = _log_softmax_along((ref_first, ref_second), SEQS)
    m = _moments(lp, lq)
    w, k1, rb = m["w"], m["k1"].sum(-1), kl_rb(lp, lq).numpy()
    assert float(w @ rb) == pytest.approx(float(w @ k1), rel=1e-9)
    var_rb, var_k1 = _var(w, rb), _var(w, k1)
    print(f"Var(kl_rb) {var_rb:.3f} against Var(k1) {var_k1:.3f}")
    assert var_rb > 1.1 * var_k1


def test_kl_rb_takes_numpy_and_a_mask():
    lp = _log_softmax_along(_tables(3), SEQS)
    lq = _log_softmax_along(_tables(4), SEQS)
    mask = np.ones((len(SEQS), 2), dtype=bool)
    mask[::2, 1] = False
    ours = kl_rb(lp.numpy(), lq.numpy(), mask)
    per_token = (lp.exp() * (lp - lq)).sum(-1).numpy()
    np.testing.assert_allclose(ours, (per_token * mask).sum(-1), rtol=1e-12)
    np.testing.assert_allclose(kl_rb(lp, lq, torch.as_tensor(mask)).numpy(), ours, rtol=1e-12)
    assert next_token_kl(lp[0, 0], lp[0, 0]).item() == pytest.approx(0.0, abs=1e-15)
    with pytest.raises(ValueError, match="ref_logprobs"):
        kl_rb(lp, lq[:, :1])
    with pytest.raises(ValueError, match="mask"):
        kl_rb(lp, lq, mask[:, :1])


def test_the_trainers_rb_surrogate_has_the_exact_kl_gradient():
    """rloo's kl_estimator="rb": -beta (detached kl_rb) inside the return times log pi, plus
    beta kl_rb with its gradient. As an exact expectation over y ~ pi_theta it is grad KL."""
    policy = _tables(5, requires_grad=True)
    ref = _tables(6)
    lp = _log_softmax_along(policy, SEQS)
    lq = _log_softmax_along(ref, SEQS)
    log_p = _picked(lp).sum(-1)
    weights = log_p.detach().exp()
    rb = kl_rb(lp, lq)
    surrogate = (weights * (rb.detach() * log_p + rb)).sum()
    got = torch.autograd.grad(surrogate, policy, retain_graph=True)
    exact_kl = (log_p.exp() * (log_p - _picked(lq).sum(-1))).sum()
    want = torch.autograd.grad(exact_kl, policy, retain_graph=True)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)
    # Without its pathwise part the estimator's gradient is wrong: the part is needed.
    partial = torch.autograd.grad((weights * rb.detach() * log_p).sum(), policy)
    assert not torch.allclose(partial[1], want[1])
