"""Figures: one palette, marker and order per method for every notebook, and a saver that
writes each figure as PNG + PDF together with the CSV of the numbers behind it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

# Fixed across notebooks so a method looks the same in every figure.
METHOD_ORDER = ["ref", "bon", "vbon", "vbon_exact", "kl_rl", "bon_sft"]
METHOD_LABEL = {
    "ref": "pi_ref",
    "bon": "BoN",
    "vbon": "vBoN (L)",
    "vbon_exact": "vBoN (exact)",
    "kl_rl": "KL-RL",
    "bon_sft": "BoN-SFT",
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
}


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
    claims: pd.DataFrame | None = None,
) -> Path:
    """``results.json`` beside the figures: the numbers a notebook's checks were made on.

    Args:
        results: the notebook's numbers (JSON-serialisable; numpy scalars become floats).
        directory: where the notebook's figures are.
        notebook: the notebook's name (e.g. "04_imdb_analysis"), so ``vbon reproduce`` can
            find the file.
        claims: the notebook's checks, one row per claim with columns ``claim``, ``evidence``,
            ``holds`` and optionally ``figure`` (the figure that shows it); ``vbon reproduce``
            prints them as the run's verdicts.
    """
    out = dict(results)
    if notebook is not None:
        out["notebook"] = notebook
    if claims is not None:
        missing = {"claim", "evidence", "holds"} - set(claims.columns)
        if missing:
            raise ValueError(f"claims: missing column(s) {sorted(missing)}")
        table = claims.assign(holds=claims["holds"].astype(bool))
        if "figure" not in table.columns:
            table = table.assign(figure="")
        out["claims"] = (
            table[["claim", "evidence", "holds", "figure"]].fillna("").to_dict("records")
        )
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
