"""The trainers on the toy-sentiment world (the smoke profile's IMDB task), at smoke budgets.

Every run uses the smoke profile's defaults (ppo 28 phases, lr and batches of
``vbon.train.PROFILE_DEFAULTS``; vbon-rloo 90 steps) on the smoke notebooks' reference cache (128
prompts, M = 32) and prints its evaluation before (pi_ref, step 0) and after. The claims are
improvements, each required to exceed 3 standard errors of its own estimate:

- the win rate against pi_ref rises (SE over the test prompts, before and after combined);
- the RL runs' own objective J = E[score] - beta KL ends above pi_ref's: J over the last 15 steps
  (SE from the per-step standard errors the trainer logs) against vBoN's J at pi_ref, known
  exactly: KL 0 and E_ref[log F_hat] = mean over k = 0..M of log((1+k)/(M+1)) (the rank of a
  fresh pi_ref sample among M references is uniform; ties in the reward only lower it, so the
  comparison is conservative).

These must hold whatever the sampling stream: on another CPU the toy models and the samples
differ by float rounding, which makes a run another draw of the same experiment. So the budgets
are set by measured effect sizes, not by one passing run. vbon-rloo at the old 45 steps, on three
seeds: objective 1.9-2.4 SE above its first 8 steps (the comparison this test used to make, which
then failed on a clean machine), 4.2-6.1 SE above pi_ref's exact J, win rate 4.4-5.2 SE; at 90
steps: 10.9-12.2 SE above pi_ref's J and win rate 5.9-8.8 SE, comfortably clear of 3. What they do not claim is that a
trained run's KL stays below BoN's bound log N - (N-1)/N: that is a property of BoN, not of an
RL run on its way to its optimum (the earlier version of this test asserted it and failed on
another machine at KL 1.36 > 1.20).
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from vbon.train import TrainConfig, TrainResult, train

N = 8
Z = 3.0
RUNS = {
    # 128 train prompts with M = 32 (4 N): the reference cache of the smoke notebooks.
    "vbon-rloo": {
        "method": "vbon",
        "n": N,
        "algorithm": "rloo",
        "max_train_prompts": 128,
        "steps": 90,
    },
    "vbon-ppo": {"method": "vbon", "n": N, "algorithm": "ppo", "max_train_prompts": 128},
    # The baselines only have to improve on pi_ref: a shorter budget keeps the suite fast.
    "kl_rl-rloo": {"method": "kl_rl", "beta": 0.1, "algorithm": "rloo", "steps": 24},
    # The same cache, best of 8 of each prompt's first 8 samples. Evaluated on 128 test prompts:
    # on 64 its win-rate gain measured 2.5, 3.4 and 3.1 SE on seeds 0-2 (the first failed this
    # test on a clean machine), on 128 4.7-6.7 SE (60 steps on 64 prompts: 2.8-5.2).
    "bon_sft": {
        "method": "bon_sft",
        "n": N,
        "m": 32,
        "max_train_prompts": 128,
        "eval_prompts": 128,
    },
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
                f"(+- {after['win_rate_se']:.3f}), KL {after['kl']:.3f} (k1 {after['kl_k1']:.3f})"
            )
        return done[name]

    return get


def _win_rate_gain_z(result: TrainResult) -> float:
    before, after = result.frame("eval").iloc[0], result.frame("eval").iloc[-1]
    se = np.hypot(before["win_rate_se"], after["win_rate_se"])
    return float((after["win_rate"] - before["win_rate"]) / se)


def _reference_objective(m: int) -> float:
    """vBoN's J at pi_ref with the add-one F_hat of m references (KL 0): E_ref[log F_hat]."""
    return float(np.mean(np.log(np.arange(1, m + 2) / (m + 1))))


def _objective_gain_z(result: TrainResult, window: int = 15) -> float:
    train = result.frame("train")
    y, se = train["objective"].to_numpy()[-window:], train["objective_se"].to_numpy()[-window:]
    m = min(result.config.m, result.config.max_m or result.config.m)
    return float((y.mean() - _reference_objective(m)) / (np.sqrt((se**2).sum()) / window))


@pytest.mark.parametrize("name", ["vbon-rloo", "vbon-ppo"])
def test_vbon_improves_its_objective_and_its_win_rate(run, name):
    result = run(name)
    z_win, z_obj = _win_rate_gain_z(result), _objective_gain_z(result)
    print(f"[toy-sentiment] {name}: win-rate gain {z_win:.1f} SE, objective gain {z_obj:.1f} SE")
    assert z_win > Z
    assert z_obj > Z
    trains = result.frame("train")
    columns = ["reward", "score", "kl", "objective", "loss" if name.endswith("rloo") else "vf_loss"]
    assert np.isfinite(trains[columns]).all().all()
    assert (trains["objective_se"].dropna() > 0).all()


def test_kl_rb_has_a_smaller_standard_error_than_k1_on_the_trained_policy(run):
    """The evaluation's three KL estimates come from the same samples of the trained vbon
    policy: kl_rb's SE over test prompts is at most k1's, and kl_rb - k1 (paired by prompt)
    is centred on 0 (both are unbiased). Rao-Blackwell guarantees the inequality position by
    position, not for the sum (tests/test_kl_rb.py), so this is a measured property of the
    trained policy, with a wide margin: 0.085 against 0.150 (k3: 0.180) on 64 prompts x 4
    samples, the within-prompt noise that k1 carries and kl_rb averages out."""
    result = run("vbon-rloo")
    last, per = result.frame("eval").iloc[-1], result.per_prompt()
    se = {name: last[f"kl_{name}_se"] for name in ("k1", "k3", "rb")}
    diff = per["kl_rb"] - per["kl_k1"]
    z = diff.mean() / (diff.std(ddof=1) / np.sqrt(len(diff)))
    print(
        f"[toy-sentiment] KL of vbon-rloo on {len(per)} prompts: k1 {last['kl_k1']:.3f} "
        f"+- {se['k1']:.3f}, k3 {last['kl_k3']:.3f} +- {se['k3']:.3f}, "
        f"rb {last['kl_rb']:.3f} +- {se['rb']:.3f}; rb - k1 {diff.mean():+.3f} ({z:+.1f} SE)"
    )
    assert se["rb"] <= se["k1"]
    assert abs(z) < Z


@pytest.mark.parametrize("name", ["kl_rl-rloo", "bon_sft"])
def test_baselines_improve_over_the_reference(run, name):
    result = run(name)
    z_win = _win_rate_gain_z(result)
    print(f"[toy-sentiment] {name}: win-rate gain {z_win:.1f} SE")
    assert z_win > Z
    model, _ = result.load_policy()  # the saved policy reloads through vbon.models
    assert model.config.model_type == "gpt2"
    per_prompt = result.per_prompt()
    assert len(per_prompt) == result.config.eval_prompts
    assert per_prompt["win_rate"].mean() == pytest.approx(result.metrics["win_rate"], abs=1e-9)


def test_evaluate_run_repeats_the_trainers_final_evaluation(run):
    """``vbon.evaluate.evaluate_run`` is the trainer's evaluation of a saved run (notebook 07
    relies on it to put the training temperature beside the others): the same numbers, up to
    a reloaded model's last digits; at another temperature it evaluates something else."""
    from vbon.evaluate import evaluate_run

    result = run("kl_rl-rloo")
    again = evaluate_run(result, progress=False).as_dict()
    for key in ("reward", "win_rate", "kl_k1", "kl_k3"):
        assert again[key] == pytest.approx(
            result.metrics[key], abs=0.01 * result.metrics[f"{key}_se"]
        )
    colder = evaluate_run(result.run_dir, temperature=0.5, progress=False)
    assert colder.kl_k3.mean != pytest.approx(result.metrics["kl_k3"])
    with pytest.raises(ValueError, match="temperature"):
        evaluate_run(result, object(), temperature=0.5)
