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
    "config_label",
    "run_points",
    "cube",
    "point_table",
    "frontier_membership",
    "matched_kl_gap",
    "paired_difference",
    "row_interval",
    "optimisation_gaps",
    "enumerable_runs",
    "bon_intervals",
    "enumerable_per_seed",
]

METRICS = ("reward", "win_rate", "kl", "kl_k1", "length")


def config_label(method: str, n: Any = None, beta: Any = None, max_m: Any = None) -> str:
    """A configuration's name without its seed: "vbon N=8", "kl_rl beta=0.143", ..."""
    if method == "kl_rl":
        head = f"kl_rl beta={float(beta):.3g}"
    else:
        head = f"{method} N={int(n)}" if method != "bon_sft" else f"bon_sft n={int(n)}"
    if max_m is not None and not (isinstance(max_m, float) and np.isnan(max_m)):
        head += f" M={int(max_m)}"
    return head


def run_points(table: pd.DataFrame) -> pd.DataFrame:
    """The final evaluation of every run of a sweep table (``run_sweep``), per test prompt.

    Columns: config, method, n, beta, max_m, seed, prompt, and the metrics (reward, win_rate,
    kl = the k3 estimate, kl_k1, length).
    """
    from vbon.train.loop import load_run

    parts = []
    for row in table.itertuples(index=False):
        per = load_run(row.run_dir).per_prompt()
        if per is None:
            raise ValueError(f"table: run {row.run_dir} has no per-prompt evaluation; retrain it")
        max_m = getattr(row, "max_m", None)
        parts.append(
            per.rename(columns={"kl_k3": "kl"}).assign(
                config=config_label(row.method, row.n, row.beta, max_m),
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
    beta KL(pi || pi*) for the maximiser pi* of J).
    """
    rows = []
    for config, part in plateaus.groupby("config", sort=False):
        method, beta = part["method"].iloc[0], float(part["beta"].iloc[0])
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
    runs["config"] = [config_label(r.method, r.n, r.beta) for r in runs.itertuples()]
    if "gap" in runs:
        runs["kl_to_optimum"] = runs["gap"] / runs["beta"]
    return runs


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
