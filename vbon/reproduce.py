"""Run the numbered notebooks with papermill: ``vbon reproduce`` and ``make reproduce``.

Each notebook is executed with the ``python3`` kernel and its working directory set to
``notebooks/``, parameters taken from ``params/<profile>/<notebook>.yaml`` when that file exists
(plus ``profile`` itself), output written to ``runs/<profile>/notebooks/``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from pathlib import Path

import pandas as pd
import yaml

from vbon import paths

KERNEL = "python3"
_NOTEBOOK = re.compile(r"^(\d\d)_.+\.ipynb$")


def notebook_sequence(only: list[str] | None = None) -> list[Path]:
    """The numbered notebooks in order, optionally only those whose number is in ``only``."""
    found = sorted(p for p in paths.notebooks_dir().glob("*.ipynb") if _NOTEBOOK.match(p.name))
    if only is None:
        return found
    numbers = {s.zfill(2) for s in only}
    known = {_NOTEBOOK.match(p.name).group(1) for p in found}
    unknown = sorted(numbers - known)
    if unknown:
        raise ValueError(f"only: no notebook numbered {', '.join(unknown)} (have {sorted(known)})")
    return [p for p in found if _NOTEBOOK.match(p.name).group(1) in numbers]


def notebook_parameters(notebook: Path, profile: str) -> dict:
    """``profile`` plus the parameters in ``params/<profile>/<stem>.yaml`` if present."""
    params: dict = {"profile": profile}
    path = paths.params_dir(profile) / f"{notebook.stem}.yaml"
    if path.is_file():
        params.update(yaml.safe_load(path.read_text()) or {})
    return params


def _completed(output: Path) -> bool:
    if not output.is_file():
        return False
    meta = json.loads(output.read_text()).get("metadata", {}).get("papermill", {})
    # papermill records exception True on failure and None (not False) on success.
    return not meta.get("exception") and meta.get("end_time") is not None


@contextlib.contextmanager
def _absolute_runs_env():
    """``VBON_RUNS`` made absolute for the block (restored after), when it is set."""
    before = os.environ.get("VBON_RUNS")
    if before is not None and before.strip():
        os.environ["VBON_RUNS"] = str(paths.runs_dir())
    try:
        yield
    finally:
        if before is not None:
            os.environ["VBON_RUNS"] = before


def reproduce(profile: str = "smoke", only: list[str] | None = None, resume: bool = False) -> dict:
    """Execute the notebook sequence; return {notebook: wall seconds}. Stops at the first failure."""
    import papermill as pm

    from vbon.tasks.base import PROFILES

    if profile not in PROFILES:
        raise ValueError(f"profile: expected one of {PROFILES}, got {profile!r}")
    out_dir = paths.runs_dir(profile) / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    # The kernels run in notebooks/: a relative VBON_RUNS would point elsewhere there.
    with _absolute_runs_env():
        for notebook in notebook_sequence(only):
            output = out_dir / notebook.name
            if resume and _completed(output):
                print(f"[vbon] {notebook.name}: already executed, skipped (--resume)")
                continue
            print(f"[vbon] {notebook.name} -> {output}")
            start = time.perf_counter()
            try:
                pm.execute_notebook(
                    str(notebook),
                    str(output),
                    parameters=notebook_parameters(notebook, profile),
                    kernel_name=KERNEL,
                    cwd=str(notebook.parent),
                    progress_bar=False,
                )
            except pm.PapermillExecutionError as exc:
                raise RuntimeError(
                    f"{notebook.name} failed in cell {exc.exec_count}: {exc.ename}: {exc.evalue}\n"
                    f"see {output}"
                ) from None
            timings[notebook.name] = time.perf_counter() - start
            print(f"[vbon] {notebook.name}: {timings[notebook.name]:.0f} s")
    total = sum(timings.values())
    print(f"[vbon] done: {len(timings)} notebook(s) in {total:.0f} s; outputs in {out_dir}")
    print(summary(profile, only).to_string(index=False))
    return timings


# Outputs that are live feedback, not results: progress bars (ipywidgets views and their
# text fallback) and everything written to stderr (warnings, bars of worker processes).
_WIDGET = "application/vnd.jupyter.widget-view+json"


def _kept(output: dict) -> bool:
    if output.get("output_type") == "stream":
        return output.get("name") != "stderr"
    return _WIDGET not in output.get("data", {})


def publish(profile: str, only: list[str] | None = None) -> list[Path]:
    """Copy the executed notebooks of ``profile`` over the committed ones in ``notebooks/``.

    The committed notebooks are tutorials that show a complete run: each executed copy in
    ``runs/<profile>/notebooks/`` (from ``reproduce``) must have finished without an error; its
    injected-parameters cell, progress bars, widget state and stderr outputs are dropped, and
    the notebook's metadata records the profile and papermill's timing. The source of every
    other cell must equal the committed notebook's, so a stale run is never published.

    Returns the paths written.
    """
    import nbformat

    out_dir = paths.runs_dir(profile) / "notebooks"
    written = []
    for notebook in notebook_sequence(only):
        executed = out_dir / notebook.name
        if not _completed(executed):
            raise ValueError(
                f"profile: {executed} is missing or did not finish; run "
                f"`vbon reproduce --profile {profile}` first"
            )
        nb = nbformat.read(executed, as_version=4)
        cells = [c for c in nb.cells if "injected-parameters" not in c.metadata.get("tags", [])]
        current = [c.source for c in nbformat.read(notebook, as_version=4).cells]
        if [c.source for c in cells] != current:
            raise ValueError(
                f"only: {executed.name} was executed from another version of {notebook.name}; "
                "run it again before publishing"
            )
        for cell in cells:
            if cell.cell_type == "code":
                cell.outputs = [o for o in cell.outputs if _kept(o)]
        nb.cells = cells
        nb.metadata.pop("widgets", None)
        # papermill records the machine's absolute paths; a committed notebook names them
        # relative to the repository (or the runs directory) instead.
        for key in ("input_path", "output_path"):
            if key in nb.metadata.get("papermill", {}):
                nb.metadata["papermill"][key] = paths.shown(nb.metadata["papermill"][key])
        nb.metadata["vbon"] = {"profile": profile}
        nbformat.write(nb, notebook)
        written.append(notebook)
    return written


def _results_by_notebook(profile: str) -> dict[str, tuple[Path, dict]]:
    found: dict[str, tuple[Path, dict]] = {}
    for path in sorted(paths.runs_dir(profile).glob("**/results.json")):
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError:
            continue
        if isinstance(data, dict) and "notebook" in data:
            found[data["notebook"]] = (path, data)
    return found


def summary(profile: str = "smoke", only: list[str] | None = None) -> pd.DataFrame:
    """The run's verdict on each paper claim, with its figure and its notebook's wall time.

    Reads each executed notebook in runs/<profile>/notebooks/ (papermill's recorded duration)
    and the ``claims`` its ``results.json`` holds (``vbon.plots.write_results``). One row per
    claim; a notebook without claims or not yet executed gets one row saying so.
    """
    out_dir = paths.runs_dir(profile) / "notebooks"
    results = _results_by_notebook(profile)
    rows = []
    for notebook in notebook_sequence(only):
        output = out_dir / notebook.name
        seconds = None
        if output.is_file():
            meta = json.loads(output.read_text()).get("metadata", {}).get("papermill", {})
            seconds = meta.get("duration")
        wall = "not run" if seconds is None else f"{seconds:.0f} s"
        path, data = results.get(notebook.stem, (None, {}))
        claims = data.get("claims") or []
        if not claims:
            rows.append(
                {
                    "notebook": notebook.stem,
                    "wall": wall,
                    "claim": "(no claims recorded)",
                    "estimate [95% CI]": "",
                    "verdict": "",
                    "figure": "",
                }
            )
        for c in claims:
            figure = c.get("figure") or ""
            if figure and path is not None:
                figure_path = path.parent / figure
                root = paths.repo_root()
                figure = str(
                    figure_path.relative_to(root)
                    if figure_path.is_relative_to(root)
                    else figure_path
                )
            decision = c.get("decision") or ("holds" if c["holds"] else "does not hold")
            interval = ""
            if c.get("ci") and len(c["ci"]) == 2 and c.get("estimate") is not None:
                low, high = c["ci"]
                interval = f"{c['estimate']:.3g} [{low:.3g}, {high:.3g}]"
            rows.append(
                {
                    "notebook": notebook.stem,
                    "wall": wall,
                    "claim": c["claim"],
                    "estimate [95% CI]": interval,
                    "verdict": decision,
                    "figure": figure,
                }
            )
    columns = ["notebook", "wall", "claim", "estimate [95% CI]", "verdict", "figure"]
    return pd.DataFrame(rows, columns=columns)
