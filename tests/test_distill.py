"""BoNBoN's and J-BOND's building blocks, checked against their papers' numbers and by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vbon.objectives import bonbon_beta, bonbon_loss
from vbon.train import TrainConfig
from vbon.train.bond import JBOND_PENALTY, jbond_reward
from vbon.train.setup import bonbon_pairs


def test_bonbon_beta_is_the_authors_value_and_its_margin_is_bons_mean_gap():
    # The authors' README trains n = 8 with loss.beta=0.0275482094.
    assert bonbon_beta(8) == pytest.approx(0.0275482094, abs=5e-11)
    assert bonbon_beta(2) == pytest.approx(0.5)
    # Under pi_BoN(n) the log-ratio is log n + (n-1) log F with F ~ Beta(n, 1) for the best
    # and Beta(1, n) for the worst of n: E[gap] = (n-1) (H_n - 1/n) = (n-1) H_{n-1} = 1/(2 beta*).
    rng = np.random.default_rng(0)
    for n in (2, 4, 8):
        u = rng.random((400_000, n))
        gap = (n - 1) * (np.log(u.max(1)) - np.log(u.min(1)))
        se = gap.std() / np.sqrt(len(gap))
        assert abs(gap.mean() - 1 / (2 * bonbon_beta(n))) < 4 * se


def test_bonbon_loss_by_hand():
    best, worst, logp = (
        torch.tensor([3.0, -1.0]),
        torch.tensor([-2.0, 0.5]),
        torch.tensor([-7.0, -4.0]),
    )
    margin = 1 / (2 * bonbon_beta(4))
    want = 0.01 * -logp + 0.99 * ((best - worst) - margin) ** 2
    torch.testing.assert_close(bonbon_loss(best, worst, logp, 4, alpha=0.01), want)
    with pytest.raises(ValueError, match="bonbon_alpha"):
        bonbon_loss(best, worst, logp, 4, alpha=1.5)


def test_bonbon_pairs_take_best_and_worst_per_group_and_skip_ties():
    texts = [["a", "b", "c", "d"], ["e", "f", "g", "h"]]
    rewards = np.array([[1.0, 3.0, 0.0, 2.0], [5.0, 5.0, 1.0, 1.0]])
    ended = np.ones((2, 4), bool)
    pairs = bonbon_pairs(texts, rewards, ended, n=2, groups=2)
    got = [
        (p.prompt_index, p.best.text, p.worst.text, p.best.reward, p.worst.reward) for p in pairs
    ]
    # Prompt 1's groups tie (5, 5) and (1, 1): no preference, no pair.
    assert got == [(0, "b", "a", 3.0, 1.0), (0, "d", "c", 2.0, 0.0)]


def test_jbond_reward_is_minus_log_16_below_both_anchor_samples():
    anchors = np.array([[1.0, 2.0], [1.0, 2.0], [1.0, 2.0], [1.0, 1.0]])
    got = jbond_reward(np.array([0.5, 1.0, 1.5, 1.0]), anchors)
    np.testing.assert_array_equal(got, [-JBOND_PENALTY, 0.0, 0.0, 0.0])
    # Its expectation at quantile F, -log 16 (1 - F)^2, equals log F at the median.
    assert -JBOND_PENALTY * 0.25 == pytest.approx(math.log(0.5))


@pytest.mark.filterwarnings("ignore::vbon.cdf.IllPosedWarning")  # the m < n case warns first
def test_bond_configs():
    jb = TrainConfig(task="enumerable", method="jbond")
    assert (jb.n, jb.k, jb.anchor_ema, jb.beta, jb.algorithm) == (2, 1, 0.02, 1.0, "rloo")
    # bond and jbond train in rloo's form on every profile (the paper profile's default is ppo).
    assert TrainConfig(task="enumerable", profile="paper", method="bond").algorithm == "rloo"
    bond = TrainConfig(task="enumerable", method="bond", n=4)
    assert (bond.anchor_ema, bond.bond_lambda, bond.beta) == (0.0, 0.5, pytest.approx(1 / 3))
    assert TrainConfig(task="enumerable", method="bonbon", n=8).beta == pytest.approx(
        bonbon_beta(8)
    )
    for bad, name in (
        ({"method": "jbond", "n": 4}, "n"),
        ({"method": "bond", "algorithm": "ppo"}, "algorithm"),
        ({"method": "bond", "bond_lambda": 1.5}, "bond_lambda"),
        ({"method": "bond", "anchor_ema": -0.1}, "anchor_ema"),
        ({"method": "vbon", "anchor_ema": 0.1}, "anchor_ema"),
        ({"method": "vbon", "bonbon_alpha": 0.1}, "bonbon_alpha"),
        ({"method": "bonbon", "beta": 0.3}, "beta"),
        ({"method": "jbond", "anchor_ema": 0.0}, "anchor_ema"),
        ({"method": "jbond", "k": 4}, "k"),
        ({"method": "bond", "kl_estimator": "rb"}, "kl_estimator"),
        ({"method": "bond", "anchor_gamma": 1.0}, "anchor_gamma"),
        ({"method": "bond", "eos_score": -1.0}, "eos_score"),
        ({"method": "bond", "n": 64, "m": 32}, "m"),
        ({"method": "bonbon", "sft_recipe": "authors"}, "sft_recipe"),
        ({"method": "vbon", "anchor_gamma": 1.0}, "anchor_gamma"),
    ):
        with pytest.raises(ValueError, match=rf"^{name}:"):
            TrainConfig(task="enumerable", **bad)
