"""Resumable sweeps (vbon.train.sweep) on the enumerable world: grid, table, reuse, workers."""

from __future__ import annotations

import pytest

from vbon.train import TrainConfig
from vbon.train.sweep import RESULT_COLUMNS, grid, run_sweep


def _base(tmp_path, **kw) -> TrainConfig:
    return TrainConfig(
        **{
            "task": "enumerable",
            "method": "vbon",
            "n": 4,
            "output_dir": str(tmp_path),
            "steps": 3,
            "lr": 1e-3,
            "eval_k": 16,
            "progress": False,
            "cpu_threads": 1,
            **kw,
        }
    )


def test_grid_expands_every_combination(tmp_path):
    configs = grid(_base(tmp_path), n=[2, 8], seed=[0, 1])
    assert [(c.n, c.seed) for c in configs] == [(2, 0), (2, 1), (8, 0), (8, 1)]
    assert [c.beta for c in configs] == [1.0, 1.0, 1 / 7, 1 / 7]  # beta follows N for vbon
    kl = grid(_base(tmp_path, method="kl_rl", beta=0.5), beta=[0.1, 0.2])
    assert [c.beta for c in kl] == [0.1, 0.2]


def test_grid_and_sweep_reject_bad_input(tmp_path):
    with pytest.raises(ValueError, match="base"):
        grid({"method": "vbon"}, n=[2])
    with pytest.raises(ValueError, match="n: expected a list"):
        grid(_base(tmp_path), n=4)
    with pytest.raises(ValueError, match="workers"):
        run_sweep([_base(tmp_path)], workers=0)
    with pytest.raises(ValueError, match="share the run directory"):
        run_sweep([_base(tmp_path), _base(tmp_path)])
    with pytest.raises(ValueError, match=r"configs\[0\]"):
        run_sweep(["vbon"])


def test_sweep_table_reuses_finished_runs_and_workers_agree(tmp_path):
    configs = grid(_base(tmp_path / "one"), n=[2, 4]) + [
        _base(tmp_path / "one", method="kl_rl", beta=0.5)
    ]
    table = run_sweep(configs, progress=False)
    assert list(table.columns[: len(RESULT_COLUMNS)]) == list(RESULT_COLUMNS)
    assert table["method"].tolist() == ["vbon", "vbon", "kl_rl"]
    assert table["n"].tolist()[:2] == [2, 4] and table["beta"].tolist()[2] == 0.5
    assert table["trained"].all() and table["win_rate"].between(0, 1).all()

    again = run_sweep(configs, progress=False)  # finished runs are loaded, not retrained
    assert not again["trained"].any()
    metrics = ["reward", "win_rate", "kl", "kl_k1"]
    assert again[metrics].equals(table[metrics])

    # Two worker processes give the same runs (each run is seeded by its own config).
    parallel = run_sweep(grid(_base(tmp_path / "two"), n=[2, 4]), workers=2, progress=False)
    assert parallel["trained"].all()
    assert parallel[metrics].equals(table[metrics].iloc[:2])
