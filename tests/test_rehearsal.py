"""The paper profile rehearsed offline: notebooks 02 to 08 under the real hub ids.

A stand-in Hugging Face cache (``vbon.toy.standins``: tiny random-weight models of the real
classes, datasets with the hub schemas, at the pinned revisions) is built into a temporary
``HF_HOME``; each notebook then runs with papermill on the parameters of
``params/paper/<notebook>.yaml``, read as ``vbon reproduce --profile paper`` reads them, plus
small budgets (``BUDGETS``), offline, with ``VBON_RUNS`` outside the repository. What runs is
the paper's code path (PPO, the hub loaders and revisions, the TL;DR prompts and the gold
reward model); the numbers mean nothing, so only the pipeline is checked: every notebook
finishes and writes its verdicts. Measured in a clean-clone `make test` (2 cores, beside the
notebook lane): 02: 12 s, 03: 42 s, 04: 26 s, 05: 12 s, 06: 20 s, 07: 21 s, mostly kernel starts,
model loads and evaluations.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import nbformat
import pytest
import yaml

from vbon import paths
from vbon.reproduce import KERNEL, notebook_parameters

NOTEBOOKS = [
    "02_imdb_reference",
    "03_imdb_train",
    "04_imdb_analysis",
    "05_tldr_reference",
    "06_tldr_train",
    "07_tldr_analysis",
    "08_beyond_the_paper",
]

# The IMDB experiment spec's budgets (vbon.experiment, ("imdb", "paper")), merged into the
# YAML's ``experiment`` block (its hub revisions stay): two N (notebook 04 compares steps of the grid), M = 12 >= 4 N, 2 seeds (the
# least an interval over seeds takes), 8 PPO phases (the least a convergence check judges) of
# 8 rollouts in 2 minibatches, 4 epochs each.
IMDB_EXPERIMENT = {
    "train_prompts": 8,
    "test_prompts": 4,
    "m": 12,
    "eval_m": 8,
    "n_grid": [2, 3],
    "seeds": [0, 1],
    "rl": {"steps": 8, "batch_prompts": 8, "mini_batch_size": 4},
    "sft": {"steps": 2},
    "offline": {"steps": 2, "batch_prompts": 4},  # notebook 08's offline vBoN
    "m_ablation": [4],
    "m_ablation_n": 2,
    "bonbon_n": [3],  # BoNBoN and BOND at one N: their code path, not their grid
    "bond_n": [3],
}
# The TL;DR spec's budgets (vbon.experiment, ("tldr", "paper")), merged the same way: one N
# with M = 8 >= 4 N, one seed, 8 PPO phases (the least a convergence check judges) of 4 rows.
TLDR_EXPERIMENT = {
    "train_prompts": 4,
    "test_prompts": 4,
    "m": 8,
    "eval_m": 8,
    "n_grid": [2],
    "seeds": [0],
    "bon_sft_n": [2],
    "bond_n": [2],
    "rl": {"steps": 8, "batch_prompts": 4, "mini_batch_size": 4, "micro_batch_size": 2},
    "sft": {"steps": 2, "sft_groups": 1},
}
BUDGETS: dict[str, dict] = {
    "02_imdb_reference": {
        "m_grid": [2, 4],
        "n_study": [2],
        "study_prompts": 2,
        "study_heldout": 16,
        "show_prompts": 2,
    },
    "03_imdb_train": {},
    "04_imdb_analysis": {
        "bon_pool": 8,
        "bon_resamples": 2,
        "show_prompts": 1,
        # The enumerable world's own spec (paper: the converged budgets, 120 runs).
        "enumerable": {"n_grid": [2, 4], "seeds": [0, 1], "rl": {"steps": 8}, "sft": {"steps": 8}},
    },
    "05_tldr_reference": {"m_grid": [2, 4], "n_show": 2, "world_checks": 10},
    "06_tldr_train": {},
    "08_beyond_the_paper": {
        # The enumerable world as on every profile, at a few steps; the IMDB runs on the
        # stand-ins: offline vBoN at the spec's two N and the cost-of-F runs at two M.
        "enumerable": {"seeds": [0, 1], "rl": {"steps": 8}, "offline": {"steps": 8}},
        "enum_transforms": ["identity"],
        "online_steps": 8,
        "draws": 20,
        "m_grid": [1, 2],
        "cost_m": 4,
        "cost_prompts": 8,
        "cost_m_grid": [2, 4],
        "cost_transforms": ["log"],
        "cost_estimators": ["add_one", "pooled"],
    },
    "07_tldr_analysis": {
        "temperatures": [0.7, 1.0],
        "bon_n": [2],
        "bon_pool": 4,
        "n_resamples": 2,
        "n_examples": 1,
    },
}


def rehearsal_parameters(name: str) -> dict:
    """``vbon reproduce --profile paper``'s parameters of notebook ``name`` with ``BUDGETS``
    (the ``experiment`` block merged key by key, so the YAML's hub revisions stay)."""
    params = notebook_parameters(paths.notebooks_dir() / f"{name}.ipynb", "paper")
    budget = dict(BUDGETS[name])
    task = {"beyond": "imdb"}.get(name.split("_")[1], name.split("_")[1])  # 08 runs on IMDB
    extra = {"imdb": IMDB_EXPERIMENT, "tldr": TLDR_EXPERIMENT}[task]
    params["experiment"] = {**params.get("experiment", {}), **extra}
    params.update(budget)
    return params


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory: pytest.TempPathFactory):
    """The stand-in cache in a temporary HF_HOME, offline, and VBON_RUNS outside the
    repository, for this module's notebooks (papermill kernels inherit the environment)."""
    from vbon.toy.standins import build_hub_standins

    start = time.perf_counter()
    standins = build_hub_standins(tmp_path_factory.mktemp("hf-home"))
    runs = tmp_path_factory.mktemp("runs")
    assert not runs.resolve().is_relative_to(paths.repo_root().resolve())
    # One thread per process: the stand-ins are too small for intra-op parallelism, and on a
    # shared machine spinning OpenMP threads are preempted (a PPO phase measured 20x slower).
    env = {**standins.env(), "VBON_RUNS": str(runs), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    before = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    print(f"stand-in cache built in {time.perf_counter() - start:.1f} s")
    try:
        yield {"standins": standins, "runs": runs, "out": tmp_path_factory.mktemp("notebooks")}
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_paper_yaml_selects_the_paper_profile() -> None:
    """``papermill <nb> out -f params/paper/<nb>.yaml`` alone runs the paper profile: every
    YAML sets ``profile: paper`` and every notebook takes ``profile`` as a parameter."""
    for name in NOTEBOOKS:
        params = yaml.safe_load((paths.params_dir("paper") / f"{name}.yaml").read_text())
        assert params.get("profile") == "paper", name
        nb = nbformat.read(paths.notebooks_dir() / f"{name}.ipynb", as_version=4)
        cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
        assert any(line.startswith("profile: str = ") for line in cell.source.splitlines()), name
        unknown = set(params) - {
            line.split(":")[0] for line in cell.source.splitlines() if ":" in line
        }
        assert not unknown, f"{name}: YAML keys that are no parameter: {sorted(unknown)}"


def test_standins_resolve_every_hub_id(rehearsal) -> None:
    """Every hub source of the paper profile is in the stand-in cache: each model at its pin
    and at ``main``, each dataset with its hub splits and columns (the caches are passed
    explicitly: this process imported huggingface_hub and datasets before HF_HOME was set)."""
    from datasets import load_dataset
    from huggingface_hub import try_to_load_from_cache

    standins = rehearsal["standins"]
    hub = standins.hf_home / "hub"
    for repo_id, sha in standins.models.items():
        for revision in (sha, None):
            found = try_to_load_from_cache(repo_id, "config.json", cache_dir=hub, revision=revision)
            assert isinstance(found, str) and sha in found, (repo_id, revision)
    schemas = {
        "stanfordnlp/imdb": ({"train", "test", "unsupervised"}, {"text", "label"}),
        "CarperAI/openai_summarize_tldr": ({"train", "valid", "test"}, {"prompt", "label"}),
    }
    for repo_id, sha in standins.datasets.items():
        ds = load_dataset(repo_id, revision=sha, cache_dir=str(standins.hf_home / "datasets"))
        splits, columns = schemas[repo_id]
        assert set(ds) == splits and all(set(ds[s].column_names) == columns for s in ds)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_paper_profile_rehearsal(rehearsal, name: str) -> None:
    import papermill as pm

    output = rehearsal["out"] / f"{name}.ipynb"
    start = time.perf_counter()
    pm.execute_notebook(
        str(paths.notebooks_dir() / f"{name}.ipynb"),
        str(output),
        parameters=rehearsal_parameters(name),
        kernel_name=KERNEL,
        cwd=str(paths.notebooks_dir()),
        progress_bar=False,
    )
    print(f"{name}: {time.perf_counter() - start:.1f} s")
    found = [
        json.loads(p.read_text()) for p in Path(rehearsal["runs"], "paper").glob("**/results.json")
    ]
    results = next((r for r in found if r.get("notebook") == name), None)
    assert results is not None, f"{name} wrote no results.json under VBON_RUNS/paper"
    for claim in results.get("claims", []):
        assert {"claim", "holds", "evidence", "figure"} <= set(claim), claim
    if name in ("03_imdb_train", "06_tldr_train"):  # the paper's code path: PPO, pinned hub ids
        import pandas as pd

        task = name.split("_")[1]
        sweep = pd.read_csv(Path(rehearsal["runs"], "paper", task, "sweep.csv"))
        rl = sweep[sweep["method"].isin(["vbon", "vbon_exact", "kl_rl"])]
        assert len(rl) and (rl["algorithm"] == "ppo").all(), sweep[["method", "algorithm"]]
        bond = sweep[sweep["method"].isin(["bond", "jbond"])]  # rloo's form on every profile
        assert (bond["algorithm"] == "rloo").all(), sweep[["method", "algorithm"]]
        config = json.loads(Path(rl["run_dir"].iloc[0], "config.json").read_text())
        assert config["profile"] == "paper"
        pins = rehearsal["standins"].models
        policy = config["task_overrides"].get("policy_revision")
        assert policy in pins.values(), config["task_overrides"]


def test_offline_dataset_at_another_revision_is_refused(rehearsal, monkeypatch) -> None:
    """Offline, datasets serves the newest prepared copy whatever ``revision`` asks for; the
    task layer refuses a copy prepared from another commit than the pin instead of using it."""
    import datasets.config

    from vbon.tasks.base import OfflineDatasetError, load_dataset_dict

    # datasets read HF_HOME when this process imported it, before the fixture set it.
    cache = str(rehearsal["standins"].hf_home / "datasets")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    repo_id, sha = next(iter(rehearsal["standins"].datasets.items()))
    columns = {"stanfordnlp/imdb": ["text", "label"]}.get(repo_id, ["prompt", "label"])
    ds, _ = load_dataset_dict(repo_id, columns=columns, splits=["train"], revision=sha)
    assert len(ds["train"])
    with pytest.raises(OfflineDatasetError, match="dataset_revision: .* not from the pinned"):
        load_dataset_dict(repo_id, columns=columns, splits=["train"], revision="0" * 40)
