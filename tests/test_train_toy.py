"""The trainers on the toy-sentiment world (the smoke profile's IMDB task), at smoke budgets.

Every run uses the smoke profile's defaults, i.e. exactly what the train notebook gets; each
prints its evaluation before (pi_ref, step 0) and after training. Claims (issue 5):

- vbon at N = 8 raises mean reward and win rate against pi_ref (win rate > 0.6) with
  KL(pi_theta || pi_ref) below log N - (N-1)/N, the bound on BoN's own KL; with rloo and ppo;
- kl_rl and bon_sft also improve over pi_ref.

The toy world and the reference caches are built on first use (cached afterwards).
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from vbon.bon import kl_bon_bound
from vbon.train import TrainConfig, TrainResult, train

N = 8
RUNS = {
    "vbon-rloo": {"method": "vbon", "n": N, "algorithm": "rloo"},
    "vbon-ppo": {"method": "vbon", "n": N, "algorithm": "ppo"},
    # The baselines only have to improve on pi_ref: shorter budgets keep the suite fast.
    "kl_rl-rloo": {"method": "kl_rl", "beta": 0.1, "algorithm": "rloo", "steps": 24},
    # 16 reference samples for each of 64 prompts, two disjoint best-of-8 targets each
    "bon_sft": {"method": "bon_sft", "n": N, "m": 16, "sft_groups": 2, "max_train_prompts": 64},
}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("toy_train")
    done: dict[str, TrainResult] = {}

    def get(name: str) -> TrainResult:
        if name not in done:
            config = TrainConfig(
                task="imdb", profile="smoke", output_dir=str(out), progress=False, **RUNS[name]
            )
            start = time.perf_counter()
            done[name] = train(config)
            before, after = done[name].frame("eval").iloc[0], done[name].frame("eval").iloc[-1]
            print(
                f"\n[toy-sentiment] {name} ({config.steps} steps, lr {config.lr:g}, "
                f"{time.perf_counter() - start:.0f} s): "
                f"reward {before['reward']:.3f} -> {after['reward']:.3f} (+- {after['reward_se']:.3f}), "
                f"win rate vs pi_ref {before['win_rate']:.3f} -> {after['win_rate']:.3f} "
                f"(+- {after['win_rate_se']:.3f}), KL {after['kl']:.3f} (k1 {after['kl_k1']:.3f}), "
                f"length {before['length']:.1f} -> {after['length']:.1f}"
            )
        return done[name]

    return get


@pytest.mark.parametrize("name", ["vbon-rloo", "vbon-ppo"])
def test_vbon_moves_towards_bon(run, name):
    result = run(name)
    before, after = result.frame("eval").iloc[0], result.frame("eval").iloc[-1]
    print(f"[toy-sentiment] {name}: KL bound log N - (N-1)/N at N = {N}: {kl_bon_bound(N):.3f}")
    assert after["reward"] > before["reward"]
    assert after["win_rate"] > 0.6
    assert after["kl"] < kl_bon_bound(N)
    assert after["kl_k1"] < kl_bon_bound(N)
    trains = result.frame("train")
    assert (
        np.isfinite(
            trains[["reward", "score", "kl", "loss" if name.endswith("rloo") else "vf_loss"]]
        )
        .all()
        .all()
    )


@pytest.mark.parametrize("name", ["kl_rl-rloo", "bon_sft"])
def test_baselines_improve_over_the_reference(run, name):
    result = run(name)
    before, after = result.frame("eval").iloc[0], result.frame("eval").iloc[-1]
    assert after["reward"] > before["reward"]
    assert after["win_rate"] > 0.55
    model, _ = result.load_policy()  # the saved policy reloads through vbon.models
    assert model.config.model_type == "gpt2"
