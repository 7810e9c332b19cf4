"""Where vbon reads and writes: the repository, run outputs, and the model cache.

Notebooks and library code take every path from here, never from the working directory, so a
notebook executed by papermill from any cwd writes to the same place.

- ``VBON_RUNS`` overrides the runs directory (default ``<repo>/runs``); it may lie anywhere,
  inside the repository or not. A relative value is resolved against the working directory of
  the process that reads it first; ``vbon reproduce`` exports the absolute path to the kernels
  it starts, whose working directory is ``notebooks/``.
- ``VBON_CACHE`` overrides the cache of built toy worlds (default: the user cache dir).
"""

from __future__ import annotations

import os
from pathlib import Path

from platformdirs import user_cache_dir

PACKAGE_DIR = Path(__file__).resolve().parent


def repo_root() -> Path:
    """The source checkout holding ``pyproject.toml`` (editable installs), else the cwd."""
    candidate = PACKAGE_DIR.parent
    if (candidate / "pyproject.toml").is_file():
        return candidate
    return Path.cwd()


def runs_dir(profile: str | None = None) -> Path:
    """``runs/`` (or ``$VBON_RUNS``, absolute), optionally the sub-directory of one profile."""
    env = os.environ.get("VBON_RUNS", "").strip()
    base = Path(env).expanduser().resolve() if env else repo_root() / "runs"
    return base / profile if profile else base


def figures_dir(profile: str, task: str) -> Path:
    """``runs/<profile>/<task>/figures``, created on demand."""
    path = runs_dir(profile) / task / "figures"
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_dir() -> Path:
    """Cache of built toy worlds (``$VBON_CACHE`` or the user cache dir)."""
    return Path(os.environ.get("VBON_CACHE", user_cache_dir("vbon"))).expanduser()


def notebooks_dir() -> Path:
    return repo_root() / "notebooks"


def params_dir(profile: str) -> Path:
    return repo_root() / "params" / profile


def shown(path_or_id: str | os.PathLike) -> str:
    """A model id or path as a notebook prints it: hub ids unchanged, local paths relative to the
    toy-world cache (``<cache>/...``) or the runs directory (``runs/...``), so committed outputs
    do not carry one machine's home directory."""
    text = os.fspath(path_or_id)
    path = Path(text).expanduser()
    if not path.is_absolute():
        return text
    for root, label in ((cache_dir(), "<cache>"), (runs_dir(), "runs"), (repo_root(), ".")):
        try:
            return f"{label}/{path.resolve().relative_to(root.resolve()).as_posix()}"
        except ValueError:
            continue
    return text
