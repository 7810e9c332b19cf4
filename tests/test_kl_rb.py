"""The Rao-Blackwellised KL estimator (Amini, Vieira, Cotterell, NeurIPS 2025): ``kl_rb``.

On a two-step autoregressive model given as tables, every expectation over y ~ pi_theta is an
exact sum over the 9 sequences, so the estimator's claims are checked without sampling error:
unbiased (E[kl_rb] = E[k1] = KL), variance at most k1's, and the surrogate the trainers
differentiate (detached kl_rb in the score-function part plus its pathwise part) has the exact
gradient of KL(pi_theta || pi_ref).
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


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kl_rb_is_unbiased_with_variance_at_most_k1s(seed):
    lp = _log_softmax_along(_tables(seed), SEQS)
    lq = _log_softmax_along(_tables(100 + seed), SEQS)
    weights = _picked(lp).sum(-1).exp().numpy()  # pi_theta(y) of each of the 9 sequences
    assert weights.sum() == pytest.approx(1.0, abs=1e-12)
    exact = float((weights * (_picked(lp) - _picked(lq)).sum(-1).numpy()).sum())
    rb = kl_rb(lp, lq).numpy()
    k1 = kl_estimates(_picked(lp).numpy(), _picked(lq).numpy())["k1_per_sample"]
    assert exact > 0
    assert float(weights @ rb) == pytest.approx(exact, rel=1e-12)
    assert float(weights @ k1) == pytest.approx(exact, rel=1e-12)
    var = {name: float(weights @ (v - exact) ** 2) for name, v in (("rb", rb), ("k1", k1))}
    assert var["rb"] <= var["k1"]
    assert np.all(rb >= 0)


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
