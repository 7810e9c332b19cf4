"""The paper profile's dry run: it names every missing hub id, and passes on a complete cache.

Offline throughout: an empty HF cache (everything missing), the stand-in cache of
``vbon.toy.standins`` (everything resolves), and hand-made partial caches.
"""

from __future__ import annotations

import json

import pytest

from vbon import dryrun
from vbon.dryrun import Source, check_configs, download_command, dry_run, plan, resolve


@pytest.fixture(scope="module")
def paper_plan():
    return plan("paper")


@pytest.fixture(scope="module")
def standins(tmp_path_factory):
    from vbon.toy.standins import build_hub_standins

    return build_hub_standins(tmp_path_factory.mktemp("hf_standins"))


def test_plan_lists_the_paper_sources_with_their_pins(paper_plan):
    from vbon.tasks import imdb, tldr

    ids = {(s.repo_id, s.revision) for s in paper_plan.sources()}
    assert (imdb.HUB_POLICY, imdb.HUB_REVISIONS[imdb.HUB_POLICY]) in ids
    assert (imdb.HUB_REWARD, imdb.HUB_REVISIONS[imdb.HUB_REWARD]) in ids
    assert (imdb.HUB_DATASET, imdb.HUB_REVISIONS[imdb.HUB_DATASET]) in ids
    policy, reward = tldr.VARIANTS["2.8b"]  # params/paper/05-07: variant "2.8b"
    assert (policy, tldr.HUB_REVISIONS[policy]) in ids
    assert (reward, None) in ids  # unpinned: main
    assert (tldr.HUB_DATASET, None) in ids
    gold = "cleanrl/EleutherAI_pythia-6.9b-deduped__reward__tldr"  # params/paper/07
    assert (gold, tldr.HUB_REVISIONS[gold]) in ids
    assert len(ids) == 7


def test_plan_counts_follow_the_specs(paper_plan):
    from vbon.experiment import experiment

    spec = experiment("imdb", "paper")
    by_name = {nb.notebook: nb for nb in paper_plan.notebooks}
    assert list(by_name) == [
        "02_imdb_reference",
        "03_imdb_train",
        "04_imdb_analysis",
        "05_tldr_reference",
        "06_tldr_train",
        "07_tldr_analysis",
        "08_beyond_the_paper",
    ]
    nb02, nb03 = by_name["02_imdb_reference"], by_name["03_imdb_train"]
    assert nb02.reference_samples >= spec.train_prompts * spec.m + spec.test_prompts * spec.eval_m
    runs = sum(g.seeds for g in nb03.runs)
    assert runs == len(spec.sweep_configs())
    rl = [g for g in nb03.runs if g.algorithm]
    assert nb03.rollouts == sum(g.seeds * g.steps * g.rows_per_phase for g in rl)
    assert all(g.rows_per_phase == 128 and g.steps == 100 for g in rl)  # the authors' PPO
    # 04 loads 03's runs and trains the M ablation only.
    nb04 = by_name["04_imdb_analysis"]
    assert sum(g.seeds for g in nb04.runs if g.trained_here) == len(spec.ablation_configs())
    assert nb04.bon_pool_samples == spec.test_prompts * 256  # params/paper/04: bon_pool 256
    tldr = experiment("tldr", "paper")
    assert by_name["05_tldr_reference"].reference_samples == 4096 * 804 + 512 * 100
    tldr_runs = len(tldr.sweep_configs(exact_n=tldr.n_grid))
    # 10 configurations of the paper's methods and BoNBoN, BOND and J-BOND at N = 201, x 3 seeds
    assert sum(g.seeds for g in by_name["06_tldr_train"].runs) == tldr_runs == 39
    for nb in paper_plan.notebooks:
        assert nb.gpu_gib > 0


def test_empty_cache_fails_and_names_every_missing_id(tmp_path, paper_plan, monkeypatch, capsys):
    """Through the CLI: exit status 1, each missing id with its revision and download command.

    In-process (a subprocess would add the imports' 15 s): the cache locations and the offline
    flag are patched where huggingface_hub keeps them (read at its import)."""
    import torch
    from huggingface_hub import constants

    from vbon.cli import main

    hf = tmp_path / "hf"
    monkeypatch.setattr(constants, "HF_HOME", str(hf))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hf / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.delenv("HF_DATASETS_CACHE", raising=False)
    monkeypatch.setenv("VBON_RUNS", str(tmp_path / "runs"))  # no gpu_check.json there
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    status = main(["reproduce", "--profile", "paper", "--dry-run"])
    out = capsys.readouterr().out
    assert status == 1
    assert "dry run FAILED" in out
    for source in paper_plan.sources():
        assert f"missing {source.repo_type} {source.repo_id} (revision " in out
        assert download_command(source) in out
        if source.revision:
            assert source.revision in download_command(source)
    # Without --allow-cpu a machine without CUDA is a failure too, and says how to accept it.
    assert "no CUDA device visible" in out and "--allow-cpu" in out
    assert "no gpu_check measurement" in out


def test_standin_cache_resolves_and_prints_the_plan(standins, tmp_path, paper_plan, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the same on any machine
    lines: list[str] = []
    status = dry_run(
        "paper",
        allow_cpu=True,
        hf_home=standins.hf_home,
        offline=True,
        gpu_check=tmp_path / "none.json",
        echo=lines.append,
    )
    out = "\n".join(lines)
    assert "MISSING" not in out
    assert out.count("   ok      ") == len(paper_plan.sources())
    for nb in paper_plan.notebooks:
        assert nb.notebook in out
    assert "trains vbon" in out and "BoN pools" in out and "GPU memory" in out
    assert "runs an earlier notebook trained" in out  # 04 and 07 load 03's and 06's runs
    # It passes only when every notebook's configurations are valid too.
    assert status == 0 and "dry run passed" in out, out[-3000:]


def test_paper_profile_configurations_are_valid(paper_plan):
    assert check_configs(paper_plan) == []


def test_times_come_from_a_gpu_check_measurement(standins, tmp_path, paper_plan):
    rates = {
        "imdb": {"sample_s": 1e-3, "phase_s": 2.0, "sft_step_s": 0.05, "params_M": 124.4},
        "tldr": {"sample_s": 1e-2, "phase_s": 20.0, "sft_step_s": 0.5, "params_M": 1011.8},
    }
    path = tmp_path / "gpu_check.json"
    path.write_text(json.dumps({"device": "test GPU", "tiny": False, "rates": rates}))
    lines: list[str] = []
    dry_run(
        "paper",
        allow_cpu=True,
        hf_home=standins.hf_home,
        offline=True,
        gpu_check=path,
        echo=lines.append,
    )
    out = "\n".join(lines)
    assert "measured on test GPU" in out and "projected wall time" in out
    nb03 = next(nb for nb in paper_plan.notebooks if nb.notebook == "03_imdb_train")
    expected = nb03.generated * 1e-3 + nb03.phases * 2.0 + nb03.sft_steps * 0.05
    expected *= nb03.policy_params_b * 1e3 / 124.4  # measured on a 124.4M model
    assert dryrun.estimate_seconds(nb03, rates) == pytest.approx(expected)


def test_no_gpu_is_a_failure_unless_allowed(paper_plan, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert not dryrun.check_gpu(paper_plan).ok
    allowed = dryrun.check_gpu(paper_plan, allow_cpu=True)
    assert allowed.ok and "--allow-cpu" in allowed.lines[0]


def _fake_model(hub, repo_id: str, sha: str, weights: bool = True) -> None:
    """The minimal layout of a cached hub model: refs/main and snapshots/<sha>/config.json."""
    repo = hub / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(sha)
    snap = repo / "snapshots" / sha
    snap.mkdir(parents=True)
    (snap / "config.json").write_text("{}")
    if weights:
        (snap / "model.safetensors").write_bytes(b"")


def test_partial_and_stale_entries_are_missing(tmp_path):
    hf = tmp_path / "hf"
    _fake_model(hf / "hub", "owner/complete", "a" * 40)
    _fake_model(hf / "hub", "owner/no-weights", "b" * 40, weights=False)
    _fake_model(hf / "hub", "owner/other-commit", "c" * 40)
    prepared = hf / "datasets" / "owner___data" / "default" / "0.0.0" / ("d" * 40)
    prepared.mkdir(parents=True)
    (prepared / "dataset_info.json").write_text(json.dumps({"config_name": "default"}))
    sources = [
        Source("owner/complete", "model", "a" * 40, "policy"),
        Source("owner/complete", "model", None, "policy"),  # unpinned: refs/main
        Source("owner/no-weights", "model", "b" * 40, "policy"),
        Source("owner/other-commit", "model", "e" * 40, "policy"),
        Source("owner/absent", "model", None, "reward"),
        Source("owner/data", "dataset", "d" * 40, "prompts"),
        Source("owner/data", "dataset", "f" * 40, "prompts"),
    ]
    found = resolve(sources, hf_home=hf, offline=True)
    assert [r.status for r in found] == [
        "local",
        "local",
        "missing",
        "missing",
        "missing",
        "local",
        "missing",
    ]
    assert "no weight files" in found[2].detail
    assert "other revision(s) dddddddddddd" in found[6].detail


def test_download_commands():
    model = Source("owner/name", "model", "a" * 40, "policy")
    assert download_command(model) == f"hf download owner/name --revision {'a' * 40}"
    assert download_command(Source("owner/name", "model", None, "policy")) == (
        "hf download owner/name"
    )
    data = Source("owner/data", "dataset", "b" * 40, "prompts")
    assert download_command(data) == (
        f"python -c \"import datasets; datasets.load_dataset('owner/data', revision='{'b' * 40}')\""
    )


def test_other_profiles_are_refused():
    with pytest.raises(ValueError, match="profile"):
        plan("smoke")
