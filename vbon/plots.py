"""Figures: one palette, marker and order per method for every notebook, and a saver that
writes each figure as PNG + PDF together with the CSV of the numbers behind it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

# Fixed across notebooks so a method looks the same in every figure.
METHOD_ORDER = [
    "ref",
    "bon",
    "vbon",
    "vbon_exact",
    "kl_rl",
    "bon_sft",
    "vbon_offline",
    "bonbon",
    "bond",
    "jbond",
]
METHOD_LABEL = {
    "ref": "pi_ref",
    "bon": "BoN",
    "vbon": "vBoN (L)",
    "vbon_exact": "vBoN (exact)",
    "kl_rl": "KL-RL",
    "bon_sft": "BoN-SFT",
    "vbon_offline": "vBoN offline",
    "bonbon": "BoNBoN",
    "bond": "BOND",
    "jbond": "J-BOND",
}
METHOD_COLOR = dict(
    zip(METHOD_ORDER, sns.color_palette("colorblind", len(METHOD_ORDER)), strict=True)
)
METHOD_MARKER = {
    "ref": "X",
    "bon": "*",
    "vbon": "o",
    "vbon_exact": "D",
    "kl_rl": "s",
    "bon_sft": "^",
    "vbon_offline": "v",
    "bonbon": "P",
    "bond": "h",
    "jbond": "p",
}


# Exact optima (vbon.theory) are lines in the method's colour; the win-rate optimum, which is not
# a method of the paper, is grey.
THEORY_STYLE = {
    "kl_rl": {"color": METHOD_COLOR["kl_rl"], "ls": "-", "label": "KL-RL optimum (reward r)"},
    "win_rate_optimum": {"color": "0.45", "ls": ":", "label": "win-rate optimum (reward F)"},
    "vbon": {"color": METHOD_COLOR["vbon"], "ls": "--", "label": "vBoN (L) optimum"},
    "vbon_exact": {"color": METHOD_COLOR["bon"], "ls": "-.", "label": "BoN = vBoN (exact) optimum"},
}


def theory_curves(ax: plt.Axes, frontier: pd.DataFrame, metric: str) -> None:
    """Draw ``vbon.theory.theory_frontier`` curves of ``metric`` against KL on ``ax``.

    The vBoN curves carry a marker at each N, so a trained run can be read against its own N.
    ``metric`` may also be a gap column of ``vbon.theory.with_frontier_gaps``.
    """
    for method, part in frontier.groupby("method", sort=False):
        style = dict(THEORY_STYLE[method])
        part = part.sort_values("kl")
        marker = METHOD_MARKER.get(method, "") if method.startswith("vbon") else ""
        ax.plot(part["kl"], part[metric], marker=marker, ms=4, lw=1.5, **style)


def theory_figure(frontier: pd.DataFrame, *, title: str = "") -> plt.Figure:
    """The theory frontier on both planes (top) and each curve's gap below the frontier of
    that plane (bottom), from ``vbon.theory.with_frontier_gaps``."""
    fig, axes = plt.subplots(2, 2, figsize=(12, 7.5), sharex=True, height_ratios=[2, 1])
    for j, (metric, best) in enumerate([("reward", "kl_rl"), ("win_rate", "win_rate_optimum")]):
        theory_curves(axes[0, j], frontier, metric)
        theory_curves(axes[1, j], frontier[frontier["method"] != best], f"{metric}_gap")
        axes[0, j].set(ylabel=metric.replace("_", " "))
        axes[1, j].set(
            xlabel="KL(pi || pi_ref) [nats]",
            ylabel=f"{metric.replace('_', ' ')} below the frontier",
        )
    axes[0, 0].set_title("Reward vs KL: the KL-RL optima are the frontier")
    axes[0, 1].set_title("Win rate vs KL: the optima for reward F are the frontier")
    axes[0, 1].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def training_curves(
    curves: pd.DataFrame, y: str = "objective", *, smooth: int = 10, ylabel: str | None = None
) -> plt.Figure:
    """One panel per method: ``y`` against step for every run, a colour per setting.

    ``curves`` holds one row per (run, step) with columns method, setting, seed, step and ``y``
    (and ``<y>_se`` when logged). Lines are rolling means over ``smooth`` steps; a seed's lines
    share its setting's colour, so the spread between seeds shows at a glance.
    """
    methods = [m for m in METHOD_ORDER if m in set(curves["method"])]
    fig, axes = plt.subplots(1, len(methods), figsize=(5 * len(methods), 3.8), squeeze=False)
    for ax, method in zip(axes[0], methods, strict=True):
        part = curves[curves["method"] == method]
        settings = list(dict.fromkeys(part["setting"]))
        palette = sns.color_palette("viridis", len(settings))
        for colour, setting in zip(palette, settings, strict=True):
            for k, (_, run) in enumerate(part[part["setting"] == setting].groupby("seed")):
                line = run[y].rolling(smooth, min_periods=1).mean()
                ax.plot(run["step"], line, color=colour, lw=1.2, label=setting if k == 0 else None)
        ax.set(title=METHOD_LABEL[method], xlabel="step", ylabel=ylabel or y)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def interval_points(ax: plt.Axes, table: pd.DataFrame, metric: str) -> None:
    """Each configuration of ``vbon.findings.point_table`` at (KL, ``metric``) with its 95%
    intervals on both axes, in its method's colour and marker (one legend entry per method)."""
    for method in [m for m in METHOD_ORDER if m in set(table["method"])]:
        part = table[table["method"] == method]
        ax.errorbar(
            part["kl"],
            part[metric],
            xerr=[part["kl"] - part["kl_low"], part["kl_high"] - part["kl"]],
            yerr=[part[metric] - part[f"{metric}_low"], part[f"{metric}_high"] - part[metric]],
            fmt=METHOD_MARKER[method],
            color=METHOD_COLOR[method],
            ms=6,
            capsize=2,
            lw=1,
            label=METHOD_LABEL[method],
        )


def bon_curve(ax: plt.Axes, bon: pd.DataFrame, metric: str) -> None:
    """BoN at each N (``evaluate_bon_on_task`` with ``_low``/``_high`` columns): a dashed line
    and star markers at (estimated KL, ``metric``); a star is open where the KL estimate lies
    above the bound log N - (N-1)/N, which the true KL never exceeds."""
    style = {"color": METHOD_COLOR["bon"], "zorder": 2}
    ax.plot(bon["kl"], bon[metric], "--", lw=1, **style)
    above = bon["kl"] > bon["kl_bound"] + 1e-12
    for mask, face in ((~above, METHOD_COLOR["bon"]), (above, "none")):
        part = bon[mask]
        if part.empty:
            continue
        ax.errorbar(
            part["kl"],
            part[metric],
            xerr=[part["kl"] - part["kl_low"], part["kl_high"] - part["kl"]],
            fmt="none",
            ecolor=METHOD_COLOR["bon"],
            lw=0.8,
        )
        ax.scatter(
            part["kl"],
            part[metric],
            marker=METHOD_MARKER["bon"],
            s=110,
            facecolors=face,
            edgecolors=METHOD_COLOR["bon"],
            label=METHOD_LABEL["bon"]
            + (" (KL estimate above its bound)" if face == "none" else ""),
            **style,
        )


def fhat_error_figure(summary: pd.DataFrame) -> plt.Figure:
    """The F_hat error study (``vbon.cdf.fhat_error_study`` averaged per (M, N)): mean
    |log F_hat - log F| against M (left, with a 1/sqrt(M) guide) and, at BoN(N)'s choices, the
    error relative to E_BoN[-log F] = 1/N against c = M/N (right)."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for n, part in summary.groupby("N"):
        label = "pi_ref samples" if n == 1 else f"BoN(N={n}) choices"
        axes[0].plot(part["M"], part["abs_log_error"], "o-", label=label)
        axes[1].plot(part["M"] / n, part["abs_log_error"] * n, "o-", label=label)
    m_line = np.sort(summary["M"].unique()).astype(float)
    axes[0].plot(m_line, 0.9 / np.sqrt(m_line), "k--", label="1/sqrt(M) guide")
    axes[0].set(xscale="log", yscale="log", xlabel="M", ylabel="mean |log F_hat - log F|")
    axes[0].set_title("Error of the reward log F_hat (held-out truth)")
    axes[1].set(xscale="log", yscale="log", xlabel="c = M / N", ylabel="error x N")
    axes[1].set_title("At BoN's choices, relative to E_BoN[-log F] = 1/N")
    axes[0].legend(fontsize=8)
    return fig


def fhat_saturation_figure(target: pd.DataFrame, summary: pd.DataFrame, rule: float) -> plt.Figure:
    """Left: the exact KL from the optimum of the estimated L to pi_BoN against c = M/N
    (``vbon.cdf.fhat_target`` rows with ``N``, ``c = M/N``, ``kl_to_bon``), with the rule c.
    Right: the measured share of BoN(N)'s choices above all M references against N/(N+M)."""
    fig, axes = plt.subplots(1, 2, figsize=(12.5, 4))
    for n, part in target.groupby("N"):
        axes[0].plot(part["c = M/N"], part["kl_to_bon"], "o-", label=f"N = {n}")
    axes[0].axvline(rule, color="k", ls=":", label=f"rule c = {rule:g}")
    axes[0].set(xscale="log", yscale="log", xlabel="c = M / N", ylabel="KL(target || pi_BoN)")
    axes[0].set_title("Optimum of the estimated L vs BoN(N), exact")
    axes[0].legend()
    bon = summary[summary["N"] > 1]
    dots = axes[1].scatter(
        bon["saturated_theory"], bon["saturated"], c=bon["M"], norm="log", cmap="viridis"
    )
    fig.colorbar(dots, ax=axes[1], label="M")
    axes[1].plot([0, 1], [0, 1], "k--", label="N / (N + M)")
    axes[1].set(xlabel="theory N / (N + M)", ylabel="share above all M references")
    axes[1].set_title("Saturation of F_hat at BoN(N)'s choices")
    axes[1].legend()
    return fig


def metric_vs_kl_figure(
    table: pd.DataFrame,
    ref: dict[str, float],
    *,
    bon: pd.DataFrame | None = None,
    title: str = "",
) -> plt.Figure:
    """Reward (left) and win rate (right) against KL(pi || pi_ref): every configuration of
    ``table`` (``vbon.findings.point_table``) with its intervals on both axes, pi_ref at KL 0
    (``ref``: its reward and win rate) and, if given, BoN's curve (``bon_curve``).

    The KL axis is linear up to 1 nat and logarithmic beyond (symlog) with BoN's curve, or when
    an interval reaches past 10 nats: one policy far from pi_ref (BoNBoN at n = 8 on toy IMDB,
    37 nats) would otherwise squeeze every other point into the first tenth of the axis."""
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    symlog = bon is not None or float(table["kl_high"].max()) > 10.0
    for ax, metric in zip(axes, ["reward", "win_rate"], strict=True):
        if bon is not None:
            bon_curve(ax, bon, metric)
        ax.scatter(
            [0],
            [ref[metric]],
            marker=METHOD_MARKER["ref"],
            s=80,
            color=METHOD_COLOR["ref"],
            label=METHOD_LABEL["ref"],
            zorder=4,
        )
        interval_points(ax, table, metric)
        ax.set(xlabel="KL(pi || pi_ref) [nats]", ylabel=metric.replace("_", " "))
        if symlog:
            ax.set_xscale("symlog", linthresh=1.0)
            ax.set_xlabel("KL(pi || pi_ref) [nats], log scale above 1")
    axes[0].set_title(f"{title}reward vs KL (95% intervals)")
    axes[1].set_title(f"{title}win rate against pi_ref vs KL")
    axes[1].legend(fontsize=8)
    return fig


def ablation_figure(ablation: pd.DataFrame, bon_row: pd.Series, ref_row: pd.Series, n: int):
    """The M ablation: reward and win rate of vBoN at one N against M (``ablation`` rows with
    ``M`` and the ``point_table`` columns), with BoN(N) and pi_ref as horizontal lines."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, metric in zip(axes, ["reward", "win_rate"], strict=True):
        err = [
            ablation[metric] - ablation[f"{metric}_low"],
            ablation[f"{metric}_high"] - ablation[metric],
        ]
        ax.errorbar(
            ablation["M"],
            ablation[metric],
            yerr=err,
            fmt="o-",
            capsize=3,
            color=METHOD_COLOR["vbon"],
            label=f"vBoN (L), N={n}",
        )
        ax.axhline(bon_row[metric], ls="--", color=METHOD_COLOR["bon"], label=f"BoN, N={n}")
        ax.axhline(ref_row[metric], ls=":", color=METHOD_COLOR["ref"], label="pi_ref")
        ax.set(xscale="log", xlabel="M (reference samples per prompt)")
        ax.set_ylabel(metric.replace("_", " "))
    axes[0].legend()
    return fig


def invariance_figure(
    ref_probs: np.ndarray,
    panels: dict[str, dict[str, np.ndarray]],
) -> plt.Figure:
    """Optimal PMFs over a small support, one panel per objective: ``panels`` maps a panel's
    title to {reward transform: PMF}; pi_ref is drawn as grey bars behind each."""
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), sharey=True)
    items = np.arange(len(ref_probs))
    for ax, (title, family) in zip(np.atleast_1d(axes), panels.items(), strict=True):
        ax.bar(items, ref_probs, color="lightgray", label="pi_ref", zorder=0)
        for (name, pmf), style in zip(family.items(), ["o-", "x--", "+:", "s-."], strict=False):
            ax.plot(items, pmf, style, label=f"reward {name}")
        ax.set(xlabel="item (sorted by reward)", title=title)
        ax.legend()
    np.atleast_1d(axes)[0].set_ylabel("probability")
    return fig


def reference_rewards_figure(rewards: np.ndarray, show: Sequence[int], eos_penalty: float | None):
    """A reference cache's rewards: every one (left, with r_EOS marked) and the M rewards of
    the prompts ``show`` (right, a box and the points of each)."""
    m = rewards.shape[1]
    shown = pd.DataFrame(
        {"prompt": np.repeat(show, m).astype(str), "reward": rewards[show].ravel()}
    )
    fig, axes = plt.subplots(1, 2, figsize=(13, 4), gridspec_kw={"width_ratios": [1, 1.3]})
    axes[0].hist(rewards.ravel(), bins=60, color=METHOD_COLOR["ref"])
    if eos_penalty is not None:
        axes[0].axvline(eos_penalty, color="k", ls="--", label=f"r_EOS = {eos_penalty:g}")
        axes[0].legend()
    axes[0].set(
        xlabel="reward r(x, y)",
        ylabel="reference summaries",
        title=f"{rewards.size} summaries of pi_ref, {len(rewards)} prompts",
    )
    sns.boxplot(shown, x="prompt", y="reward", color="white", showfliers=False, ax=axes[1])
    sns.stripplot(
        shown, x="prompt", y="reward", color=METHOD_COLOR["ref"], alpha=0.15, size=2, ax=axes[1]
    )
    axes[1].set(
        xlabel="train prompt (by mean reward)",
        title=f"{m} summaries of each of {len(show)} prompts",
    )
    fig.tight_layout()
    return fig


def reference_cdfs_figure(curves: pd.DataFrame, m: int) -> plt.Figure:
    """F_hat (left) and vBoN's reward log F_hat (right) against the reward, one step curve per
    prompt (``curves``: prompt, reward, log F_hat)."""
    curves = curves.assign(F_hat=np.exp(curves["log F_hat"]))
    fig, axes = plt.subplots(1, 2, figsize=(13, 4))
    for ax, col in zip(axes, ["F_hat", "log F_hat"], strict=True):
        sns.lineplot(curves, x="reward", y=col, hue="prompt", drawstyle="steps-post", ax=ax)
    axes[0].set(title=f"F_hat per prompt (M = {m})", ylim=(0, 1.02))
    axes[0].get_legend().remove()
    axes[1].axhline(-np.log(m + 1), color="k", ls=":", label="-log(M+1)")
    axes[1].set(title="vBoN's reward log F_hat(r)")
    axes[1].legend(title="prompt", bbox_to_anchor=(1.02, 1), loc="upper left")
    fig.tight_layout()
    return fig


LINESTYLES = ["-", "--", ":", "-."]


def config_styles(table: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """A fixed style per configuration of ``table`` (columns config, method): its method's
    colour and marker, and a line style by its rank within the method (by N or beta), so that a
    configuration looks the same in every panel whichever others a panel leaves out."""
    styles = {}
    first = table.drop_duplicates("config")
    for method, part in first.groupby("method", sort=False):
        for k, config in enumerate(sorted(part["config"], key=_setting_key)):
            styles[config] = {
                "color": METHOD_COLOR[method],
                "marker": METHOD_MARKER[method],
                "ls": LINESTYLES[k % len(LINESTYLES)],
                "label": config_display(config),
            }
    return styles


def _setting_key(config: str) -> float:
    tail = config.rsplit("=", 1)[-1]
    try:
        return float(tail)
    except ValueError:
        return 0.0


def config_display(config: str) -> str:
    """A configuration's label for legends: "vbon N=201" -> "vBoN (L) N=201"."""
    head, _, setting = config.partition(" ")
    return f"{METHOD_LABEL.get(head, head)} {setting}".strip() if head != "pi_ref" else "pi_ref"


def temperature_figure(
    table: pd.DataFrame,
    metrics: Sequence[tuple[str, str]],
    *,
    t_train: float | None = None,
    leave_out: dict[str, Sequence[str]] | None = None,
    log_scale: Sequence[str] = (),
) -> plt.Figure:
    """``metrics`` ((column, axis label) pairs) against the sampling temperature, one panel
    each, every configuration of ``table`` (``vbon.findings.temperature_table``) with its 95%
    interval and its fixed style (``config_styles``); ``leave_out`` maps a metric to methods
    not drawn in its panel; ``log_scale`` names the metrics drawn on a log axis (a KL that spans
    decades across temperatures). One legend for all panels, built from the styles."""
    styles = config_styles(table)
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.4 * len(metrics), 4.4), squeeze=False)
    for ax, (metric, label) in zip(axes[0], metrics, strict=True):
        skip = set((leave_out or {}).get(metric, ()))
        for config, part in table.groupby("config", sort=False):
            if part["method"].iloc[0] in skip or metric not in part or part[metric].isna().all():
                continue
            part = part.sort_values("temperature")
            st = styles[config]
            ax.errorbar(
                part["temperature"],
                part[metric],
                yerr=[part[metric] - part[f"{metric}_low"], part[f"{metric}_high"] - part[metric]],
                color=st["color"],
                marker=st["marker"],
                ls=st["ls"],
                capsize=2,
                lw=1.2,
                ms=5,
            )
        if t_train is not None:
            ax.axvline(t_train, color="gray", ls=":", lw=1)
        if metric in log_scale:
            ax.set_yscale("log")
        ax.set(xlabel="sampling temperature T", ylabel=label)
    handles = [
        plt.Line2D([], [], color=st["color"], marker=st["marker"], ls=st["ls"], label=st["label"])
        for st in styles.values()
    ]
    fig.legend(handles=handles, fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    return fig


def family_figure(optima: pd.DataFrame, bon: pd.DataFrame | None = None) -> plt.Figure:
    """The quantile-reward family's exact optima: reward (left) and win rate (right) against
    KL(pi* || pi_ref), one line per transform over beta (``vbon.quantile.family_optima``),
    and BoN(N) as points (``bon``: columns N, reward, win_rate, kl) if given."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4))
    styles = ["--", ":", "-.", "-"]
    for ax, metric in zip(axes, ["reward", "win_rate"], strict=True):
        for i, (label, part) in enumerate(optima.groupby("transform", sort=False)):
            part = part.sort_values("kl")
            ax.plot(part["kl"], part[metric], ls=styles[i % len(styles)], label=f"f = {label}")
        if bon is not None:
            ax.scatter(
                bon["kl"],
                bon[metric],
                marker=METHOD_MARKER["bon"],
                s=70,
                zorder=4,
                color=METHOD_COLOR["bon"],
                label="BoN(N)",
            )
        ax.set(xlabel="KL(pi* || pi_ref) [nats]", ylabel=metric.replace("_", " "))
    axes[0].set_title("each transform's optimum pi_ref exp(f(F)/beta)/Z, over beta")
    axes[1].set_title("win rate against pi_ref")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    return fig


def m_cost_figure(
    table: pd.DataFrame,
    *,
    x: str = "M",
    metrics: Sequence[str] = ("reward", "win_rate", "kl"),
    title: str = "",
) -> plt.Figure:
    """What M references buy: each (transform, estimator)'s metrics with 95% intervals against
    ``x`` (M, or generated tokens), log scale. ``table``: rows with transform, estimator, x and
    ``<metric>``, ``<metric>_low``, ``<metric>_high``."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 4))
    groups = list(table.groupby(["transform", "estimator"], sort=False))
    palette = sns.color_palette("colorblind", len(groups))
    for ax, metric in zip(np.atleast_1d(axes), metrics, strict=True):
        for color, ((transform, estimator), part) in zip(palette, groups, strict=True):
            part = part.sort_values(x)
            err = [part[metric] - part[f"{metric}_low"], part[f"{metric}_high"] - part[metric]]
            ax.errorbar(
                part[x],
                part[metric],
                yerr=err,
                fmt="o-",
                ms=4,
                capsize=2,
                color=color,
                label=f"{transform}, {estimator}",
            )
        ax.set(xscale="log", xlabel=x, ylabel=metric.replace("_", " "))
    np.atleast_1d(axes)[-1].legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def optimum_distance_figure(distance: pd.DataFrame) -> plt.Figure:
    """Each configuration's KL(pi || pi*) to its own objective's optimum with its interval
    (``vbon.quantile.optimum_distance_table``), pi_ref's as a grey cross, log scale."""
    fig, ax = plt.subplots(figsize=(9, 0.5 * len(distance) + 1.5))
    est = distance["KL(pi || pi*)"]
    ax.errorbar(
        est,
        distance["config"],
        xerr=[est - distance["low"], distance["high"] - est],
        fmt="o",
        capsize=3,
        label="trained (95% t-interval over seeds)",
    )
    ax.scatter(
        distance["KL(pi_ref || pi*)"], distance["config"], marker="x", color="0.5", label="pi_ref"
    )
    ax.set(xscale="log", xlabel="KL(pi || pi*) to the run's own optimum [nats]")
    ax.invert_yaxis()
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def set_style() -> None:
    """The package's figure style (seaborn whitegrid, readable in print)."""
    sns.set_theme(style="whitegrid", context="notebook", rc={"figure.dpi": 100, "savefig.dpi": 150})


def save_figure(fig: plt.Figure, data: pd.DataFrame, directory: Path | str, name: str) -> Path:
    """Write ``name``.png, ``name``.pdf and ``name``.csv (the data plotted) under ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    fig.savefig(directory / f"{name}.png", bbox_inches="tight")
    fig.savefig(directory / f"{name}.pdf", bbox_inches="tight")
    data.to_csv(directory / f"{name}.csv", index=False)
    return directory / f"{name}.png"


def write_results(
    results: dict[str, Any],
    directory: Path | str,
    *,
    notebook: str | None = None,
    claims: pd.DataFrame | Sequence[Any] | None = None,
) -> Path:
    """``results.json`` beside the figures: the numbers a notebook's claims were decided on.

    Args:
        results: the notebook's numbers (JSON-serialisable; numpy scalars become floats).
        directory: where the notebook's figures are.
        notebook: the notebook's name (e.g. "04_imdb_analysis"), so ``vbon reproduce`` can
            find the file.
        claims: the notebook's verdicts, as ``vbon.stats.Claim`` objects (claim, estimate,
            ci, seeds, holds, decision, figure, evidence) or a DataFrame with at least the
            columns ``claim``, ``evidence`` and ``holds``; ``vbon reproduce`` prints them.
    """
    out = dict(results)
    if notebook is not None:
        out["notebook"] = notebook
    if claims is not None:
        if isinstance(claims, pd.DataFrame):
            missing = {"claim", "evidence", "holds"} - set(claims.columns)
            if missing:
                raise ValueError(f"claims: missing column(s) {sorted(missing)}")
            table = claims.assign(holds=claims["holds"].astype(bool))
            if "figure" not in table.columns:
                table = table.assign(figure="")
            records = table.to_dict("records")
        else:
            records = [c.as_dict() if hasattr(c, "as_dict") else dict(c) for c in claims]
        for r in records:
            if "claim" not in r or "holds" not in r:
                raise ValueError(f"claims: each needs 'claim' and 'holds', got {sorted(r)}")
            r["holds"] = bool(r["holds"])
            r.setdefault("figure", "")
            r.setdefault("evidence", "")
        out["claims"] = [{k: ("" if v is None else v) for k, v in r.items()} for r in records]
    path = Path(directory) / "results.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2, sort_keys=True, default=_jsonable) + "\n")
    return path


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)
