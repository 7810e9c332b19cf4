"""The analysis notebooks' claims as functions: each returns estimates with 95% intervals.

A sweep's runs are crossed with its test prompts: every run is evaluated on the same prompts and
every configuration is trained once per seed. ``run_points`` gathers the final evaluation of each
run per prompt (``TrainResult.per_prompt``) into one long table; ``cube`` arranges one metric as
a (configurations, seeds, prompts) array. Every interval below comes from
``vbon.stats.crossed_bootstrap``: seeds and prompts are resampled together for all
configurations at once, so the comparisons between methods stay paired.

- ``frontier_membership``: how often each method's configurations lie on the Pareto frontier of
  (KL, metric), pi_ref included (the paper's headline claim counts frontier points per method).
- ``matched_kl_gap``: one method's metric minus another's at the same KL (linear interpolation
  along the other method's configurations), e.g. vBoN against KL-RL: the "closer to BoN" claim.
- ``paired_difference``: a metric of one configuration minus another's (exact vs bound L, M
  ablation).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from vbon.evaluate import pareto_frontier
from vbon.stats import Interval, crossed_bootstrap, mean_ci
from vbon.theory import sampled_optimum as theory_sampled_optimum

__all__ = [
    "KL_AXIS",
    "config_label",
    "variant_label",
    "run_points",
    "cube",
    "point_table",
    "frontier_membership",
    "matched_kl_gap",
    "paired_difference",
    "row_interval",
    "optimisation_gaps",
    "enumerable_runs",
    "distill_enumerable",
    "bon_intervals",
    "enumerable_per_seed",
    "reference_points",
    "temperature_points",
    "temperature_table",
    "gap_interval",
    "evaluations_agree",
    "summary_variety",
    "variety_claims",
    "reward_model_checks",
    "reward_model_claims",
    "bon_kl_validity",
    "samples_side_by_side",
    "gold_vs_proxy",
    "vbon_sweep_claims",
    "temperature_claims",
    "distill_claims",
    "kl_estimator_se",
    "kl_estimator_claims",
    "reference_cache_claims",
    "se_table",
]

METRICS = ("reward", "win_rate", "kl", "kl_k1", "kl_k3", "length")

KL_AXIS = "kl_rb"
"""The estimate behind the ``kl`` column of every trained policy's points, hence the KL axis of
the frontier plots and of every matched-KL comparison: the Rao-Blackwellised KL
(``vbon.evaluate.kl_rb``, Amini, Vieira and Cotterell 2025), the exact next-token KL summed
along each sampled prefix. Unbiased like k1 and k3, never negative, and Rao-Blackwellised
position by position (the sum is not guaranteed less noisy than k1, but measured on notebook
06's runs its SE is 0.66 of k1's and 0.41 of k3's on average); the evaluation also keeps
``kl_k1`` and ``kl_k3``."""


def _kl_axis(per: pd.DataFrame, run: Any) -> pd.DataFrame:
    """A per-prompt evaluation with ``kl`` = ``KL_AXIS`` (k1 and k3 kept beside it)."""
    if KL_AXIS not in per:
        raise ValueError(
            f"run {run}: its evaluation has no {KL_AXIS} (written before vbon recorded it); "
            "train it again (TrainConfig overwrite=True, or delete the run directory)"
        )
    return per.assign(kl=per[KL_AXIS])


def variant_label(row: Any) -> str:
    """The quantile options of a sweep row that differ from vBoN's defaults, as a label suffix:
    " identity", " exp2", " posterior", " Z=references" (empty for the paper's vbon)."""
    parts = []
    transform = getattr(row, "transform", None)
    if isinstance(transform, str) and transform != "log":
        t = getattr(row, "transform_t", None)
        parts.append(transform + (f"{float(t):g}" if t is not None and np.isfinite(t) else ""))
    estimator = getattr(row, "cdf_estimator", None)
    if isinstance(estimator, str) and estimator != "add_one":
        parts.append(estimator)
    log_z = getattr(row, "offline_log_z", None)
    if isinstance(log_z, str) and log_z != "closed":
        parts.append(f"Z={log_z}")
    return "".join(" " + p for p in parts)


def config_label(
    method: str, n: Any = None, beta: Any = None, max_m: Any = None, variant: str = ""
) -> str:
    """A configuration's name without its seed: "vbon N=8", "kl_rl beta=0.143", ...;
    ``variant`` (``variant_label``) is appended."""
    if method == "kl_rl":
        head = f"kl_rl beta={float(beta):.3g}"
    else:
        pair = method in ("bon_sft", "bonbon")  # n reference samples, not a BoN target N
        head = f"{method} n={int(n)}" if pair else f"{method} N={int(n)}"
    if max_m is not None and not (isinstance(max_m, float) and np.isnan(max_m)):
        head += f" M={int(max_m)}"
    return head + variant


def run_points(table: pd.DataFrame) -> pd.DataFrame:
    """The final evaluation of every run of a sweep table (``run_sweep``), per test prompt.

    Columns: config, method, n, beta, max_m, seed, prompt, and the metrics (reward, win_rate,
    kl = ``KL_AXIS``, kl_k1, kl_k3, kl_rb, length).
    """
    from vbon.train.loop import load_run

    parts = []
    for row in table.itertuples(index=False):
        per = load_run(row.run_dir).per_prompt()
        if per is None:
            raise ValueError(f"table: run {row.run_dir} has no per-prompt evaluation; retrain it")
        max_m = getattr(row, "max_m", None)
        parts.append(
            _kl_axis(per, row.run_dir).assign(
                config=config_label(row.method, row.n, row.beta, max_m, variant_label(row)),
                method=row.method,
                n=row.n,
                beta=row.beta,
                max_m=max_m,
                seed=int(row.seed),
            )
        )
    out = pd.concat(parts, ignore_index=True)
    lead = ["config", "method", "n", "beta", "max_m", "seed", "prompt"]
    return out[lead + [c for c in out.columns if c not in lead]]


def cube(points: pd.DataFrame, metric: str, configs: Sequence[str]) -> np.ndarray:
    """``metric`` as a (configs, seeds, prompts) array; every config needs every seed and prompt."""
    wide = points.pivot_table(index=["config", "seed"], columns="prompt", values=metric)
    seeds = sorted(points["seed"].unique())
    prompts = wide.columns
    out = np.empty((len(configs), len(seeds), len(prompts)))
    for i, c in enumerate(configs):
        try:
            out[i] = wide.loc[c].reindex(seeds).to_numpy()
        except KeyError:
            raise ValueError(f"configs: no runs of {c!r}") from None
    if np.isnan(out).any():
        raise ValueError(f"points: {metric} misses some (config, seed, prompt) cells")
    return out


def _configs(points: pd.DataFrame) -> tuple[list[str], list[str]]:
    first = points.drop_duplicates("config")
    return first["config"].tolist(), first["method"].tolist()


def point_table(points: pd.DataFrame, metrics: Sequence[str] = ("reward", "win_rate", "kl")):
    """Each configuration's mean metrics with their intervals (seeds and prompts resampled).

    Returns a DataFrame: config, method, n, beta, seeds, and per metric its estimate,
    ``<metric>_low`` and ``<metric>_high``.
    """
    configs, methods = _configs(points)
    cubes = {m: cube(points, m, configs) for m in metrics}
    _, n_seeds, n_prompts = next(iter(cubes.values())).shape

    def stat(s: np.ndarray, p: np.ndarray) -> np.ndarray:
        return np.concatenate([c[:, s][:, :, p].mean(axis=(1, 2)) for c in cubes.values()])

    est, lo, hi = crossed_bootstrap(stat, n_seeds, n_prompts)
    first = points.drop_duplicates("config").set_index("config")
    out = pd.DataFrame({"config": configs, "method": methods})
    for key in ("n", "beta", "max_m"):
        out[key] = first.loc[configs, key].to_numpy()
    out["seeds"] = n_seeds
    k = len(configs)
    for j, m in enumerate(metrics):
        out[m], out[f"{m}_low"], out[f"{m}_high"] = (a[j * k : (j + 1) * k] for a in (est, lo, hi))
    return out


def frontier_membership(
    points: pd.DataFrame,
    metric: str,
    ref: np.ndarray,
    *,
    methods: Sequence[str] | None = None,
    headline: tuple[str, Sequence[str]] | None = None,
) -> tuple[pd.DataFrame, Interval | None]:
    """The share of each method's configurations on the (KL, ``metric``) Pareto frontier.

    The frontier is taken over every configuration's mean point and pi_ref at KL 0 with metric
    ``ref`` (its per-prompt values, (prompts,)); lower KL and higher metric are better. With
    ``headline = (method, others)`` also the interval of the method's share minus the largest
    share among ``others`` (the paper's claim: vBoN is most often on the frontier).

    Returns:
        (a table method, share, share_low, share_high, configs; the headline interval or None)
    """
    configs, config_methods = _configs(points)
    x = cube(points, "kl", configs)
    y = cube(points, metric, configs)
    ref = np.asarray(ref, dtype=float)
    if ref.shape != (y.shape[2],):
        raise ValueError(f"ref: expected one value per prompt, {y.shape[2]}, got {ref.shape}")
    names = list(dict.fromkeys(methods or config_methods))
    member = np.array([[m == name for m in config_methods] for name in names], dtype=float)
    counts = member.sum(axis=1)
    if (counts == 0).any():
        missing = [n for n, c in zip(names, counts, strict=True) if c == 0]
        raise ValueError(f"methods: no configurations of {missing}")

    def shares(s: np.ndarray, p: np.ndarray) -> np.ndarray:
        xs = np.r_[0.0, x[:, s][:, :, p].mean(axis=(1, 2))]
        ys = np.r_[ref[p].mean(), y[:, s][:, :, p].mean(axis=(1, 2))]
        on = pareto_frontier(xs, ys)[1:].astype(float)
        out = member @ on / counts
        if headline is not None:
            lead = out[names.index(headline[0])]
            rest = max(out[names.index(o)] for o in headline[1])
            out = np.r_[out, lead - rest]
        return out

    est, lo, hi = crossed_bootstrap(shares, x.shape[1], x.shape[2])
    k = len(names)
    table = pd.DataFrame(
        {
            "method": names,
            "share": est[:k],
            "share_low": lo[:k],
            "share_high": hi[:k],
            "configs": counts.astype(int),
        }
    )
    unit = f"{x.shape[1]} seeds x {x.shape[2]} prompts resampled"
    head = Interval(float(est[k]), float(lo[k]), float(hi[k]), unit) if headline else None
    return table, head


def matched_kl_gap(
    points: pd.DataFrame, metric: str, method: str, other: str, *, anchor: float | None = None
) -> pd.DataFrame:
    """``method``'s metric minus ``other``'s at the same KL, per configuration of ``method``.

    ``other``'s configurations, sorted by KL, are joined by straight lines (from pi_ref's point
    (0, ``anchor``) when given) and read at each of ``method``'s KLs; beyond ``other``'s largest
    KL its last point is used. Also the mean gap over ``method``'s configurations (last row,
    config "mean"). Intervals resample seeds and prompts.
    """
    configs, config_methods = _configs(points)
    x = cube(points, "kl", configs)
    y = cube(points, metric, configs)
    mine = [i for i, m in enumerate(config_methods) if m == method]
    theirs = [i for i, m in enumerate(config_methods) if m == other]
    if not mine or not theirs:
        raise ValueError(f"method, other: need configurations of both {method!r} and {other!r}")

    def gaps(s: np.ndarray, p: np.ndarray) -> np.ndarray:
        xm = x[:, s][:, :, p].mean(axis=(1, 2))
        ym = y[:, s][:, :, p].mean(axis=(1, 2))
        order = np.argsort(xm[theirs])
        xs, ys = xm[theirs][order], ym[theirs][order]
        if anchor is not None:
            xs, ys = np.r_[0.0, xs], np.r_[anchor, ys]
        g = ym[mine] - np.interp(xm[mine], xs, ys)
        return np.r_[g, g.mean()]

    est, lo, hi = crossed_bootstrap(gaps, x.shape[1], x.shape[2])
    return pd.DataFrame(
        {
            "config": [configs[i] for i in mine] + ["mean"],
            "gap": est,
            "gap_low": lo,
            "gap_high": hi,
        }
    )


def paired_difference(
    points: pd.DataFrame,
    pairs: Sequence[tuple[str, str]],
    metrics: Sequence[str] = ("reward", "win_rate", "kl"),
) -> pd.DataFrame:
    """Metric of configuration a minus configuration b for each pair (a, b), with intervals.

    The same seeds and prompts are resampled for both sides, so the shared prompts' difficulty
    cancels. Returns one row per (pair, metric): a, b, metric, difference, low, high.
    """
    configs = sorted({c for pair in pairs for c in pair})
    cubes = {m: cube(points, m, configs) for m in metrics}
    idx = [(configs.index(a), configs.index(b)) for a, b in pairs]
    _, n_seeds, n_prompts = next(iter(cubes.values())).shape

    def diffs(s: np.ndarray, p: np.ndarray) -> np.ndarray:
        out = []
        for c in cubes.values():
            mean = c[:, s][:, :, p].mean(axis=(1, 2))
            out += [mean[a] - mean[b] for a, b in idx]
        return np.asarray(out)

    est, lo, hi = crossed_bootstrap(diffs, n_seeds, n_prompts)
    rows = []
    for j, m in enumerate(metrics):
        for q, (a, b) in enumerate(pairs):
            k = j * len(pairs) + q
            rows.append(
                {"a": a, "b": b, "metric": m, "difference": est[k], "low": lo[k], "high": hi[k]}
            )
    return pd.DataFrame(rows)


def row_interval(row: Mapping[str, Any], column: str, *, unit: str, minus: float = 0.0) -> Interval:
    """One row of a findings table as an ``Interval``, shifted by ``-minus``.

    ``column`` with ``<column>_low``/``<column>_high`` (``point_table``), or ``difference``,
    ``gap`` with ``low``/``high`` or ``gap_low``/``gap_high`` (``paired_difference``,
    ``matched_kl_gap``). E.g. a win rate minus 1/2: ``row_interval(row, "win_rate", minus=0.5)``.
    """
    for low, high in ((f"{column}_low", f"{column}_high"), ("low", "high")):
        if low in row and high in row:
            values = (float(row[column]), float(row[low]), float(row[high]))
            return Interval(*(v - minus for v in values), unit)
    raise ValueError(f"row: no interval columns for {column!r} in {list(row)}")


def optimisation_gaps(plateaus: pd.DataFrame, ref_rewards: np.ndarray) -> pd.DataFrame:
    """How far each RL configuration of a text sweep ended from its objective's optimum.

    ``plateaus``: ``vbon.train.convergence.sweep_plateaus`` rows (``n``, ``beta`` and ``final`` =
    the mean logged J over a run's last quarter). ``ref_rewards``: the train prompts' (prompts, M) reference
    rewards, from which ``vbon.theory.sampled_optimum`` gives J*. Returns per configuration
    (index) method, beta, final (mean over seeds) and its SD, optimum, ``gap`` = J* - final in
    J's units, and ``kl_to_optimum`` = gap / beta, the same distance in nats (J* - J(pi) =
    beta KL(pi || pi*) for the maximiser pi* of J). BOND and J-BOND are left out: their logged J
    is vBoN's, while they optimise the Jeffreys divergence (J-BOND against a moving anchor).
    """
    rows = []
    for config, part in plateaus.groupby("config", sort=False):
        method, beta = part["method"].iloc[0], float(part["beta"].iloc[0])
        if method not in ("vbon", "vbon_exact", "kl_rl"):
            continue
        value = beta if method == "kl_rl" else int(part["n"].iloc[0])
        optimum = theory_sampled_optimum(method, value, ref_rewards)
        final = float(part["final"].mean())
        rows.append(
            {
                "config": config,
                "method": method,
                "beta": beta,
                "final": final,
                "final_sd": float(part["final"].std()),
                "optimum": optimum,
                "gap": optimum - final,
                "kl_to_optimum": (optimum - final) / beta,
            }
        )
    return pd.DataFrame(rows).set_index("config")


def enumerable_runs(world: Any, sweep: pd.DataFrame) -> pd.DataFrame:
    """Every run of an enumerable-world sweep where it ended, exactly (``EnumerableWorld.report``),
    with its configuration label and ``kl_to_optimum`` = gap / beta = KL(pi || pi*) in nats."""
    from vbon.train.loop import load_run

    runs = pd.DataFrame([world.report(load_run(d)) for d in sweep["run_dir"]])
    runs["config"] = [
        config_label(r.method, r.n, r.beta, variant=variant_label(s))
        for r, s in zip(runs.itertuples(), sweep.itertuples(), strict=True)
    ]
    if "gap" in runs:
        runs["kl_to_optimum"] = runs["gap"] / runs["beta"]
    return runs


def distill_enumerable(world: Any, sweep: pd.DataFrame) -> pd.DataFrame:
    """Where each BoNBoN, BOND and J-BOND run of an enumerable-world sweep ended against the
    Best-of-N it distils, exactly: KL(pi || pi_BoN(N)) and pi_ref's KL to the same pi_BoN(N).

    N is the run's target for bonbon and bond; J-BOND and iterated BOND have none (their anchor
    moves), so theirs is the nearest pi_BoN(N) to where it ended
    (``EnumerableWorld.nearest_bon``). One row per run:
    config, method, seed, n, kl_to_bon, ref_to_bon and drop = ref_to_bon - kl_to_bon.
    """
    from vbon.experiment import DISTILL_METHODS
    from vbon.train.loop import load_run

    ref_lp = world.logprobs(world.model)
    rows = []
    for row in sweep[sweep["method"].isin(DISTILL_METHODS)].itertuples(index=False):
        run = load_run(row.run_dir)
        policy, _ = run.load_policy()
        temperature = run.config.temperature or 1.0
        if run.config.moving_anchor:
            n, kl = world.nearest_bon(policy, temperature=temperature)
        else:
            n = int(row.n)
            kl = world.kl(world.logprobs(policy, temperature), world.bon_probs(n))
        ref = world.kl(ref_lp, world.bon_probs(n))
        rows.append(
            {
                "config": config_label(row.method, row.n, row.beta),
                "method": row.method,
                "seed": int(row.seed),
                "n": int(n),
                "kl_to_bon": kl,
                "ref_to_bon": ref,
                "drop": ref - kl,
            }
        )
    return pd.DataFrame(rows)


def bon_intervals(bon: pd.DataFrame, per_prompt: pd.DataFrame) -> pd.DataFrame:
    """BoN's table (``evaluate_bon_on_task``) with a 95% interval per metric over the test
    prompts (``<metric>_low``/``_high``; BoN has no training seed), and whether each KL
    estimate lies above the bound log N - (N-1)/N and whether the bound lies in its interval."""
    out = bon.copy()
    for metric in ("reward", "win_rate", "kl"):
        cis = [mean_ci(per_prompt.loc[per_prompt["N"] == n, metric]) for n in out["N"]]
        out[f"{metric}_low"] = [c.low for c in cis]
        out[f"{metric}_high"] = [c.high for c in cis]
    out["estimate above bound"] = out["kl"] > out["kl_bound"] + 1e-12
    out["bound inside interval"] = out["kl_low"].le(out["kl_bound"]) & out["kl_bound"].le(
        out["kl_high"]
    )
    return out


def enumerable_per_seed(
    runs: pd.DataFrame, ref_to_bon: Mapping[int, float], bias: Mapping[int, float]
) -> pd.DataFrame:
    """The enumerable world's three vBoN quantities, one row per seed (the mean over N).

    ``runs``: ``enumerable_runs``. ``ref_to_bon``: KL(pi_ref || pi_BoN(N)) per N. ``bias``:
    KL(pi*_L || pi_BoN(N)), the bound's optimum's distance to BoN, per N. Columns: how much
    closer to pi_BoN a vBoN (L) run ended than pi_ref is; the bound's run's KL to pi_BoN minus
    the exact reward's run's (same N and seed); and the bound's run's KL to its own optimum minus
    the optimum's KL to pi_BoN (optimisation error against the objective's bias).
    """
    vb, ex = (runs[runs["method"] == m].set_index(["seed", "n"]) for m in ("vbon", "vbon_exact"))
    n_of = vb.index.get_level_values("n")
    table = pd.DataFrame(
        {
            "KL(pi_ref || BoN) - KL(pi_L || BoN)": n_of.map(ref_to_bon) - vb["kl_to_bon"],
            "KL(pi_L || BoN) - KL(pi_exact || BoN)": vb["kl_to_bon"] - ex["kl_to_bon"],
            "KL(pi_L || pi*) - KL(pi* || BoN)": vb["kl_to_optimum"] - n_of.map(bias),
        }
    )
    return table.groupby("seed").mean()


# -- the temperature sweep (TL;DR, notebook 07) ---------------------------------------------------
def temperature_points(
    spec: Any,
    sweep: pd.DataFrame,
    temperatures: Sequence[float],
    *,
    bon_n: Sequence[int],
    bon_pool: int,
    n_resamples: int = 4,
    workers: int = 1,
) -> tuple[pd.DataFrame, dict[float, Any]]:
    """Every policy of ``sweep``, BoN at each N of ``bon_n`` and pi_ref, at each temperature T,
    per test prompt (the unit the intervals resample).

    Policies are evaluated by ``vbon.evaluate.evaluate_run`` (each as its trainer evaluated it,
    at T), against a test reference cache drawn at T; pi_ref is loaded once per process, for the
    policies' KL and BoN's pools; BoN picks from ``bon_pool`` fresh pi_ref samples per prompt at
    T (``evaluate_bon_on_task``); pi_ref's row is its test cache at T (reward and EOS rate of
    its ``eval_m`` samples, win rate 1/2, KL 0). ``workers`` > 1 spreads the temperatures over
    that many processes (CPU: one per core; every number is the same as with one, since each
    evaluation and pool has its own seed).

    Returns the long table (config, method, n, beta, seed (-1: no training seed), temperature,
    prompt, reward, win_rate, kl (``KL_AXIS``), kl_k1, kl_k3, eos, length; BoN and pi_ref rows
    have no k1, k3 or length) and the BoN pool of each temperature.
    """
    from vbon._checks import check_int

    workers = check_int(workers, "workers", minimum=1)
    units = [(spec, sweep, float(t), tuple(bon_n), bon_pool, n_resamples) for t in temperatures]
    if workers > 1 and len(units) > 1:
        from vbon.train.sweep import _worker_pool

        with _worker_pool(min(workers, len(units))) as pool:
            done = list(pool.map(_temperature_unit, units, [True] * len(units)))
    else:
        done = [_temperature_unit(unit) for unit in units]
    out = pd.concat([part for part, _ in done], ignore_index=True)
    pools = {t: pool for (_, pool), t in zip(done, temperatures, strict=True)}
    lead = ["config", "method", "n", "beta", "seed", "temperature", "prompt"]
    return out[lead + [c for c in out.columns if c not in lead]], pools


_REFERENCE_MODELS: dict[str, Any] = {}  # pi_ref per spec, loaded once per process


def _temperature_unit(unit: tuple, in_worker: bool = False) -> tuple[pd.DataFrame, Any]:
    """``temperature_points`` at one temperature: pi_ref's, BoN's and every policy's rows."""
    from vbon.evaluate import evaluate_bon_on_task, evaluate_run
    from vbon.reference import build_task_reference
    from vbon.tasks import get_task
    from vbon.train.loop import load_run

    spec, sweep, t, bon_n, bon_pool, n_resamples = unit
    if in_worker:  # one thread per worker process, as the sweep's runs
        import torch

        torch.set_num_threads(1)
    key = spec.fingerprint()
    if key not in _REFERENCE_MODELS:
        _REFERENCE_MODELS.clear()
        _REFERENCE_MODELS[key] = spec.load_task().load_reference()
    reference = _REFERENCE_MODELS[key]
    task = get_task(spec.task, spec.profile, **spec.task_overrides, temperature=t)
    ref = build_task_reference(
        task, "test", spec.eval_m, seed=spec.ref_seed, max_prompts=spec.test_prompts
    )
    parts = [reference_points(ref).assign(temperature=t)]
    _, pool, per = evaluate_bon_on_task(
        task,
        bon_n,
        prompts=spec.test_prompts,
        m=spec.eval_m,
        pool_size=bon_pool,
        n_resamples=n_resamples,
        ref_seed=spec.ref_seed,
        per_prompt=True,
        reference=reference,
    )
    per = per.assign(config=[f"bon N={n}" for n in per["N"]], method="bon", n=per["N"])
    parts.append(per.drop(columns="N").assign(seed=-1, temperature=t))
    for row in sweep.itertuples(index=False):
        ev = evaluate_run(load_run(row.run_dir), task, reference=reference[0], progress=False)
        parts.append(
            _kl_axis(ev.per_prompt, row.run_dir).assign(
                config=config_label(row.method, row.n, row.beta),
                method=row.method,
                n=row.n,
                beta=row.beta,
                seed=int(row.seed),
                temperature=t,
            )
        )
    return pd.concat(parts, ignore_index=True), pool


def reference_points(cache: Any) -> pd.DataFrame:
    """pi_ref's rows of a points table, per test prompt, from its test reference cache: the
    mean reward and EOS rate of the cached samples, win rate 1/2 and KL 0 (by definition);
    config "pi_ref", method "ref", seed -1 (no training seed)."""
    return pd.DataFrame(
        {
            "config": "pi_ref",
            "method": "ref",
            "seed": -1,
            "prompt": np.arange(len(cache)),
            "reward": cache.rewards().mean(axis=1),
            "win_rate": 0.5,
            "kl": 0.0,
            "eos": np.asarray(cache.column("ended"), dtype=float).mean(axis=1),
        }
    )


def _seed_prompt(part: pd.DataFrame, metric: str, seeds: Sequence[int]) -> np.ndarray:
    """One configuration's ``metric`` as a (seeds, prompts) array; a configuration without a
    training seed (BoN, pi_ref: seed -1) is the same for every seed."""
    wide = part.pivot_table(index="seed", columns="prompt", values=metric)
    if list(wide.index) == [-1]:
        return np.repeat(wide.to_numpy(), len(seeds), axis=0)
    out = wide.reindex(seeds).to_numpy()
    if np.isnan(out).any():
        raise ValueError(f"points: {metric} misses some (seed, prompt) cells")
    return out


def _seeds(points: pd.DataFrame) -> list[int]:
    seeds = sorted(int(s) for s in points["seed"].unique() if s >= 0)
    return seeds or [-1]


def temperature_table(
    points: pd.DataFrame, metrics: Sequence[str] = ("reward", "win_rate", "kl", "eos")
) -> pd.DataFrame:
    """Each configuration's mean metrics at each temperature with 95% intervals (training seeds
    and test prompts resampled together, one bootstrap per temperature for all configurations,
    so they stay paired) and standard errors (the SD of the bootstrap means).

    Returns one row per (config, temperature): config, method, temperature, and per metric its
    estimate, ``_low``, ``_high`` and ``_se``.
    """
    seeds = _seeds(points)
    rows = []
    for t, at_t in points.groupby("temperature", sort=True):
        configs = list(dict.fromkeys(at_t["config"]))
        groups = {c: at_t[at_t["config"] == c] for c in configs}
        present = {m: [c for c in configs if groups[c][m].notna().all()] for m in metrics}
        cubes = {
            m: np.stack([_seed_prompt(groups[c], m, seeds) for c in present[m]]) for m in metrics
        }

        def stat(s: np.ndarray, p: np.ndarray, cubes: dict = cubes) -> np.ndarray:
            return np.concatenate([c[:, s][:, :, p].mean(axis=(1, 2)) for c in cubes.values()])

        n_prompts = next(iter(cubes.values())).shape[2]
        est, lo, hi, spread = crossed_bootstrap(stat, len(seeds), n_prompts, standard_error=True)
        for c in configs:
            row = {"config": c, "method": groups[c]["method"].iloc[0], "temperature": t}
            offset = 0
            for m in metrics:
                if c in present[m]:
                    j = offset + present[m].index(c)
                    row.update(
                        {m: est[j], f"{m}_low": lo[j], f"{m}_high": hi[j], f"{m}_se": spread[j]}
                    )
                offset += len(present[m])
            rows.append(row)
    return pd.DataFrame(rows)


def gap_interval(
    points: pd.DataFrame, config: str, others: Sequence[str], metric: str = "reward"
) -> Interval:
    """``config``'s mean ``metric`` minus the largest mean among ``others`` (one temperature's
    points), with its 95% interval: seeds and prompts resampled, the max taken in each
    resample. BoN and pi_ref rows (no training seed) are the same for every seed."""
    seeds = _seeds(points)
    a = _seed_prompt(points[points["config"] == config], metric, seeds)
    bs = [_seed_prompt(points[points["config"] == o], metric, seeds) for o in others]
    if not bs:
        raise ValueError("others: need at least one configuration to compare with")

    def stat(s: np.ndarray, p: np.ndarray) -> float:
        return float(a[np.ix_(s, p)].mean() - max(b[np.ix_(s, p)].mean() for b in bs))

    est, lo, hi = crossed_bootstrap(stat, len(seeds), a.shape[1])
    unit = f"{len(seeds) if seeds != [-1] else 0} seeds x {a.shape[1]} prompts resampled"
    return Interval(float(est), float(lo), float(hi), unit)


def evaluations_agree(
    points: pd.DataFrame, sweep: pd.DataFrame, temperature: float
) -> pd.DataFrame:
    """Each run's evaluation at its training ``temperature`` in ``points`` (``evaluate_run``)
    beside the final evaluation its trainer wrote (notebook 06): the per-run means of reward,
    win rate and KL, their difference, and that difference in units of the trainer's SE."""
    from vbon.train.loop import load_run

    at = points[points["temperature"] == temperature]
    rows = []
    for row in sweep.itertuples(index=False):
        run = load_run(row.run_dir)
        mine = at[(at["config"] == config_label(row.method, row.n, row.beta))]
        mine = mine[mine["seed"] == int(row.seed)]
        for metric, key in (("reward", "reward"), ("win_rate", "win_rate"), ("kl", KL_AXIS)):
            trainer, se = float(run.metrics[key]), float(run.metrics[f"{key}_se"])
            diff = float(mine[metric].mean()) - trainer
            rows.append(
                {
                    "run": row.run_name,
                    "metric": metric,
                    "06 (trainer)": trainer,
                    "07 (evaluate_run)": trainer + diff,
                    "difference": diff,
                    "in SEs": abs(diff) / se if se > 0 else (0.0 if diff == 0 else np.inf),
                }
            )
    return pd.DataFrame(rows)


# -- the TL;DR world's statistics (notebook 05) ---------------------------------------------------
def summary_variety(cache: Any, *, first: int = 32) -> pd.DataFrame:
    """How varied and how finished pi_ref's summaries are, per prompt, from a reference cache's
    first ``first`` draws: the share of distinct texts (when the cache kept them), the share of
    the most frequent reward-model score among the finished summaries (and of the most frequent
    reward, the unfinished ones' r_EOS included), and the share that ended with EOS; the mean
    over prompts with a 95% interval resampling the prompts. One row per statistic: estimate,
    low, high, prompts."""
    rewards = cache.rewards()[:, :first]
    ended = np.asarray(cache.column("ended"), dtype=bool)[:, :first]
    # Unfinished summaries all get r_EOS by design: the ties that matter are the reward
    # model's, among finished summaries (a repeated text), counted out of all draws.
    per_prompt = {
        "share of the most frequent reward-model score": [
            np.unique(r[e], return_counts=True)[1].max(initial=0) / r.size
            for r, e in zip(rewards, ended, strict=True)
        ],
        "share of the most frequent reward (r_EOS included)": [
            np.unique(r, return_counts=True)[1].max() / r.size for r in rewards
        ],
        "EOS rate": ended.mean(axis=1),
    }
    try:
        texts = cache.column("texts")
    except (KeyError, ValueError):
        texts = None
    if texts is not None:
        per_prompt = {
            "share of distinct texts": [len(set(t[:first])) / len(t[:first]) for t in texts],
            **per_prompt,
        }
    rows = []
    for name, values in per_prompt.items():
        ci = mean_ci(np.asarray(values, dtype=float))
        rows.append(
            {
                "statistic": name,
                "estimate": ci.estimate,
                "low": ci.low,
                "high": ci.high,
                "prompts": len(rewards),
                "draws per prompt": rewards.shape[1],
            }
        )
    return pd.DataFrame(rows)


# The toy-tldr world's bars on its summaries (vbon.toy.build.TLDR_BARS): what makes it behave
# like summarisation. Claims against them are decided by the interval.
VARIETY_BARS = {
    "share of distinct texts": (">", 0.75),
    "share of the most frequent reward-model score": ("<", 0.10),
}
EOS_BAND = (0.70, 0.95)


def variety_claims(variety: pd.DataFrame, *, seeds: Sequence[int]) -> list[Any]:
    """Verdicts on ``summary_variety``'s rows (indexed by statistic): distinct texts above 75%,
    the most frequent reward below 10%, the EOS rate inside [0.70, 0.95]."""
    from vbon.stats import decide

    out = []
    for name, (direction, bar) in VARIETY_BARS.items():
        if name in variety.index:
            row = variety.loc[name]
            interval = Interval(
                row["estimate"], row["low"], row["high"], f"{row['prompts']} prompts"
            )
            out.append(
                decide(
                    f"varied summaries: {name} {direction} {bar:g}",
                    interval,
                    seeds=seeds,
                    direction=direction,
                    threshold=bar,
                )
            )
    row = variety.loc["EOS rate"]
    mid, half = sum(EOS_BAND) / 2, (EOS_BAND[1] - EOS_BAND[0]) / 2
    interval = Interval(
        row["estimate"] - mid, row["low"] - mid, row["high"] - mid, f"{row['prompts']} prompts"
    )
    out.append(
        decide(
            f"pi_ref ends within the budget {EOS_BAND[0]:.0%}-{EOS_BAND[1]:.0%} of the time (EOS rate minus {mid:g})",
            interval,
            seeds=seeds,
            direction="within",
            threshold=half,
        )
    )
    return out


def reward_model_checks(
    task: Any, test_ref: Any, *, posts: int = 200, seed: int = 0
) -> pd.DataFrame | None:
    """On the toy-tldr world (None elsewhere: no hidden judgement): the reward model's
    minimal-pair checks (``vbon.toy.quality.reward_model_checks``) on ``posts`` held-out posts,
    and one more row: on the test cache's own summaries, the share of same-prompt pairs of
    finished summaries whose hidden judgements differ by at least 1 that the rewards order the
    same way (``pair_accuracy``; the interval resamples the prompts)."""
    from vbon.tasks.base import TOY_PROFILES

    if task.profile not in TOY_PROFILES or task.name != "tldr":
        return None
    from vbon.toy import posts as P
    from vbon.toy import quality as Q

    known = Q.world_posts()
    held_out = [known[p] for p in list(known)[-posts:]]  # the test split's last posts
    table = Q.reward_model_checks(task.reward_fn, held_out, seed=seed)
    try:
        texts = test_ref.column("texts")
    except (KeyError, ValueError):
        return table
    rewards = test_ref.rewards()
    ended = np.asarray(test_ref.column("ended"), dtype=bool)
    hidden = np.array(
        [
            [P.preference_score(t, bool(e), known[prompt]) for t, e in zip(row, ends, strict=True)]
            for prompt, row, ends in zip(test_ref.prompts, texts, ended, strict=True)
        ]
    )

    def acc(_: np.ndarray, p: np.ndarray) -> float:
        return Q.pair_accuracy(rewards[p], hidden[p], ended[p])

    est, lo, hi = crossed_bootstrap(acc, 1, len(rewards))
    extra = {
        "dimension": "all",
        "change": "pi_ref's own summaries, pairs a fact or an invention apart",
        "accuracy": float(est),
        "low": float(lo),
        "high": float(hi),
        "posts": len(rewards),
        "reward difference": np.nan,
    }
    return pd.concat([table, pd.DataFrame([extra])], ignore_index=True)


def reward_model_claims(checks: pd.DataFrame | None) -> list[Any]:
    """One verdict per dimension of ``reward_model_checks``: the reward model prefers the
    better summary more often than not (the lowest accuracy of the dimension's checks minus 1/2,
    above 0), and on pi_ref's own summaries."""
    from vbon.stats import decide

    if checks is None:
        return []
    out = []
    for dimension, part in checks.groupby("dimension", sort=False):
        worst = part.loc[part["accuracy"].idxmin()]
        interval = Interval(
            worst["accuracy"] - 0.5,
            worst["low"] - 0.5,
            worst["high"] - 0.5,
            f"{int(worst['posts'])} posts",
        )
        out.append(
            decide(
                f"the reward model ranks by {dimension if dimension != 'all' else 'the judgement'}: "
                f"accuracy minus 1/2 of its weakest check ({worst['change']}), above 0",
                interval,
                seeds=[],
            )
        )
    return out


def bon_kl_validity(spec: Any, pools: Mapping[float, Any], bon_n: Sequence[int]) -> pd.DataFrame:
    """Where BoN's exact-formula KL estimate can be trusted, per temperature and N: the share
    of BoN's choices whose estimated F_hat(r(y)) + pi_ref(y) exceeds 1 (the true F never
    allows it; the estimate is then clipped and can leave the bound log N - (N-1)/N)."""
    from vbon.reference import build_task_reference
    from vbon.tasks import get_task

    rows = []
    for t, pool in pools.items():
        task = get_task(spec.task, spec.profile, **spec.task_overrides, temperature=t)
        cdf = build_task_reference(
            task, "test", spec.eval_m, seed=spec.ref_seed, max_prompts=spec.test_prompts
        ).cdf()
        idx = np.arange(len(pool.prompts))
        for n in bon_n:
            pick = pool.best_of(n)
            f_hat = np.exp(cdf.log_cdf(pool.rewards[idx, pick], idx))
            share = float(np.mean(f_hat + np.exp(pool.ref_logprobs[idx, pick]) > 1))
            rows.append({"temperature": t, "N": n, "share with F_hat + pi_ref(y) > 1": share})
    return pd.DataFrame(rows)


def samples_side_by_side(
    task: Any, pool: Any, runs: Mapping[str, Any], *, prompts: int, bon_n: int
) -> pd.DataFrame:
    """For the first ``prompts`` test prompts of ``pool``: a pi_ref summary and BoN's choice at
    ``bon_n`` (from the pool), then one summary of each run's policy (``runs``: label -> run
    directory), each with its reward."""
    from vbon.evaluate import policy_samples

    pick = pool.best_of(bon_n)
    rows = []
    for i in range(min(prompts, len(pool.prompts))):
        title = next((x for x in pool.prompts[i].splitlines() if x.startswith("TITLE:")), "")
        rows.append(
            {
                "prompt": title,
                "who": "pi_ref",
                "text": f"[{pool.rewards[i, 0]:+.2f}] {pool.texts[i][0]}",
            }
        )
        rows.append(
            {
                "prompt": title,
                "who": f"BoN N={bon_n}",
                "text": f"[{pool.rewards[i, pick[i]]:+.2f}] {pool.texts[i][pick[i]]}",
            }
        )
    titles = [r["prompt"] for r in rows[::2]]
    for label, run_dir in runs.items():
        texts = policy_samples(task, pool.prompts[: len(titles)], run_dir)
        rows += [{"prompt": p, "who": label, "text": t} for p, t in zip(titles, texts, strict=True)]
    order = {p: k for k, p in enumerate(dict.fromkeys(r["prompt"] for r in rows))}
    out = pd.DataFrame(rows)
    return out.sort_values("prompt", key=lambda s: s.map(order), kind="stable").reset_index(
        drop=True
    )


def gold_vs_proxy(
    spec: Any, sweep: pd.DataFrame, pool: Any, gold_reward_id: str, *, bon_n: Sequence[int]
) -> pd.DataFrame:
    """Every policy of ``sweep`` and BoN at each N (chosen by the proxy reward from ``pool``, at
    the training temperature) scored by a second, "gold" reward model, with win rates against a
    gold-scored test reference cache: the proxy and gold win rates and what was lost between
    them (a method that overfits the proxy loses more)."""
    from vbon.evaluate import evaluate_run, win_rate
    from vbon.reference import build_task_reference
    from vbon.tasks import get_task

    task = spec.load_task()
    gold_task = get_task(spec.task, spec.profile, **spec.task_overrides, reward_id=gold_reward_id)
    caches = {
        name: build_task_reference(
            t, "test", spec.eval_m, seed=spec.ref_seed, max_prompts=spec.test_prompts
        ).cdf()
        for name, t in (("proxy", task), ("gold", gold_task))
    }
    idx = np.arange(len(pool.prompts))
    rows = []
    for n in bon_n:
        pick = pool.best_of(n)
        chosen = [pool.texts[i][j] for i, j in zip(idx, pick, strict=True)]
        gold = gold_task.reward_fn(pool.prompts, chosen, eos=pool.ended[idx, pick])
        rows.append(
            {
                "config": "pi_ref" if n == 1 else f"bon N={n}",
                "proxy win rate": win_rate(pool.rewards[idx, pick], caches["proxy"]).mean,
                "gold win rate": win_rate(gold, caches["gold"]).mean,
            }
        )
    reference = task.load_reference()[0]
    for row in sweep.itertuples(index=False):
        proxy = evaluate_run(row.run_dir, reference=reference, progress=False)
        gold = evaluate_run(row.run_dir, gold_task, reference=reference, progress=False)
        rows.append(
            {
                "config": config_label(row.method, row.n, row.beta),
                "proxy win rate": proxy.win_rate.mean,
                "gold win rate": gold.win_rate.mean,
            }
        )
    out = pd.DataFrame(rows).groupby("config", sort=False).mean().reset_index()
    out["win rate lost on gold"] = out["proxy win rate"] - out["gold win rate"]
    return out


def vbon_sweep_claims(
    table: pd.DataFrame, points: pd.DataFrame, spec: Any, *, figure: str = ""
) -> list[Any]:
    """The verdicts on a text sweep's final evaluation (notebook 06), each by its interval:

    - every vBoN configuration (bound and exact) beats pi_ref: win rate minus 1/2 above 0;
    - vBoN's KL grows with N (largest minus smallest N of ``spec.n_grid``);
    - vBoN's KL stays below log N - (N-1)/N, the upper bound on BoN's own KL, at each N;
    - the exact reward's configuration beats the bound's in win rate, at each N;
    - vBoN at the largest N ends its summaries more often than pi_ref (EOS rate difference).

    ``table``: ``point_table`` of the runs; ``points``: ``run_points`` plus pi_ref's
    ``reference_points`` (config "pi_ref", seed -1).
    """
    from vbon.bon import kl_bon_bound
    from vbon.stats import decide

    unit = f"{len(spec.seeds)} seeds x {spec.test_prompts} prompts"
    runs = points[points["seed"] >= 0]
    by_config = table.set_index("config")
    n_lo, n_hi = min(spec.n_grid), max(spec.n_grid)
    vbon_rows = by_config[[c.startswith("vbon") for c in by_config.index]]
    out = _beats_ref_claims(vbon_rows, unit=unit, seeds=spec.seeds, figure=figure)
    grows = paired_difference(runs, [(f"vbon N={n_hi}", f"vbon N={n_lo}")], ["kl"]).iloc[0]
    out.append(
        decide(
            f"sanity check: vbon's KL grows with N (KL at N={n_hi} minus KL at N={n_lo})",
            row_interval(grows, "difference", unit=unit),
            seeds=spec.seeds,
            figure=figure,
        )
    )
    out += [
        decide(
            f"vbon N={n}: KL minus BoN's KL bound log N - (N-1)/N, below 0",
            row_interval(by_config.loc[f"vbon N={n}"], "kl", unit=unit, minus=kl_bon_bound(n)),
            seeds=spec.seeds,
            direction="<",
            figure=figure,
        )
        for n in spec.n_grid
    ]
    pairs = [(f"vbon_exact N={n}", f"vbon N={n}") for n in spec.n_grid]
    out += _beats_claims(runs, pairs, unit=unit, seeds=spec.seeds)
    out.append(
        decide(
            f"the EOS penalty teaches vbon N={n_hi} to end: its EOS rate minus pi_ref's, above 0",
            gap_interval(points, f"vbon N={n_hi}", ["pi_ref"], "eos"),
            seeds=spec.seeds,
        )
    )
    return out


def distill_claims(
    table: pd.DataFrame, points: pd.DataFrame, spec: Any, *, figure: str = ""
) -> list[Any]:
    """The verdicts on a sweep's BoNBoN, BOND and J-BOND configurations (notebooks 03 and 06),
    each by its interval, as ``vbon_sweep_claims`` gives vBoN's:

    - each beats pi_ref: win rate minus 1/2 above 0;
    - BoNBoN at n and BOND at N stay below log N - (N-1)/N, the upper bound on the KL of the
      pi_BoN(N) both distil (J-BOND has no fixed target: its anchor moves);
    - vBoN at the same N beats BoNBoN and BOND (win rate difference, above 0), where the sweep
      has that vBoN configuration.

    ``table``: ``point_table`` of the runs; ``points``: ``run_points`` (pi_ref rows ignored).
    """
    from vbon.bon import kl_bon_bound
    from vbon.experiment import DISTILL_METHODS
    from vbon.stats import decide

    unit = f"{len(spec.seeds)} seeds x {spec.test_prompts} prompts"
    runs = points[points["seed"] >= 0]
    by_config = table.set_index("config")
    rows = by_config[by_config["method"].isin(DISTILL_METHODS)]
    out = _beats_ref_claims(rows, unit=unit, seeds=spec.seeds, figure=figure)
    targeted = rows[rows["method"] != "jbond"]
    out += [
        decide(
            f"{c}: KL minus BoN's KL bound log N - (N-1)/N at N={int(row['n'])}, below 0",
            row_interval(row, "kl", unit=unit, minus=kl_bon_bound(int(row["n"]))),
            seeds=spec.seeds,
            direction="<",
            figure=figure,
        )
        for c, row in targeted.iterrows()
    ]
    pairs = [
        (f"vbon N={int(row['n'])}", c)
        for c, row in targeted.iterrows()
        if f"vbon N={int(row['n'])}" in by_config.index
    ]
    if pairs:
        out += _beats_claims(runs, pairs, unit=unit, seeds=spec.seeds, figure=figure)
    return out


def _beats_ref_claims(
    rows: pd.DataFrame, *, unit: str, seeds: Sequence[int], figure: str = ""
) -> list[Any]:
    """ "c beats pi_ref" for each configuration (index) of ``point_table`` rows: win rate - 1/2."""
    from vbon.stats import decide

    return [
        decide(
            f"{c}: win rate against pi_ref minus 1/2, above 0",
            row_interval(row, "win_rate", unit=unit, minus=0.5),
            seeds=seeds,
            figure=figure,
        )
        for c, row in rows.iterrows()
    ]


def _beats_claims(
    runs: pd.DataFrame,
    pairs: Sequence[tuple[str, str]],
    *,
    unit: str,
    seeds: Sequence[int],
    figure: str = "",
) -> list[Any]:
    """ "a beats b" for each (a, b) of ``pairs``: the paired win-rate difference above 0."""
    from vbon.stats import decide

    return [
        decide(
            f"{row['a']} beats {row['b']} (win rate difference, above 0)",
            row_interval(row, "difference", unit=unit),
            seeds=seeds,
            figure=figure,
        )
        for _, row in paired_difference(runs, pairs, ["win_rate"]).iterrows()
    ]


def kl_estimator_se(sweep: pd.DataFrame) -> pd.DataFrame:
    """The standard errors of the three KL estimates of each run's final evaluation, on the
    same samples: k1 (log pi/pi_ref of the sampled tokens), k3 ((rho - 1) - log rho) and the
    Rao-Blackwellised ``kl_rb`` (``vbon.evaluate.kl_rb``), with the ratios rb/k1 and rb/k3.
    One row per run (config, seed); runs evaluated without kl_rb are left out."""
    if "kl_rb_se" not in sweep:
        sweep = sweep.assign(kl_rb_se=np.nan)
    have = sweep.dropna(subset=["kl_rb_se"])
    out = pd.DataFrame(
        {
            "config": [
                config_label(r.method, r.n, r.beta, getattr(r, "max_m", None), variant_label(r))
                for r in have.itertuples(index=False)
            ],
            "method": have["method"].to_numpy(),
            "seed": have["seed"].astype(int).to_numpy(),
        }
    )
    for name in ("kl_k1", "kl_k3", "kl_rb"):
        out[f"{name}_se"] = have[f"{name}_se"].to_numpy(dtype=float)
    out["rb / k1"] = out["kl_rb_se"] / out["kl_k1_se"]
    out["rb / k3"] = out["kl_rb_se"] / out["kl_k3_se"]
    return out


def kl_estimator_claims(se: pd.DataFrame, *, seeds: Sequence[int], figure: str = "") -> list:
    """kl_rb's standard error against k1's and k3's on the same samples (``kl_estimator_se``):
    the ratio minus 1, averaged over a seed's runs, with a Student-t interval over the seeds
    (``vbon.stats.seed_interval``). Every run is evaluated on the same test prompts, so the
    interval is conditional on that prompt set: optimistic about the prompts. With a single seed
    the runs themselves are the units."""
    from vbon.stats import decide, seed_interval

    ratios = se[["seed", "rb / k1", "rb / k3"]].copy()
    ratios[["rb / k1", "rb / k3"]] -= 1.0
    one_seed = ratios["seed"].nunique() < 2
    units = ratios if one_seed else ratios.groupby("seed").mean()
    unit = f"{len(units)} runs of one seed, t-interval" if one_seed else None
    return [
        decide(
            f"kl_rb's standard error is below {other}'s on the same samples "
            f"(SE ratio rb / {other} minus 1, mean over the runs, below 0)",
            seed_interval(units[f"rb / {other}"], unit=unit),
            seeds=seeds,
            direction="<",
            figure=figure,
        )
        for other in ("k1", "k3")
    ]


def temperature_claims(
    points: pd.DataFrame,
    main: str,
    others: Sequence[str],
    bon: str,
    *,
    seeds: Sequence[int],
    figure: str = "",
) -> list[Any]:
    """The paper's temperature claim, three verdicts per temperature of ``points`` (notebook
    07), each a reward difference with its interval (``gap_interval``): ``main`` beats pi_ref;
    ``main`` beats every one of ``others`` (minus the best of them); ``bon`` beats ``main``."""
    from vbon.stats import decide

    out = []
    for t, at_t in points.groupby("temperature"):
        for text, a, b in (
            (f"{main} beats pi_ref", main, ["pi_ref"]),
            (f"{main} beats every other fine-tuned policy (minus the best other's)", main, others),
            (f"{bon} beats {main}", bon, [main]),
        ):
            out.append(
                decide(
                    f"T={t:g}: {text} (reward difference, above 0)",
                    gap_interval(at_t, a, b),
                    seeds=seeds,
                    figure=figure,
                )
            )
    return out


def reference_cache_claims(
    rewards: np.ndarray, fhat_error: Mapping[int, np.ndarray], *, seeds: Sequence[int]
) -> list[Any]:
    """Two verdicts on a train reference cache (notebook 05), intervals over its prompts:
    F_hat from fewer draws approaches F_hat at M (the per-prompt error at the smallest M'
    minus at the largest, above 0; ``fhat_error``: M' -> per-prompt mean |F_hat_M' - F_hat_M|),
    and whether the reward varies more between prompts than within (the between-prompt
    share of the variance, above 1/2)."""
    from vbon.stats import decide

    out = []
    small = sorted(fhat_error)
    if len(small) > 1:
        out.append(
            decide(
                f"F_hat from fewer draws approaches F_hat at M (mean error at M'={small[0]} minus "
                f"at M'={small[-1]}, above 0)",
                mean_ci(fhat_error[small[0]] - fhat_error[small[-1]]),
                seeds=seeds,
            )
        )

    def share(_: np.ndarray, p: np.ndarray) -> float:
        r = rewards[p]
        return float(r.mean(axis=1).var() / r.var())

    est, lo, hi = crossed_bootstrap(share, 1, len(rewards))
    out.append(
        decide(
            "reward varies more between prompts than within (share of the variance between, "
            "above 0.5)",
            Interval(float(est), float(lo), float(hi), f"{len(rewards)} train prompts"),
            seeds=seeds,
            threshold=0.5,
            figure="reference_rewards.png",
        )
    )
    return out


def se_table(table: pd.DataFrame, metric: str, *, skip_methods: Sequence[str] = ()) -> pd.DataFrame:
    """``temperature_table``'s ``metric`` as "mean ± SE" per configuration (rows, in the table's
    order) and temperature (columns); blank where a configuration has no value or its method is
    in ``skip_methods`` (e.g. BoN's KL, an estimate the notebook does not trust)."""
    cells = [
        "" if method in skip_methods or np.isnan(mean) else f"{mean:.3f} ± {se:.3f}"
        for method, mean, se in zip(
            table["method"], table[metric], table[f"{metric}_se"], strict=True
        )
    ]
    wide = table.assign(cell=cells).pivot(index="config", columns="temperature", values="cell")
    return wide.reindex(list(dict.fromkeys(table["config"])))
