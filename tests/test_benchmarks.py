"""The GPU check must keep working where there is no GPU: its --tiny mode runs on the CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from vbon import paths


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
    for model in ("gpt2-tiny", "pythia-tiny"):
        for part in ("reference sampling", "rloo", "ppo"):
            assert (model, part) in parts
    assert all(r["samples_per_s"] > 0 for r in report["results"])
