"""Notebook contract: parameters cell, kernelspec, papermill help, reproduce CLI."""

from __future__ import annotations

import json

import papermill as pm
import pytest

from vbon import paths
from vbon.cli import main
from vbon.reproduce import notebook_parameters, notebook_sequence

NOTEBOOKS = notebook_sequence()


def test_sequence_found() -> None:
    assert [p.name for p in NOTEBOOKS][:1] == ["01_bon_distribution.ipynb"]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_contract(notebook) -> None:
    nb = json.loads(notebook.read_text())
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    assert nb["metadata"]["language_info"]["name"] == "python"
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert "parameters" in code[0]["metadata"].get("tags", []), "first code cell is tagged"
    assert all(c.get("execution_count") for c in code), "committed with every cell executed"
    assert any("NBVAL_CHECK_OUTPUT" in "".join(c["source"]) for c in code)
    params = pm.inspect_notebook(str(notebook))
    assert "profile" in params
    # papermill skips a line it cannot parse (e.g. nested parentheses in the help comment).
    lines = [ln for ln in "".join(code[0]["source"]).splitlines() if ln and ln[0] != "#"]
    assert len(params) == len(lines), f"unparsed parameter lines in {notebook.name}"
    for name, spec in params.items():
        assert spec["inferred_type_name"] != "None", f"{name} has no type annotation"
        assert spec["help"], f"{name} has no '# help' comment"


def test_reproduce_rejects_unknown_notebook_and_profile(capsys) -> None:
    with pytest.raises(ValueError, match="only"):
        notebook_sequence(["99"])
    # The CLI reports it as a usage error: exit status 2, an error: line, no traceback.
    with pytest.raises(SystemExit) as info:
        main(["reproduce", "--profile", "laptop"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "vbon reproduce: error: profile:" in err and "Traceback" not in err


def test_parameters_include_profile_and_yaml(tmp_path, monkeypatch) -> None:
    nb = NOTEBOOKS[0]
    monkeypatch.setattr(paths, "params_dir", lambda profile: tmp_path / profile)
    assert notebook_parameters(nb, "paper") == {"profile": "paper"}
    (tmp_path / "paper").mkdir()
    (tmp_path / "paper" / f"{nb.stem}.yaml").write_text("seed: 3\nn_grid: [1, 2]\n")
    assert notebook_parameters(nb, "paper") == {"profile": "paper", "seed": 3, "n_grid": [1, 2]}


PARAM_FILES = sorted(paths.params_dir("paper").glob("*.yaml"))
_TYPES = {"int": int, "float": (int, float), "str": str, "list": list, "bool": bool, "dict": dict}


@pytest.mark.parametrize("path", PARAM_FILES, ids=lambda p: p.stem)
def test_params_file_matches_notebook(path) -> None:
    """Every key of params/paper/<nb>.yaml is a parameter of <nb> with the same type.

    PyYAML reads ``3e-5`` (no dot) as a string; papermill would inject the string and the
    notebook would fail far from the cause, so the YAML must write ``3.0e-5``.
    """
    import yaml

    notebook = paths.notebooks_dir() / f"{path.stem}.ipynb"
    assert notebook.is_file(), f"{path.name} has no notebook {notebook.name}"
    params = pm.inspect_notebook(str(notebook))
    values = yaml.safe_load(path.read_text()) or {}
    assert values, f"{path.name} is empty"
    for name, value in values.items():
        assert name in params, f"{path.name}: {name} is not a parameter of {notebook.name}"
        expected = params[name]["inferred_type_name"]
        assert expected in _TYPES, f"{notebook.name}: {name} has an unsupported type {expected}"
        ok = isinstance(value, _TYPES[expected]) and not (
            isinstance(value, bool) and expected != "bool"
        )
        assert ok, f"{path.name}: {name} = {value!r} is not a {expected}"


def test_every_notebook_has_paper_params() -> None:
    stems = {p.stem for p in PARAM_FILES}
    missing = [nb.name for nb in NOTEBOOKS if nb.stem not in stems and nb.stem[:2] != "01"]
    assert not missing, f"no params/paper/*.yaml for {missing}"


def test_reproduce_summary_reads_claims_and_wall_time(tmp_path, monkeypatch) -> None:
    import pandas as pd

    from vbon import plots
    from vbon.reproduce import summary

    monkeypatch.setattr(paths, "runs_dir", lambda profile: tmp_path / profile)
    nb = NOTEBOOKS[0]
    claims = pd.DataFrame(
        [("a claim", "shown here", True, "fig_a.png"), ("another", "reported", False, "")],
        columns=["claim", "evidence", "holds", "figure"],
    )
    fig_dir = tmp_path / "smoke" / "exp" / "figures"
    plots.write_results({"x": 1.0}, fig_dir, notebook=nb.stem, claims=claims)
    out = tmp_path / "smoke" / "notebooks" / nb.name
    out.parent.mkdir(parents=True)
    out.write_text(json.dumps({"metadata": {"papermill": {"duration": 12.3}}, "cells": []}))

    table = summary("smoke", [nb.stem[:2]])
    assert table["claim"].tolist() == ["a claim", "another"]
    assert table["verdict"].tolist() == ["holds", "does not hold"]
    assert table["wall"].tolist() == ["12 s", "12 s"]
    assert table["figure"].tolist() == [str(fig_dir / "fig_a.png"), ""]
    with pytest.raises(ValueError, match="claims: missing"):
        plots.write_results({}, fig_dir, claims=claims.drop(columns="holds"))
    # A notebook that has not run yet is listed as such.
    table = summary("smoke")
    assert (table.loc[table["notebook"] != nb.stem, "wall"] == "not run").all()


def _tiny_notebook(path, source: str) -> None:
    import nbformat

    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('profile: str = "smoke"  # run profile')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(source)]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    nbformat.write(nb, path)


def test_reproduce_stops_at_the_first_failure_and_resumes(tmp_path, monkeypatch, capsys) -> None:
    from vbon.reproduce import reproduce

    books = tmp_path / "notebooks"
    books.mkdir()
    _tiny_notebook(books / "01_ok.ipynb", "print('fine')")
    _tiny_notebook(books / "02_broken.ipynb", "raise ValueError('the cause')")
    _tiny_notebook(books / "03_never.ipynb", "print('not reached')")
    monkeypatch.setattr(paths, "notebooks_dir", lambda: books)
    monkeypatch.setattr(paths, "runs_dir", lambda profile: tmp_path / "runs" / profile)
    monkeypatch.setattr(paths, "params_dir", lambda profile: tmp_path / "params" / profile)

    with pytest.raises(
        RuntimeError, match=r"02_broken.ipynb failed in cell .*ValueError: the cause"
    ):
        reproduce("smoke")
    out = tmp_path / "runs" / "smoke" / "notebooks"
    assert (out / "01_ok.ipynb").is_file() and not (out / "03_never.ipynb").exists()

    (books / "02_broken.ipynb").unlink()
    _tiny_notebook(books / "02_broken.ipynb", "print('fixed')")
    timings = reproduce("smoke", resume=True)
    assert "already executed, skipped" in capsys.readouterr().out
    assert sorted(timings) == ["02_broken.ipynb", "03_never.ipynb"]


def test_publish_keeps_results_drops_progress_and_refuses_stale_runs(tmp_path, monkeypatch):
    import nbformat

    from vbon.reproduce import publish, reproduce

    books = tmp_path / "notebooks"
    books.mkdir()
    source = "import sys\nprint('result')\nprint('a progress bar', file=sys.stderr)"
    _tiny_notebook(books / "01_pub.ipynb", source)
    monkeypatch.setattr(paths, "notebooks_dir", lambda: books)
    monkeypatch.setattr(paths, "runs_dir", lambda profile="": tmp_path / "runs" / profile)
    monkeypatch.setattr(paths, "params_dir", lambda profile: tmp_path / "params" / profile)
    with pytest.raises(ValueError, match="vbon reproduce --profile converged"):
        publish("converged")
    reproduce("converged")
    (written,) = publish("converged")
    nb = nbformat.read(written, as_version=4)
    assert [c.metadata.get("tags", []) for c in nb.cells][0] == ["parameters"]
    assert not any("injected-parameters" in c.metadata.get("tags", []) for c in nb.cells)
    outputs = nb.cells[-1].outputs
    assert [o.get("name") for o in outputs] == ["stdout"] and outputs[0].text == "result\n"
    assert nb.metadata["vbon"] == {"profile": "converged"}
    # No absolute path of the machine that ran it.
    assert not nb.metadata["papermill"]["output_path"].startswith("/")
    _tiny_notebook(books / "01_pub.ipynb", source + "\nprint('changed')")
    with pytest.raises(ValueError, match="another version"):
        publish("converged")
