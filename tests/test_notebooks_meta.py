"""Notebook contract (DESIGN.md): parameters cell, kernelspec, papermill help, reproduce CLI."""

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
    for name, spec in params.items():
        assert spec["inferred_type_name"] != "None", f"{name} has no type annotation"
        assert spec["help"], f"{name} has no '# help' comment"


def test_reproduce_rejects_unknown_notebook_and_profile() -> None:
    with pytest.raises(ValueError, match="only"):
        notebook_sequence(["99"])
    with pytest.raises(ValueError, match="profile"):
        main(["reproduce", "--profile", "laptop"])


def test_parameters_include_profile_and_yaml(tmp_path, monkeypatch) -> None:
    nb = NOTEBOOKS[0]
    monkeypatch.setattr(paths, "params_dir", lambda profile: tmp_path / profile)
    assert notebook_parameters(nb, "paper") == {"profile": "paper"}
    (tmp_path / "paper").mkdir()
    (tmp_path / "paper" / f"{nb.stem}.yaml").write_text("seed: 3\nn_grid: [1, 2]\n")
    assert notebook_parameters(nb, "paper") == {"profile": "paper", "seed": 3, "n_grid": [1, 2]}
