"""Run the numbered notebooks with papermill: ``vbon reproduce`` and ``make reproduce``.

Each notebook is executed with the ``python3`` kernel and its working directory set to
``notebooks/``, parameters taken from ``params/<profile>/<notebook>.yaml`` when that file exists
(plus ``profile`` itself), output written to ``runs/<profile>/notebooks/``.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

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
    return meta.get("exception") is False and meta.get("end_time") is not None


def reproduce(profile: str = "smoke", only: list[str] | None = None, resume: bool = False) -> dict:
    """Execute the notebook sequence; return {notebook: wall seconds}. Stops at the first failure."""
    import papermill as pm

    if profile not in ("smoke", "paper"):
        raise ValueError(f"profile: expected 'smoke' or 'paper', got {profile!r}")
    out_dir = paths.runs_dir(profile) / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
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
    return timings
