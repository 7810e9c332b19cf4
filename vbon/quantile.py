"""Beyond the paper: the quantile-reward family, offline vBoN, and what the M references buy.

Every method that trains against f(F(r(y))) with KL weight beta (vBoN's f = log, InfAlign's
identity, InfAlign-CTRL's exp(t u); ``vbon.objectives``) has the optimum
pi* = pi_ref exp(f(F) / beta) / Z. This module holds the studies of notebook 08:

- ``family_optima``: each transform's exact optimum over a grid of beta on a finite support;
- ``partition_check``: the closed-form log Z_f(beta) against numerical integration;
- ``estimator_optima``: the policy a converged trainer reaches with f(F) estimated from M
  reference draws (each ``vbon.cdf`` estimator), exactly, over many independent draws;
- ``m_cost_configs`` and ``generated_tokens``: the toy-task runs of the cost-of-F study and
  what each generated (reference completions plus rollouts);
- ``smallest_sufficient_m``: the least M from which a policy stays within the largest M's
  interval.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import logsumexp

from vbon.bon import quantile_optimum_pmf, ref_cdf
from vbon.cdf import RewardCDF, quantile_scores
from vbon.objectives import check_transform, quantile_log_partition
from vbon.stats import seed_interval
from vbon.theory import policy_metrics

__all__ = [
    "transform_label",
    "family_optima",
    "family_at_kl",
    "partition_check",
    "estimator_optima",
    "summarise",
    "draw_difference",
    "equivalent_m",
    "exact_m_claims",
    "cost_table",
    "m_cost_configs",
    "online_offline_configs",
    "offline_claims",
    "m_cost_claims",
    "run_costs",
    "optimum_distance_table",
    "reference_token_counts",
    "generated_tokens",
    "smallest_sufficient_m",
]

Transforms = Sequence[tuple[str, float | None]]


def transform_label(transform: str, t: float | None = None) -> str:
    """ "log", "identity", "exp(t=2)"."""
    return transform if t is None else f"{transform}(t={t:g})"


def family_optima(
    ref_probs: Any, rewards: Any, betas: Iterable[float], transforms: Transforms
) -> pd.DataFrame:
    """Each transform's optimum pi* = pi_ref exp(f(F)/beta)/Z at each beta, exactly: its
    reward, win rate against pi_ref (ties 1/2) and KL(pi* || pi_ref), one row per (f, beta)."""
    p = np.asarray(ref_probs, dtype=np.float64)
    p = p / p.sum()
    rows = []
    for transform, t in transforms:
        for beta in betas:
            pmf = quantile_optimum_pmf(p, rewards, beta, transform, t)
            rows.append(
                {
                    "transform": transform_label(transform, t),
                    "beta": float(beta),
                    **policy_metrics(pmf, p, rewards),
                }
            )
    return pd.DataFrame(rows)


def family_at_kl(
    optima: pd.DataFrame, kls: Sequence[float], metric: str = "win_rate"
) -> pd.DataFrame:
    """Each transform's optimum ``metric`` at the same KL(pi* || pi_ref), read off its curve
    (``family_optima``, linear between its betas): one row per transform, one column per KL."""
    rows = {}
    for label, part in optima.groupby("transform", sort=False):
        part = part.sort_values("kl")
        if min(kls) < part["kl"].min() or max(kls) > part["kl"].max():
            raise ValueError(f"kls: outside {label}'s range of KL; widen the beta grid")
        rows[label] = np.interp(kls, part["kl"], part[metric])
    return pd.DataFrame(rows, index=[f"KL={k:g}" for k in kls]).T


def partition_check(transforms: Transforms, betas: Iterable[float]) -> pd.DataFrame:
    """log Z_f(beta) in closed form beside scipy.integrate.quad of E_U[exp(f(U)/beta)].

    The integrand is taken relative to its largest value f(1)/beta (f is increasing), and
    quad is told where it bends (the last 10/slope of the interval), so the comparison holds
    for small beta too."""
    from scipy.integrate import quad

    rows = []
    for transform, t in transforms:
        _, t = check_transform(transform, t)

        def f(u: float, transform: str = transform, t: float | None = t) -> float:
            if transform == "log":
                return np.log(u) if u > 0 else -np.inf
            return u if transform == "identity" else np.exp(t * u)

        for beta in betas:
            top = f(1.0) / beta
            slope = abs(t) * np.exp(max(t, 0.0)) if transform == "exp" else 1.0
            knee = max(0.0, 1.0 - 10.0 * beta / slope)
            pieces = [(0.0, knee), (knee, 1.0)] if knee > 0 else [(0.0, 1.0)]

            def integrand(u: float, beta: float = beta, top: float = top) -> float:
                return np.exp(f(u) / beta - top)

            total = sum(quad(integrand, a, b, limit=200)[0] for a, b in pieces)
            closed = quantile_log_partition(transform, beta, t)
            rows.append(
                {
                    "transform": transform_label(transform, t),
                    "beta": float(beta),
                    "closed form": closed,
                    "quadrature": top + np.log(total),
                }
            )
    out = pd.DataFrame(rows)
    out["abs. difference"] = (out["closed form"] - out["quadrature"]).abs()
    return out


def estimator_optima(
    ref_probs: Any,
    rewards: Any,
    *,
    beta: float,
    transforms: Transforms,
    estimators: Sequence[str],
    m_grid: Sequence[int],
    draws: int,
    seed: int = 0,
) -> pd.DataFrame:
    """What M references buy, exactly: the optimum of the estimated objective, per draw.

    ``draws`` independent sequences of pi_ref samples (one support: one prompt); for each M
    the first M of a sequence are its references, as a trainer's ``max_m`` takes the first M
    of a cache, so the M are paired within a draw. Each estimator's f(F)-hat at every item
    gives the policy a converged trainer reaches with it, pi_hat = pi_ref exp(f-hat / beta) / Z,
    computed exactly, and its reward, win rate and KL(pi_hat || pi_ref). The pooled estimator
    needs several prompts and is not defined here.

    Returns one row per (transform, estimator, M, draw); ``summarise`` gives the intervals.
    """
    p = np.asarray(ref_probs, dtype=np.float64)
    p = p / p.sum()
    r = np.asarray(rewards, dtype=np.float64)
    mid = 0.5 * (ref_cdf(p, r) + ref_cdf(p, r, strict=False))
    log_p = np.log(p)
    pool = r[np.random.default_rng(seed).choice(len(p), size=(draws, max(m_grid)), p=p)]
    everything = np.broadcast_to(r, (draws, len(r)))
    parts = []
    for m in m_grid:
        cdf = RewardCDF(pool[:, :m])
        for transform, t in transforms:
            for estimator in estimators:
                kind = {"estimator": estimator, "transform": transform, "t": t}
                logits = log_p + quantile_scores(cdf, everything, None, **kind) / beta
                log_q = logits - logsumexp(logits, axis=1, keepdims=True)
                q = np.exp(log_q)
                parts.append(
                    pd.DataFrame(
                        {
                            "transform": transform_label(transform, t),
                            "estimator": estimator,
                            "M": int(m),
                            "draw": np.arange(draws),
                            "reward": q @ r,
                            "win_rate": q @ mid,
                            "kl": (q * (log_q - log_p)).sum(axis=1),
                        }
                    )
                )
    return pd.concat(parts, ignore_index=True)


def summarise(
    per_draw: pd.DataFrame, metrics: Sequence[str] = ("reward", "win_rate", "kl")
) -> pd.DataFrame:
    """``estimator_optima``'s means per (transform, estimator, M) with t-intervals over draws."""
    rows = []
    for (transform, estimator, m), part in per_draw.groupby(
        ["transform", "estimator", "M"], sort=False
    ):
        row: dict[str, Any] = {"transform": transform, "estimator": estimator, "M": m}
        for name in metrics:
            ci = seed_interval(part[name], unit=f"{len(part)} reference draws, t-interval")
            row[name], row[f"{name}_low"], row[f"{name}_high"] = ci.estimate, ci.low, ci.high
        rows.append(row)
    return pd.DataFrame(rows)


def draw_difference(
    per_draw: pd.DataFrame, metric: str, a: tuple[str, str, int], b: tuple[str, str, int]
) -> Any:
    """``metric`` of (transform, estimator, M) ``a`` minus ``b`` in ``estimator_optima``'s
    table, paired by draw (the same references), with its t-interval."""

    def pick(key: tuple[str, str, int]) -> pd.Series:
        transform, estimator, m = key
        part = per_draw[
            (per_draw["transform"] == transform)
            & (per_draw["estimator"] == estimator)
            & (per_draw["M"] == m)
        ]
        if part.empty:
            raise ValueError(f"a, b: no rows of {key} (transform, estimator, M)")
        return part.set_index("draw")[metric]

    diff = (pick(a) - pick(b)).dropna()
    return seed_interval(diff, unit=f"{len(diff)} reference draws, paired, t-interval")


def equivalent_m(per_draw: pd.DataFrame, metric: str, tolerance: float) -> pd.DataFrame:
    """Per (transform, estimator): the least M from which every M's ``metric`` is equivalent to
    the largest M's, i.e. the 95% t-interval of their paired difference lies inside
    (-tolerance, tolerance) (``draw_difference``); NaN when only the largest M is."""
    rows = []
    for (transform, estimator), part in per_draw.groupby(["transform", "estimator"], sort=False):
        grid = sorted(part["M"].unique())
        top = grid[-1]
        inside = []
        for m in grid:
            ci = draw_difference(
                part, metric, (transform, estimator, m), (transform, estimator, top)
            )
            inside.append(-tolerance < ci.low and ci.high < tolerance)
        outside = [i for i, ok in enumerate(inside) if not ok]
        first = outside[-1] + 1 if outside else 0
        smallest = grid[first] if first < len(grid) - 1 else np.nan
        rows.append(
            {
                "transform": transform,
                "estimator": estimator,
                "largest M": int(top),
                f"smallest M within +-{tolerance:g}": smallest,
            }
        )
    return pd.DataFrame(rows)


def exact_m_claims(
    per_draw: pd.DataFrame, *, n: int, tolerance: float, figure: str = ""
) -> list[Any]:
    """The exact cost-of-F verdicts: for log and identity with add-one, the largest M's
    win rate above the smallest M's; for log at the smallest M, the posterior estimator above
    add-one; and, when M = 4N was studied, log add-one at M = 4N within ``tolerance`` of the
    largest M (the rule M >= 4N of ``vbon.cdf``). Paired by draw, t-intervals."""
    from vbon.stats import decide

    grid = sorted(per_draw["M"].unique())
    small, large = int(grid[0]), int(grid[-1])
    kinds = set(zip(per_draw["transform"], per_draw["estimator"], strict=True))
    checks = [
        (
            f"f = {t}, add-one: the M={large} optimum's win rate exceeds M={small}'s",
            (t, "add_one", large),
            (t, "add_one", small),
            ">",
        )
        for t in ("log", "identity")
        if (t, "add_one") in kinds
    ]
    if {("log", "posterior"), ("log", "add_one")} <= kinds:
        checks.append(
            (
                f"f = log at M={small}: the posterior estimator's optimum wins more often than "
                "add-one's",
                ("log", "posterior", small),
                ("log", "add_one", small),
                ">",
            )
        )
    if 4 * n in grid and 4 * n != large and ("log", "add_one") in kinds:
        checks.append(
            (
                f"f = log, add-one: at M = 4N = {4 * n} the win rate is within +-{tolerance:g} "
                f"of M={large}'s (the rule M >= 4N)",
                ("log", "add_one", 4 * n),
                ("log", "add_one", large),
                "within",
            )
        )
    return [
        decide(
            f"enumerable, exact, {text}",
            draw_difference(per_draw, "win_rate", a, b),
            seeds=[],
            direction=direction,
            threshold=tolerance if direction == "within" else 0.0,
            figure=figure,
        )
        for text, a, b, direction in checks
    ]


def cost_table(
    sweep: pd.DataFrame, points: pd.DataFrame, reference_tokens: Sequence[float]
) -> pd.DataFrame:
    """The cost-of-F runs per configuration: ``vbon.findings.point_table`` (intervals over
    seeds and prompts) with its transform, estimator, M and mean generated tokens."""
    from vbon.findings import config_label, point_table, variant_label

    labels = [
        config_label(r.method, r.n, r.beta, r.max_m, variant_label(r)) for r in sweep.itertuples()
    ]
    tokens = pd.DataFrame([generated_tokens(d, reference_tokens) for d in sweep["run_dir"]])
    meta = (
        sweep.assign(config=labels, **tokens)
        .groupby("config", sort=False)
        .agg(
            transform=("transform", "first"),
            transform_t=("transform_t", "first"),
            estimator=("cdf_estimator", "first"),
            M=("max_m", "first"),
            reference_tokens=("reference_tokens", "mean"),
            rollout_tokens=("rollout_tokens", "mean"),
            tokens=("tokens", "mean"),
        )
    )
    meta["transform"] = [
        transform_label(t, None if pd.isna(x) else x)
        for t, x in zip(meta["transform"], meta["transform_t"], strict=True)
    ]
    return point_table(points).join(meta.drop(columns="transform_t"), on="config")


def m_cost_configs(
    spec: Any,
    *,
    n: int,
    m: int,
    train_prompts: int,
    m_grid: Sequence[int],
    transforms: Transforms,
    estimators: Sequence[str],
    method: str = "vbon",
    **changes: Any,
) -> list[Any]:
    """The cost-of-F runs: ``method`` at N, for every (transform, estimator, M <= m) and seed of
    ``spec``, trained on the first ``train_prompts`` prompts with F-hat from the first M of ``m``
    cached references (``max_m``). The pooled estimator starts at M = 2 (it needs a
    within-prompt variance). These break the rule M >= 4 N on purpose below it."""
    import warnings

    from vbon.cdf import IllPosedWarning

    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IllPosedWarning)
        for transform, t in transforms:
            for estimator in estimators:
                for size in m_grid:
                    if size > m or (estimator == "pooled" and size < 2):
                        continue
                    out += [
                        spec.base_config(
                            method,
                            n=n,
                            m=m,
                            max_m=size,
                            max_train_prompts=train_prompts,
                            transform=transform,
                            transform_t=t,
                            cdf_estimator=estimator,
                            seed=seed,
                            **{**spec.steps_for(n=n), **changes},
                        )
                        for seed in spec.seeds
                    ]
    return out


def online_offline_configs(
    spec: Any,
    *,
    n: int,
    transforms: Transforms,
    online: dict[str, Any] | None = None,
    offline: dict[str, Any] | None = None,
    offline_steps: dict[str, int] | None = None,
    closed_z: Sequence[str] = (),
) -> list[Any]:
    """Online vbon (the spec's rl algorithm) and vbon_offline with the references' partition,
    for each transform and seed at N; plus vbon_offline with QRPO's closed-form partition for
    the transforms in ``closed_z``. ``online``/``offline``: TrainConfig changes (budgets);
    ``offline_steps``: the offline runs' steps per transform name, where given."""
    out = []
    for transform, t in transforms:
        kind = {"n": n, "transform": transform, "transform_t": t}
        steps = {"steps": offline_steps[transform]} if transform in (offline_steps or {}) else {}
        offline_kind = {**(offline or {}), **steps}
        runs = [
            ("vbon", {**(online or {})}),
            ("vbon_offline", {**offline_kind, "offline_log_z": "references"}),
        ]
        if transform in closed_z:
            runs.append(("vbon_offline", {**offline_kind, "offline_log_z": "closed"}))
        for method, changes in runs:
            out += [spec.base_config(method, **kind, **changes, seed=seed) for seed in spec.seeds]
    return out


def _label(config: Any) -> str:
    from vbon.findings import config_label, variant_label

    return config_label(config.method, config.n, config.beta, config.max_m, variant_label(config))


def offline_claims(runs: pd.DataFrame, configs: Sequence[Any], *, figure: str = "") -> list[Any]:
    """The enumerable world's online-vs-offline verdicts, from exact KL(pi || pi*) per seed.

    For each transform: offline vBoN (references' partition) minus online vBoN, paired by
    seed (claimed < 0: offline ends nearer its optimum); where closed-form runs exist: closed
    minus references (claimed > 0: the closed form, wrong under ties, ends farther)."""
    from vbon.stats import decide

    wide = runs.pivot_table(index="seed", columns="config", values="kl_to_optimum")
    seeds = [int(s) for s in wide.index]
    by_kind: dict[tuple[str, str, str | None], str] = {}
    for c in configs:
        log_z = c.offline_log_z if c.method == "vbon_offline" else None
        by_kind[(transform_label(c.transform, c.transform_t), c.method, log_z)] = _label(c)
    claims = []
    for transform in dict.fromkeys(k[0] for k in by_kind):
        online = by_kind.get((transform, "vbon", None))
        refs = by_kind.get((transform, "vbon_offline", "references"))
        closed = by_kind.get((transform, "vbon_offline", "closed"))
        if refs and not online:
            raise ValueError(f"configs: offline runs of f = {transform} without online ones")
        if online and refs:
            claims.append(
                decide(
                    f"enumerable, f = {transform}: offline vBoN (references' Z) ends nearer its "
                    "optimum than online vBoN (KL(pi||pi*) offline minus online)",
                    seed_interval(wide[refs] - wide[online]),
                    seeds=seeds,
                    direction="<",
                    figure=figure,
                )
            )
        if closed and refs:
            claims.append(
                decide(
                    f"enumerable, f = {transform}: QRPO's closed-form Z ends farther from the "
                    "optimum than the references' Z (KL(pi||pi*) closed minus references)",
                    seed_interval(wide[closed] - wide[refs]),
                    seeds=seeds,
                    figure=figure,
                )
            )
    return claims


def m_cost_claims(
    points: pd.DataFrame,
    *,
    n: int,
    m_grid: Sequence[int],
    estimators: Sequence[str],
    seeds: Sequence[int],
    unit: str,
    figure: str = "",
) -> tuple[list[Any], pd.DataFrame]:
    """The toy-task cost-of-F verdicts (log transform): vBoN at the largest M minus the
    smallest with add-one (the paper's Figure 4 claim), and each other estimator minus add-one
    at the smallest M; win rates paired over seeds and prompts. Returns (claims, differences)."""
    from vbon.findings import config_label, paired_difference, row_interval
    from vbon.stats import decide

    small, large = min(m_grid), max(m_grid)
    others = [e for e in estimators if e != "add_one"]

    def name(m: int, estimator: str = "add_one") -> str:
        return config_label("vbon", n, None, m, "" if estimator == "add_one" else f" {estimator}")

    pairs = [(name(large), name(small))] + [(name(small, e), name(small)) for e in others]
    texts = [
        f"toy IMDB: vBoN improves with M (win rate at M={large} minus M={small}, add-one; "
        "paper Figure 4)",
        *[
            f"toy IMDB at M={small}: the {e} estimator beats add-one (win rate difference)"
            for e in others
        ],
    ]
    diffs = paired_difference(points, pairs, ["win_rate"])
    claims = [
        decide(text, row_interval(row, "difference", unit=unit), seeds=seeds, figure=figure)
        for text, (_, row) in zip(texts, diffs.iterrows(), strict=True)
    ]
    return claims, diffs


def run_costs(sweep: pd.DataFrame) -> pd.DataFrame:
    """What each run of a sweep cost: rollout samples (online runs), reference samples it
    used (train prompts x M), and training seconds (the sum of its logged step times, so a
    run loaded from disk reports the time it took when it trained)."""
    from vbon.train.loop import load_run

    rows = []
    for run_dir in sweep["run_dir"]:
        result = load_run(run_dir)
        cfg, train = result.config, result.frame("train")
        rows.append(
            {
                "run_dir": run_dir,
                "rollout samples": cfg.steps * cfg.batch_prompts * cfg.k if cfg.is_rl else 0,
                "reference samples": cfg.train_prompt_count * (cfg.max_m or cfg.m),
                "train seconds": float(train["time_step"].sum()),
            }
        )
    return pd.DataFrame(rows)


def optimum_distance_table(runs: pd.DataFrame, costs: pd.DataFrame) -> pd.DataFrame:
    """Per configuration of enumerable runs (``vbon.findings.enumerable_runs``, with the
    sweep's ``transform``): KL(pi || pi*) to its own objective's optimum, with a t-interval
    over seeds, beside pi_ref's and the mean costs of ``run_costs`` (same row order)."""
    table = runs.assign(**{c: costs[c].to_numpy() for c in costs.columns if c != "run_dir"})
    rows = []
    for config, part in table.groupby("config", sort=False):
        ci = seed_interval(part["kl_to_optimum"])
        rows.append(
            {
                "config": config,
                "method": part["method"].iloc[0],
                "KL(pi || pi*)": ci.estimate,
                "low": ci.low,
                "high": ci.high,
                "KL(pi_ref || pi*)": float(part["ref_kl_to_optimum"].iloc[0]),
                "rollout samples": int(part["rollout samples"].iloc[0]),
                "reference samples": int(part["reference samples"].iloc[0]),
                "train seconds": float(part["train seconds"].mean()),
            }
        )
    return pd.DataFrame(rows)


def reference_token_counts(cache: Any, tokenizer: Any) -> np.ndarray:
    """Tokens generated for the first M references of every prompt of ``cache``, for each M
    (entry M-1): each completion's tokens plus its EOS when it ended."""
    texts, ended = cache.column("texts"), np.asarray(cache.column("ended"), dtype=float)
    lengths = np.array(
        [
            [len(ids) for ids in tokenizer(row, add_special_tokens=False)["input_ids"]]
            for row in texts
        ],
        dtype=float,
    )
    return np.cumsum((lengths + ended).sum(axis=0))


def generated_tokens(run_dir: Any, reference_tokens: Sequence[float]) -> dict[str, float]:
    """Tokens a run generated: its references (``reference_tokens[M-1]`` = tokens of the first
    M references of every train prompt) and its rollouts (mean length x samples, per step)."""
    from vbon.train.loop import load_run

    result = load_run(run_dir)
    cfg = result.config
    train = result.frame("train")
    rollouts = 0.0
    if cfg.is_rl and {"length", "num_samples"} <= set(train.columns):
        rollouts = float((train["length"] * train["num_samples"]).sum())
    refs = float(reference_tokens[(cfg.max_m or cfg.m) - 1])
    return {"reference_tokens": refs, "rollout_tokens": rollouts, "tokens": refs + rollouts}


def smallest_sufficient_m(
    table: pd.DataFrame, metric: str, by: Sequence[str] = ("transform", "estimator")
) -> pd.DataFrame:
    """Per group, the least M from which every larger M's estimate of ``metric`` lies inside
    the largest M's 95% interval (``<metric>_low``/``_high``); NaN if only the largest does."""
    rows = []
    for key, part in table.groupby(list(by), sort=False):
        part = part.sort_values("M")
        top = part.iloc[-1]
        inside = part[metric].between(top[f"{metric}_low"], top[f"{metric}_high"]).to_numpy()
        # The first M after the last one outside: from there on every M is inside.
        outside = np.flatnonzero(~inside)
        first = outside[-1] + 1 if outside.size else 0
        smallest = part["M"].iloc[first] if first < len(part) - 1 else np.nan
        rows.append(
            {
                **dict(zip(by, key if isinstance(key, tuple) else (key,), strict=True)),
                "largest M": int(top["M"]),
                f"{metric} at largest M": f"{top[metric]:.3f} [{top[f'{metric}_low']:.3f}, {top[f'{metric}_high']:.3f}]",
                "smallest sufficient M": smallest,
            }
        )
    return pd.DataFrame(rows)
