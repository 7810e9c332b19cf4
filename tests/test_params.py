"""Notebook parameters (vbon.params): coercion of papermill's strings, types and range rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
import pytest

from vbon import paths
from vbon.params import RULES, Rule, check_parameters, check_value
from vbon.reproduce import notebook_sequence

ANNOTATIONS = {
    "profile": str,
    "seed": int,
    "m": int,
    "n_grid": list,
    "kl_rl_betas": list,
    "lr": float,
    "show": bool,
    "gold_reward_id": str,
    "note": int | None,
}
DEFAULTS = {
    "profile": "smoke",
    "seed": 0,
    "m": 32,
    "n_grid": [1, 4],
    "kl_rl_betas": [],
    "lr": 3.0e-4,
    "show": True,
    "gold_reward_id": "",
    "note": None,
}


def _namespace(**values: Any) -> dict[str, Any]:
    return {"__annotations__": dict(ANNOTATIONS), **DEFAULTS, **values}


@pytest.mark.parametrize(
    ("name", "given", "expected"),
    [
        ("n_grid", "[2, 4]", [2, 4]),  # papermill -p n_grid [2,4] passes this string
        ("n_grid", (2, 4), [2, 4]),
        ("kl_rl_betas", "[3e-4, 0.1]", [3e-4, 0.1]),  # YAML 1.1 reads 3e-4 as a string
        ("kl_rl_betas", [1, 2], [1.0, 2.0]),
        ("lr", 1, 1.0),
        ("lr", "3e-4", 3e-4),
        ("show", "false", False),
        ("note", "null", None),
        ("note", "7", 7),
        ("gold_reward_id", "123", "123"),  # a string stays a string
    ],
)
def test_values_are_coerced_in_place(name: str, given: Any, expected: Any) -> None:
    ns = _namespace(**{name: given})
    checked = check_parameters(ns)
    assert ns[name] == expected and checked[name] == expected
    assert type(ns[name]) is type(expected)
    if isinstance(expected, list):
        assert [type(x) for x in ns[name]] == [type(x) for x in expected]


@pytest.mark.parametrize(
    ("name", "given", "message"),
    [
        ("n_grid", "[0,4]", "element 0 of [0, 4] must be an integer >= 1, got 0"),
        ("n_grid", "[1, x]", "element 1 of [1, 'x'] must be an integer, got 'x' (str)"),
        ("n_grid", "[]", "must be a non-empty list, got []"),
        ("n_grid", "[1,", "could not be read as YAML"),
        ("n_grid", 4, "must be a list, got 4 (int)"),
        ("seed", -1, "must be an integer >= 0, got -1"),
        ("seed", True, "must be an integer, got True (bool)"),
        ("seed", 2.5, "must be an integer, got 2.5 (float)"),
        ("m", 0, "must be an integer >= 1, got 0"),
        ("m", "many", "must be an integer, got 'many' (str)"),
        ("lr", 0.0, "must be a number > 0, got 0.0"),
        ("lr", float("inf"), "must be finite, got inf"),
        ("lr", float("nan"), "must be finite, got nan"),
        ("lr", True, "must be a number, got True (bool)"),
        ("kl_rl_betas", "[0.1, -1]", "element 1 of [0.1, -1] must be a number > 0, got -1.0"),
        ("profile", "paperr", "must be one of ['smoke', 'converged', 'paper'], got 'paperr'"),
        ("profile", 3, "must be a string, got 3 (int)"),
        ("show", 1, "must be true or false, got 1 (int)"),
        ("note", 1.5, "must be an integer, got 1.5 (float)"),
        ("gold_reward_id", None, "must not be None"),
    ],
)
def test_bad_values_name_the_parameter(name: str, given: Any, message: str) -> None:
    ns = _namespace(**{name: given})
    with pytest.raises(ValueError) as info:
        check_parameters(ns)
    assert str(info.value).startswith(f"parameter {name}: ")
    assert message in str(info.value)


def test_notebook_rules_tighten_the_shared_ones() -> None:
    vbon_n = {"n_grid": Rule(element=int, minimum=2, nonempty=True)}
    with pytest.raises(ValueError, match=r"^parameter n_grid: element 0 of \[1, 4\] .* >= 2"):
        check_parameters(_namespace(n_grid=[1, 4]), rules=vbon_n)
    assert check_parameters(_namespace(n_grid=[1, 4]))["n_grid"] == [1, 4]
    # Names without a rule get the type check only.
    assert check_value("anything", -5, int) == -5
    with pytest.raises(ValueError, match="^parameter anything: must be an integer"):
        check_value("anything", "x", int)


def test_shared_vocabulary_has_rules() -> None:
    for name in ("train_prompts", "test_prompts", "m", "eval_m", "n_grid", "kl_rl_betas", "seeds"):
        assert name in RULES


def test_without_annotations_the_namespace_is_named() -> None:
    with pytest.raises(ValueError, match="^namespace: no parameter annotations"):
        check_parameters({"m": 3})


def test_string_annotations_are_read() -> None:
    ns = {"__annotations__": {"m": "int", "grid": "list"}, "m": "5", "grid": "[1]"}
    assert check_parameters(ns) == {"m": 5, "grid": [1]}


# -- through papermill and a real kernel ---------------------------------------------------------


def _notebook(path: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    params = nbformat.v4.new_code_cell(
        "seed: int = 0  # seed\n"
        "n_grid: list = [1, 4]  # Best-of-N sizes\n"
        "lr: float = 3.0e-4  # learning rate"
    )
    params.metadata["tags"] = ["parameters"]
    check = nbformat.v4.new_code_cell(
        "from vbon.params import check_parameters\ncheck_parameters(globals())"
    )
    show = nbformat.v4.new_code_cell("print(repr(seed), repr(n_grid), repr(lr))")
    nb.cells = [params, check, show]
    nbformat.write(nb, path)
    return path


@pytest.mark.slow
def test_papermill_parameters_are_checked_in_the_kernel(tmp_path: Path) -> None:
    import papermill as pm

    notebook = _notebook(tmp_path / "params.ipynb")

    def run(**parameters: Any) -> str:
        out = tmp_path / "out.ipynb"
        pm.execute_notebook(
            str(notebook),
            str(out),
            parameters=parameters,
            kernel_name="python3",
            cwd=str(tmp_path),
            progress_bar=False,
        )
        cell = nbformat.read(out, as_version=4).cells[-1]
        return "".join(o.get("text", "") for o in cell.outputs)

    # What `papermill -p n_grid [2,4] -p lr 1` hands the kernel: a string and an int.
    assert run(n_grid="[2,4]", lr=1).strip() == "0 [2, 4] 1.0"
    for parameters, message in (
        ({"n_grid": "[0,4]"}, "parameter n_grid: element 0 of [0, 4] must be an integer >= 1"),
        ({"seed": -1}, "parameter seed: must be an integer >= 0, got -1"),
    ):
        with pytest.raises(pm.PapermillExecutionError) as info:
            run(**parameters)
        assert info.value.ename == "ValueError"
        assert message in info.value.evalue


# -- the notebooks ---------------------------------------------------------------------------------

NOTEBOOKS = notebook_sequence()


def _parameters_cell(notebook: Path) -> tuple[str, str]:
    nb = nbformat.read(notebook, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    return code[0].source, code[1].source


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_checks_its_parameters_first(notebook: Path) -> None:
    _, after = _parameters_cell(notebook)
    assert "from vbon.params import check_parameters" in after
    assert "check_parameters(globals())" in after


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_defaults_and_paper_params_pass_the_rules(notebook: Path) -> None:
    import yaml

    source, _ = _parameters_cell(notebook)
    namespace: dict[str, Any] = {}
    exec(compile(source, notebook.name, "exec"), namespace)  # literal assignments only
    check_parameters(namespace)
    params = paths.params_dir("paper") / f"{notebook.stem}.yaml"
    if params.is_file():
        namespace.update(yaml.safe_load(params.read_text()) or {}, profile="paper")
        check_parameters(namespace)
