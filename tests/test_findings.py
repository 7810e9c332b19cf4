"""Intervals, verdicts, the theory frontier, the F_hat rule, convergence, the experiment spec.

Everything here is exact maths or synthetic data with a known answer; each test's threshold is
either exact (theory) or several standard errors of the quantity it checks.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from vbon import cdf, findings, stats, theory
from vbon.bon import bon_pmf, bound_optimum_pmf
from vbon.objectives import kl_rl_optimum_pmf
from vbon.train.convergence import plateau


# -- vbon.stats ------------------------------------------------------------------------------
def test_mean_ci_matches_the_t_interval_over_prompts():
    rng = np.random.default_rng(0)
    x = rng.normal(1.0, 2.0, size=400)
    got = stats.mean_ci(x)
    half_t = 1.96 * x.std(ddof=1) / np.sqrt(x.size)
    assert got.estimate == pytest.approx(x.mean())
    # A percentile bootstrap of a mean is the t interval up to O(1/n) and its Monte Carlo error.
    assert (got.high - got.low) / 2 == pytest.approx(half_t, rel=0.1)


def test_crossed_bootstrap_sees_seed_spread_that_prompts_alone_miss():
    rng = np.random.default_rng(1)
    seed_effect = np.array([-1.0, 0.0, 1.0])[:, None]
    values = seed_effect + rng.normal(0, 0.1, size=(3, 200))
    both = stats.mean_ci(values)
    prompts_only = stats.mean_ci(values.mean(axis=0))
    assert both.high - both.low > 5 * (prompts_only.high - prompts_only.low)
    est, lo, hi = stats.crossed_bootstrap(lambda s, p: 1.0, 3, 200)  # a constant has no spread
    assert est == lo == hi == 1.0


def test_decide_by_the_interval():
    def iv(lo, hi):
        return stats.Interval((lo + hi) / 2, lo, hi)

    assert stats.decide("x", iv(0.1, 0.3), seeds=[0]).decision == "holds"
    assert stats.decide("x", iv(-0.3, -0.1), seeds=[0]).decision == "fails"
    assert stats.decide("x", iv(-0.1, 0.3), seeds=[0]).decision == "inconclusive"
    assert stats.decide("x", iv(-0.3, -0.1), seeds=[0], direction="<").holds
    within = stats.decide("x", iv(-0.02, 0.03), seeds=[0], direction="within", threshold=0.05)
    assert within.holds and within.as_dict()["ci"] == [-0.02, 0.03]
    assert (
        stats.decide("x", iv(0.06, 0.1), seeds=[0], direction="within", threshold=0.05).decision
        == "fails"
    )
    with pytest.raises(ValueError, match="direction"):
        stats.decide("x", iv(0, 1), seeds=[0], direction="=")


# -- vbon.theory -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def support():
    rng = np.random.default_rng(2)
    p = rng.dirichlet(np.ones(30))
    r = np.exp(rng.normal(size=30))  # heavy right tail
    return p, r


def test_optimum_value_and_gap_are_exact(support):
    p, r = support
    beta = 0.3
    best = kl_rl_optimum_pmf(p, r, beta)
    assert theory.objective_value(best, p, r, beta) == pytest.approx(
        theory.optimum_value(p, r, beta), abs=1e-12
    )
    q = np.random.default_rng(3).dirichlet(np.ones(30))
    gap = theory.optimisation_gap(q, p, r, beta)
    assert gap == pytest.approx(beta * theory.kl_divergence(q, best), abs=1e-10)
    assert gap > 0


def test_no_policy_beats_the_frontiers(support):
    """KL-RL's optimum is the reward frontier and F's optimum the win-rate frontier: random
    policies and every vBoN/BoN optimum lie on or below both (exact)."""
    p, r = support
    rng = np.random.default_rng(4)
    for q in rng.dirichlet(np.full(30, 0.5), size=40):
        m = theory.policy_metrics(q, p, r)
        assert theory.frontier_at(p, r, m["kl"], "reward") >= m["reward"] - 1e-9
        assert theory.frontier_at(p, r, m["kl"], "win_rate") >= m["win_rate"] - 1e-9
    curves = theory.with_frontier_gaps(theory.theory_frontier(p, r, [2, 4, 16]), p, r)
    assert (curves[["reward_gap", "win_rate_gap"]] >= -1e-9).all().all()
    exact = curves[curves["method"] == "vbon_exact"]
    assert exact["kl"].tolist() == pytest.approx(
        [theory.kl_divergence(bon_pmf(p, r, n), p) for n in (2, 4, 16)]
    )


def test_beta_for_kl_round_trip(support):
    p, r = support
    for kl in (0.05, 0.5, 1.5):
        beta = theory.beta_for_kl(p, r, kl)
        assert theory.kl_divergence(kl_rl_optimum_pmf(p, r, beta), p) == pytest.approx(kl, abs=1e-9)
    with pytest.raises(ValueError, match="kl"):
        theory.beta_for_kl(p, r, 100.0)


def test_continuous_vbon_optimum():
    for n in (2, 4, 16):
        assert theory.continuous_vbon_optimum(n) == pytest.approx(-np.log(n) / (n - 1))
        # With many references F_hat approaches F; with few it is coarser and the optimum higher.
        big = theory.continuous_vbon_optimum(n, 100_000)
        assert big == pytest.approx(-np.log(n) / (n - 1), abs=1e-3)
        assert theory.continuous_vbon_optimum(n, 4) > big
        assert theory.continuous_vbon_optimum(n, 100_000, bound="exact") == pytest.approx(
            0, abs=1e-3
        )


# -- the F_hat rule M >= M_PER_N N -----------------------------------------------------------
def test_fhat_target_closes_on_bon_as_m_grows():
    rows = [cdf.fhat_target(8, c * 8, draws=1500) for c in (1, 4, 16)]
    kls = [r["kl_to_bon"] for r in rows]
    assert kls[0] > kls[1] > kls[2] > 0
    # About 0.24 / c nats (the rule's justification in vbon.cdf).
    assert kls[1] == pytest.approx(0.24 / 4, rel=0.25)
    assert rows[1]["saturated"] == pytest.approx(8 / (8 + 32))
    assert all(r["win_rate"] < r["win_rate_bon"] for r in rows)


def test_fhat_error_study_saturation_follows_theory():
    rng = np.random.default_rng(5)
    pool = rng.normal(size=(200, 64 + 256))
    table = cdf.fhat_error_study(pool, [16, 64], [2, 8], resamples=8)
    bon = table[table["N"] > 1]
    per_cell = bon.groupby(["M", "N"])
    diff = per_cell["saturated"].mean() - per_cell["saturated_theory"].first()
    se = per_cell["saturated"].std() / np.sqrt(200)
    assert (diff.abs() < 4 * se + 1e-3).all(), (diff, se)


def test_the_rule_warns_in_train_config_and_refuses_in_the_spec():
    from vbon.experiment import experiment
    from vbon.train import TrainConfig

    with pytest.warns(cdf.IllPosedWarning, match="m: 16 reference samples"):
        TrainConfig(method="vbon", n=8, m=16)
    with pytest.warns(cdf.IllPosedWarning, match="max_m"):
        TrainConfig(method="vbon", n=8, m=64, max_m=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error", cdf.IllPosedWarning)
        TrainConfig(method="vbon", n=8, m=32)
        TrainConfig(method="kl_rl", beta=0.1, m=4)
    with pytest.raises(ValueError, match="m: 32 reference samples"):
        experiment("imdb", "smoke", m=32, n_grid=[2, 16])


# -- vbon.findings ---------------------------------------------------------------------------
def _points(spec: dict[str, tuple[str, float, float]], seeds=3, prompts=50, noise=0.05):
    """Synthetic per-prompt evaluations: config -> (method, kl, win_rate)."""
    rng = np.random.default_rng(6)
    rows = []
    for config, (method, kl, win) in spec.items():
        for s in range(seeds):
            for p in range(prompts):
                rows.append(
                    {
                        "config": config,
                        "method": method,
                        "n": 2,
                        "beta": 1.0,
                        "max_m": None,
                        "seed": s,
                        "prompt": p,
                        "kl": kl + rng.normal(0, noise),
                        "win_rate": win + rng.normal(0, noise),
                        "reward": win,
                    }
                )
    return pd.DataFrame(rows)


def test_frontier_membership_and_the_headline_interval():
    pts = _points(
        {
            "a1": ("a", 0.5, 0.70),
            "a2": ("a", 1.0, 0.80),
            "b1": ("b", 0.6, 0.60),
            "b2": ("b", 1.1, 0.70),
        }
    )
    table, head = findings.frontier_membership(
        pts, "win_rate", np.full(50, 0.5), headline=("a", ["b"])
    )
    shares = table.set_index("method")["share"]
    assert shares["a"] == 1.0 and shares["b"] == 0.0
    assert head.low > 0


def test_matched_kl_gap_and_paired_difference():
    pts = _points({"a": ("a", 1.0, 0.75), "b1": ("b", 0.5, 0.6), "b2": ("b", 1.5, 0.8)})
    gap = findings.matched_kl_gap(pts, "win_rate", "a", "b").set_index("config")
    assert gap.loc["a", "gap"] == pytest.approx(0.05, abs=0.02)  # b at KL 1 is 0.70
    diff = findings.paired_difference(pts, [("a", "a")], ["win_rate"]).iloc[0]
    assert diff["difference"] == diff["low"] == diff["high"] == 0.0


def test_distill_claims_and_the_kl_estimators_standard_errors():
    from types import SimpleNamespace

    pts = _points(
        {
            "vbon N=4": ("vbon", 0.6, 0.8),
            "bond N=4": ("bond", 0.5, 0.7),
            "bonbon n=4": ("bonbon", 2.0, 0.6),
            "jbond N=2": ("jbond", 0.3, 0.45),
        }
    )
    pts["n"] = pts["config"].str.extract(r"=(\d+)")[0].astype(int)
    spec = SimpleNamespace(seeds=(0, 1, 2), test_prompts=50)
    claims = findings.distill_claims(findings.point_table(pts), pts, spec)
    assert len(claims) == 3 + 2 + 2  # beats pi_ref; KL under BoN's bound; vbon beats it
    assert [c.decision for c in claims[:3]] == ["holds", "holds", "fails"]  # jbond at 0.45
    # BoN's bound at N = 4 is log 4 - 3/4 = 0.64: bond's KL 0.5 is below it, bonbon's 2.0 not.
    assert [c.decision for c in claims[3:5]] == ["holds", "fails"]
    assert all(c.decision == "holds" for c in claims[5:])
    assert "vbon N=4 beats bond N=4" in claims[5].claim + claims[6].claim

    sweep = pd.DataFrame(
        {
            "method": ["vbon"] * 3 + ["bond"] * 3,
            "n": [4] * 6,
            "beta": [1 / 3] * 6,
            "seed": [0, 1, 2] * 2,
            "kl_k1_se": [0.10, 0.12, 0.11, 0.20, 0.22, 0.18],
            "kl_k3_se": [0.08, 0.09, 0.08, 0.15, 0.16, 0.14],
            "kl_rb_se": [0.05, 0.06, 0.05, 0.10, 0.12, 0.09],
        }
    )
    se = findings.kl_estimator_se(sweep)
    assert se["config"].tolist()[:1] == ["vbon N=4"]
    assert se["rb / k1"].to_numpy() == pytest.approx(sweep["kl_rb_se"] / sweep["kl_k1_se"])
    verdicts = findings.kl_estimator_claims(se, seeds=[0, 1, 2])
    assert [c.decision for c in verdicts] == ["holds", "holds"]
    one = findings.kl_estimator_claims(se[se["seed"] == 0], seeds=[0])  # the runs as units
    assert "2 runs of one seed" in one[0].evidence and one[0].estimate < 0
    assert findings.kl_estimator_se(sweep.drop(columns="kl_rb_se")).empty


def test_the_kl_axis_is_kl_rb_and_older_evaluations_are_refused():
    per = pd.DataFrame({"prompt": [0, 1], "kl_k1": [0.4, 0.1], "kl_k3": [0.3, 0.2]})
    with pytest.raises(ValueError, match="run runs/x: its evaluation has no kl_rb"):
        findings._kl_axis(per, "runs/x")
    out = findings._kl_axis(per.assign(kl_rb=[0.25, 0.15]), "runs/x")
    assert findings.KL_AXIS == "kl_rb"
    assert out["kl"].tolist() == [0.25, 0.15] and out["kl_k3"].tolist() == [0.3, 0.2]


# -- vbon.train.convergence ------------------------------------------------------------------
def _history(values, se=0.1):
    return [
        {"phase": "train", "step": i + 1, "objective": v, "objective_se": se}
        for i, v in enumerate(values)
    ]


def test_plateau_tells_saturated_from_rising_runs():
    rng = np.random.default_rng(7)
    t = np.arange(400)
    flat = -1 + 0.5 * (1 - np.exp(-t / 30)) + rng.normal(0, 0.1, t.size)
    rising = -1 + 0.002 * t + rng.normal(0, 0.1, t.size)
    short = -1 + 0.5 * (1 - np.exp(-t[:16] / 30)) + rng.normal(0, 0.1, 16)
    assert plateau(_history(flat))["status"] == "converged"
    assert plateau(_history(rising))["status"] == "improving"
    assert plateau(_history(short))["status"] != "converged"  # too few steps to tell
    with pytest.raises(ValueError, match="too few"):
        plateau(_history([0.0] * 4))


# -- vbon.experiment -------------------------------------------------------------------------
def test_experiment_spec_grids_budgets_and_errors():
    from vbon.experiment import experiment

    spec = experiment("imdb", "converged")
    configs = spec.sweep_configs()
    by_method = pd.Series([c.method for c in configs]).value_counts().to_dict()
    k = len(spec.seeds)
    per_n = ("vbon", "kl_rl", "bon_sft", "bonbon", "bond")
    assert by_method == {**dict.fromkeys(per_n, 3 * k), "vbon_exact": k, "jbond": k}
    steps = {
        (c.method, c.n if c.method != "kl_rl" else round(1 / c.beta + 1)): c.steps for c in configs
    }
    for n, budget in spec.steps_by_n.items():
        assert steps[("vbon", n)] == steps[("kl_rl", n)] == steps[("bond", n)] == budget
    assert all(c.max_m in spec.m_ablation for c in spec.ablation_configs())
    assert experiment("imdb", "smoke").fingerprint() != spec.fingerprint()
    with pytest.raises(ValueError, match="overrides: unknown"):
        experiment("imdb", "smoke", mm=3)
    with pytest.raises(ValueError, match="seeds: repeated"):
        experiment("imdb", "smoke", seeds=[0, 0])
    with pytest.raises(ValueError, match="task: no experiment"):
        experiment("mnist", "smoke")


def test_experiment_spec_of_the_distillation_methods():
    """BoNBoN over bonbon_n with sft's budget (steps_by_n where set) and its own lr, BOND over
    bond_n in rloo's form, J-BOND once with as many policy samples per step as the RL runs."""
    from vbon.experiment import DISTILL_METHODS, experiment

    spec = experiment("tldr", "smoke")
    configs = spec.sweep_configs(methods=DISTILL_METHODS)
    assert [(c.method, c.n) for c in configs if c.seed == 0] == [
        ("bonbon", 201),
        ("bond", 201),
        ("jbond", 2),
    ]
    bonbon, bond, jbond = (c for c in configs if c.seed == 0)
    assert bonbon.steps == spec.sft["steps"] and bonbon.sft_groups == spec.sft["sft_groups"]
    assert bonbon.lr == spec.bonbon["lr"] != spec.sft["lr"]
    assert bond.steps == spec.rl["steps"] and bond.k == spec.rl["k"]
    assert jbond.k == 1 and jbond.batch_prompts == spec.rl["batch_prompts"] * spec.rl["k"]
    paper = experiment("tldr", "paper")  # its RL runs are PPO; BOND's trainer stays rloo's
    assert {c.algorithm for c in paper.sweep_configs(methods=["bond", "jbond"])} == {"rloo"}
    assert len(experiment("imdb", "smoke", methods=["bond"]).sweep_configs()) == 1 * 3
    # The converged profile: BoNBoN and BOND at every N, on the RL runs' steps per N.
    converged = experiment("imdb", "converged", methods=["bonbon", "bond"])
    steps = {(c.method, c.n): c.steps for c in converged.sweep_configs() if c.seed == 0}
    assert steps == {(m, n): s for m in ("bonbon", "bond") for n, s in converged.steps_by_n.items()}
    assert {c.n for c in converged.sweep_configs(["bon_sft"])} == set(converged.n_grid)
    with pytest.raises(ValueError, match="methods: expected some of"):
        experiment("tldr", "smoke", methods=["vbon_offline"])
    with pytest.raises(ValueError, match="bond_n: expected integers >= 2"):
        experiment("tldr", "smoke", bond_n=[1])
    with pytest.raises(ValueError, match="bonbon_n: n = 900 exceeds m"):
        experiment("tldr", "smoke", bonbon_n=[900])
    with pytest.raises(ValueError, match="bonbon: unknown TrainConfig"):
        experiment("tldr", "smoke", bonbon={"lrr": 1e-4})


# -- pieces of the loop ------------------------------------------------------------------------
def test_clustered_standard_error_over_prompts():
    import torch

    from vbon.train.common import Stats

    class One:
        num_processes = 1
        device = torch.device("cpu")

    values = torch.tensor([1.0, 3.0, 2.0, 2.0, 10.0, 12.0])
    groups = np.array([0, 0, 1, 1, 2, 2])
    st = Stats()
    st.add_clustered("objective", values, groups)
    out = st.reduce(One())
    means = np.array([2.0, 2.0, 11.0])
    assert out["objective"] == pytest.approx(means.mean())
    assert out["objective_se"] == pytest.approx(means.std(ddof=1) / np.sqrt(3))


def test_bound_optimum_is_the_log_f_optimum(support):
    """Sanity link between vbon.bon and vbon.theory: pi_ref F^(N-1) is KL-RL's optimum for the
    score log F at beta = 1/(N-1)."""
    from vbon.bon import ref_cdf

    p, r = support
    score = np.log(np.maximum(ref_cdf(p, r), 1e-300))
    for n in (2, 8):
        got = kl_rl_optimum_pmf(p, score, 1 / (n - 1))
        np.testing.assert_allclose(got, bound_optimum_pmf(p, r, n), atol=1e-12)


# -- helpers the notebooks lean on -----------------------------------------------------------
def test_seed_interval_is_the_student_t_interval_and_wider_than_the_bootstrap():
    values = np.array([0.18, 0.21, 0.22])
    got = stats.seed_interval(values)
    half = 4.303 * values.std(ddof=1) / np.sqrt(3)  # t_{0.975, 2} = 4.303
    assert got.estimate == pytest.approx(values.mean())
    assert (got.high - got.low) / 2 == pytest.approx(half, rel=1e-3)
    boot = stats.mean_ci(values[:, None])  # three seeds, one prompt: the bootstrap under-covers
    assert got.high - got.low > 2 * (boot.high - boot.low)
    assert stats.seed_interval([1.0, 1.0]).ci == [1.0, 1.0]
    with pytest.raises(ValueError, match="values"):
        stats.seed_interval([1.0])


def test_row_interval_reads_point_tables_and_differences():
    row = pd.Series({"win_rate": 0.6, "win_rate_low": 0.55, "win_rate_high": 0.66})
    iv = findings.row_interval(row, "win_rate", unit="u", minus=0.5)
    assert [iv.estimate, iv.low, iv.high] == pytest.approx([0.1, 0.05, 0.16]) and iv.unit == "u"
    diff = findings.row_interval(
        {"difference": 0.2, "low": 0.1, "high": 0.3}, "difference", unit=""
    )
    assert diff.ci == [0.1, 0.3]
    with pytest.raises(ValueError, match="row"):
        findings.row_interval({"kl": 1.0}, "kl", unit="")


def test_exact_claim_and_bound_gap():
    c = stats.exact_claim("x", 0.5, True, figure="f.png")
    assert c.ci == [0.5, 0.5] and c.decision == "holds" and c.evidence == "exact"
    assert stats.exact_claim("x", 0.5, False).decision == "fails"
    gap = theory.bound_gap(16, 0.7, [0.25, 1e-4, 1e-12])
    assert (gap["gap"] >= 0).all() and gap["gap"].is_monotonic_decreasing
    # For small pi_ref the gap is (N-1)/2 pi_ref / F to first order.
    assert gap["gap"].iloc[-1] == pytest.approx(15 / 2 * 1e-12 / 0.7, rel=1e-3)
    with pytest.raises(ValueError, match="cdf"):
        theory.bound_gap(4, 0.0, [0.1])


def test_sampled_optimum():
    rng = np.random.default_rng(0)
    r = rng.normal(size=(50, 4000))
    # beta log E[exp(r/beta)] of a standard normal is 1 / (2 beta).
    assert theory.sampled_optimum("kl_rl", 2.0, r) == pytest.approx(0.25, abs=0.02)
    assert theory.sampled_optimum("vbon", 4, r[:, :64]) == pytest.approx(
        theory.continuous_vbon_optimum(4, 64)
    )
    with pytest.raises(ValueError, match="method"):
        theory.sampled_optimum("ppo", 4, r)


def test_optimisation_gaps_in_nats():
    plateaus = pd.DataFrame(
        {
            "config": ["vbon N=4", "vbon N=4", "kl_rl beta=0.5"],
            "method": ["vbon", "vbon", "kl_rl"],
            "n": [4, 4, None],
            "beta": [1 / 3, 1 / 3, 0.5],
            "final": [-0.8, -0.7, 0.1],
        }
    )
    r = np.random.default_rng(1).normal(size=(8, 64))
    gaps = findings.optimisation_gaps(plateaus, r)
    j_star = theory.continuous_vbon_optimum(4, 64)
    assert gaps.loc["vbon N=4", "gap"] == pytest.approx(j_star + 0.75)
    assert gaps.loc["vbon N=4", "kl_to_optimum"] == pytest.approx(3 * (j_star + 0.75))
    assert gaps.loc["kl_rl beta=0.5", "beta"] == 0.5


def test_enumerable_per_seed():
    runs = pd.DataFrame(
        {
            "method": ["vbon", "vbon_exact", "vbon", "vbon_exact"],
            "n": [2, 2, 2, 2],
            "seed": [0, 0, 1, 1],
            "kl_to_bon": [0.3, 0.2, 0.5, 0.5],
            "kl_to_optimum": [0.4, 0.1, 0.6, 0.2],
        }
    )
    table = findings.enumerable_per_seed(runs, {2: 1.0}, {2: 0.1})
    assert table.iloc[:, 0].tolist() == pytest.approx([0.7, 0.5])
    assert table.iloc[:, 1].tolist() == pytest.approx([0.1, 0.0])
    assert table.iloc[:, 2].tolist() == pytest.approx([0.3, 0.5])


def test_convergence_claim_brackets_the_share():
    from vbon.train.convergence import convergence_claim

    plateaus = pd.DataFrame(
        {
            "config": ["a", "b", "c"],
            "seed": [0, 0, 0],
            "status": ["converged", "inconclusive", "converged"],
            "projected": [0.0, 0.1, 0.0],
            "projected_low": [-0.1, -0.05, -0.1],
            "projected_high": [0.05, 0.3, 0.05],
            "step_se": [0.1, 0.1, 0.1],
        }
    )
    claim, still = convergence_claim(plateaus, [0])
    assert claim.ci == pytest.approx([2 / 3, 1.0]) and claim.decision == "inconclusive"
    assert "b seed 0" in still.unit
    plateaus.loc[1, "status"] = "improving"
    assert convergence_claim(plateaus, [0])[0].decision == "fails"


def test_shown_paths_drop_the_machine_prefix(tmp_path, monkeypatch):
    from vbon import paths

    monkeypatch.setenv("VBON_CACHE", str(tmp_path / "cache"))
    assert paths.shown("lvwerra/gpt2-imdb") == "lvwerra/gpt2-imdb"
    assert paths.shown(tmp_path / "cache" / "toy" / "policy") == "<cache>/toy/policy"
    assert paths.shown(paths.runs_dir("smoke") / "x") == "runs/smoke/x"
    elsewhere = tmp_path / "other"
    assert paths.shown(elsewhere) == str(elsewhere)


# -- the TL;DR findings (notebooks 05 and 07) -------------------------------------------------------
def _temperature_points(rng: np.random.Generator) -> pd.DataFrame:
    """Synthetic points at two temperatures: policy "a" (3 seeds) 0.5 above pi_ref, "b" 0.2
    above, BoN (no seed) 1.0 above; 64 prompts with a shared difficulty, seed spread 0.05."""
    rows = []
    difficulty = rng.normal(0, 1, 64)
    for t in (0.5, 1.0):
        for config, method, shift, seeds in (
            ("a", "vbon", 0.5, [0, 1, 2]),
            ("b", "kl_rl", 0.2, [0, 1, 2]),
            ("bon N=8", "bon", 1.0, [-1]),
            ("pi_ref", "ref", 0.0, [-1]),
        ):
            for s in seeds:
                noise = rng.normal(0, 0.3, 64) + (0.05 * rng.normal() if s >= 0 else 0.0)
                rows.append(
                    pd.DataFrame(
                        {
                            "config": config,
                            "method": method,
                            "seed": s,
                            "temperature": t,
                            "prompt": np.arange(64),
                            "reward": difficulty + shift + noise,
                            "win_rate": 0.5 + shift / 4,
                            "kl": shift,
                            "eos": 1.0,
                        }
                    )
                )
    return pd.concat(rows, ignore_index=True)


def test_gap_interval_pairs_prompts_and_takes_the_max_in_each_resample():
    points = _temperature_points(np.random.default_rng(0))
    at = points[points["temperature"] == 0.5]
    gap = findings.gap_interval(at, "a", ["pi_ref"])
    # The prompts' shared difficulty (SD 1) cancels in the paired difference: the interval is
    # about 2 x 1.96 x 0.3 / sqrt(64) wide, not 1.96 x 1 / sqrt(64).
    assert gap.low > 0.3 and gap.high < 0.7 and gap.high - gap.low < 0.3
    assert findings.gap_interval(at, "a", ["b", "pi_ref"]).estimate == pytest.approx(
        findings.gap_interval(at, "a", ["b"]).estimate
    )
    bon = findings.gap_interval(at, "bon N=8", ["a"])
    assert bon.low > 0.3  # BoN rows (seed -1) are the same for every seed
    with pytest.raises(ValueError, match="others"):
        findings.gap_interval(at, "a", [])


def test_temperature_table_has_intervals_and_standard_errors_per_temperature():
    points = _temperature_points(np.random.default_rng(1))
    table = findings.temperature_table(points)
    assert len(table) == 8 and set(table["temperature"]) == {0.5, 1.0}
    row = table[(table["config"] == "a") & (table["temperature"] == 0.5)].iloc[0]
    assert row["reward_low"] < row["reward"] < row["reward_high"]
    # The SE is the bootstrap SD: the 95% interval spans about 2 x 1.96 of it.
    assert (row["reward_high"] - row["reward_low"]) / row["reward_se"] == pytest.approx(
        3.92, rel=0.25
    )
    ref = table[table["config"] == "pi_ref"].iloc[0]
    assert ref["win_rate"] == ref["win_rate_low"] == ref["win_rate_high"] == 0.5


def test_summary_variety_counts_ties_of_the_reward_model_not_of_the_penalty():
    class Cache:
        def __init__(self, rewards, ended, texts):
            self._r, self._c = np.asarray(rewards, float), {"ended": ended, "texts": texts}

        def rewards(self):
            return self._r

        def column(self, name):
            return self._c[name]

    # Prompt 0: 4 distinct finished texts and 4 unfinished at r_EOS = -8; prompt 1: one text
    # written 6 times.
    rewards = [[1, 2, 3, 4, -8, -8, -8, -8], [5, 5, 5, 5, 5, 5, 1, 2]]
    ended = [[True] * 4 + [False] * 4, [True] * 8]
    texts = [list("abcdefgh"), ["x"] * 6 + ["y", "z"]]
    table = findings.summary_variety(Cache(rewards, ended, texts), first=8).set_index("statistic")
    assert table.loc["share of distinct texts", "estimate"] == pytest.approx((1 + 3 / 8) / 2)
    assert table.loc["share of the most frequent reward-model score", "estimate"] == pytest.approx(
        (1 / 8 + 6 / 8) / 2
    )
    assert table.loc[
        "share of the most frequent reward (r_EOS included)", "estimate"
    ] == pytest.approx((4 / 8 + 6 / 8) / 2)
    assert table.loc["EOS rate", "estimate"] == pytest.approx(0.75)
    claims = findings.variety_claims(table, seeds=[0])
    assert [c.claim.split(":")[0] for c in claims] == ["varied summaries"] * 2 + [
        "pi_ref ends within the budget 70%-95% of the time (EOS rate minus 0.825)"
    ]


def test_se_table_formats_means_and_blanks_skipped_methods():
    table = findings.temperature_table(_temperature_points(np.random.default_rng(2)))
    kl = findings.se_table(table, "kl", skip_methods=["bon"])
    assert list(kl.columns) == [0.5, 1.0] and kl.index[0] == "a"
    assert kl.loc["bon N=8", 0.5] == "" and kl.loc["a", 0.5].startswith("0.500 ± ")
