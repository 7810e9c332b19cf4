"""VBON_RUNS anywhere: absolute or relative, inside the repository or not, library and kernels."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest

from vbon import paths


def test_runs_dir_follows_vbon_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VBON_RUNS", raising=False)
    assert paths.runs_dir() == paths.repo_root() / "runs"
    monkeypatch.setenv("VBON_RUNS", "  ")  # blank is unset, not the working directory
    assert paths.runs_dir() == paths.repo_root() / "runs"
    monkeypatch.setenv("VBON_RUNS", str(tmp_path / "elsewhere"))
    assert paths.runs_dir("paper") == tmp_path / "elsewhere" / "paper"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VBON_RUNS", "relative/runs")
    assert paths.runs_dir() == tmp_path / "relative" / "runs"
    assert paths.runs_dir().is_absolute()


def test_run_and_cache_dirs_live_under_vbon_runs(tmp_path, monkeypatch) -> None:
    from vbon.train import TrainConfig

    monkeypatch.setenv("VBON_RUNS", str(tmp_path / "outside"))
    config = TrainConfig(task="enumerable", method="vbon", n=4)
    assert config.run_dir().parent == tmp_path / "outside" / "smoke" / "enumerable" / "train"
    assert paths.figures_dir("smoke", "tldr") == tmp_path / "outside" / "smoke" / "tldr" / "figures"


@pytest.mark.slow
def test_reproduce_gives_its_kernels_the_absolute_runs_dir(tmp_path, monkeypatch) -> None:
    """A relative VBON_RUNS means the caller's directory, not the kernels' notebooks/."""
    from vbon.reproduce import reproduce

    books = tmp_path / "books"
    books.mkdir()
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('profile: str = "smoke"  # run profile')
    params.metadata["tags"] = ["parameters"]
    probe = "from vbon import paths\n(paths.runs_dir(profile) / 'probe.txt').write_text('here')"
    nb.cells = [params, nbformat.v4.new_code_cell(probe)]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    nbformat.write(nb, books / "01_probe.ipynb")
    monkeypatch.setattr(paths, "notebooks_dir", lambda: books)
    monkeypatch.setattr(paths, "params_dir", lambda profile: tmp_path / "params" / profile)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VBON_RUNS", "my-runs")
    reproduce("smoke")
    assert (tmp_path / "my-runs" / "smoke" / "probe.txt").read_text() == "here"
    assert (tmp_path / "my-runs" / "smoke" / "notebooks" / "01_probe.ipynb").is_file()
    assert not (books / "my-runs").exists()
    assert os.environ["VBON_RUNS"] == "my-runs"  # restored
