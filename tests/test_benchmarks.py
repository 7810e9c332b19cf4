"""The GPU check must keep working where there is no GPU: its --tiny mode runs on the CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from vbon import paths
from vbon.dryrun import plan


def test_gpu_check_runs_tiny_on_cpu(tmp_path):
    out = tmp_path / "gpu_check.json"
    script = paths.repo_root() / "benchmarks" / "gpu_check.py"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(
        [sys.executable, str(script), "--tiny", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    parts = {(r["model"], r["part"]) for r in report["results"]}
    for model, paper in (("gpt2-tiny", "paper imdb ppo"), ("pythia-tiny", "paper tldr ppo")):
        for part in ("reference sampling", "rloo", paper):
            assert (model, part) in parts
    assert all(r["samples_per_s"] > 0 and r["peak_rss_mib"] > 0 for r in report["results"])
    # The paper profile's PPO settings (tiny mode shrinks the batches only) and the rates
    # and projection the dry run reads.
    ppo = {r["part"]: r for r in report["results"] if r["part"].startswith("paper")}
    assert ppo["paper imdb ppo"]["lr"] == 3e-5 and ppo["paper tldr ppo"]["lr"] == 3e-6
    assert ppo["paper tldr ppo"]["temperature"] == 0.7
    for task in ("imdb", "tldr"):
        assert report["rates"][task]["sample_s"] > 0 and report["rates"][task]["phase_s"] > 0
    projected = report["projection"]["notebooks"]
    assert set(projected) == {nb.notebook for nb in plan("paper").notebooks}
    assert all(s > 0 for s in projected.values())
    assert "projected wall time" in proc.stdout
