"""Run directories (vbon.train.loop): locks, refusal to overwrite an interrupted run, run names
that stay in runs/, and resuming past a damaged newest checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from vbon.train import TrainConfig, latest_checkpoint, train
from vbon.train import loop as train_loop


def _config(tmp_path: Path, **kw) -> TrainConfig:
    base = dict(
        task="enumerable",
        method="vbon",
        n=4,
        output_dir=str(tmp_path),
        steps=6,
        lr=1e-3,
        eval_every=0,
        eval_k=16,
        progress=False,
        cpu_threads=1,
        task_overrides={"bon_n": 4},
    )
    return TrainConfig(**{**base, **kw})


def _numbers(rows: list[dict]) -> list[dict]:
    """Metric rows without their timings, which differ between any two runs."""
    return [
        {k: v for k, v in r.items() if not k.startswith(("time_", "cpu_time_", "samples_per_s"))}
        for r in rows
    ]


@pytest.mark.parametrize(
    "name", ["", " ", "a/b", "../escape", "..", ".", "/abs/path", "runs/../x", "trail ", "a\0b"]
)
def test_run_name_cannot_leave_the_output_dir(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="^run_name:"):
        _config(tmp_path, run_name=name)


def test_run_name_of_its_own_is_accepted(tmp_path: Path) -> None:
    config = _config(tmp_path, run_name="vbon-N4-my.run_1")
    assert config.run_dir() == tmp_path / "vbon-N4-my.run_1"


class _Crash(Exception):
    """Stands for a kill at the end of training (checkpoints written, no result.json)."""


def _interrupted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **kw) -> TrainConfig:
    """A run killed after its checkpoints at steps 2 and 4 of 6."""
    config = _config(tmp_path, save_every=2, **kw)

    def crash(self):
        raise _Crash

    with monkeypatch.context() as patch:
        patch.setattr(train_loop._Run, "finish", crash)
        with pytest.raises(_Crash):
            train(config)
    run_dir = config.run_dir()
    assert not (run_dir / "result.json").exists()
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == [
        "step-000002",
        "step-000004",
    ]
    return config


def test_interrupted_run_is_not_started_over_silently(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _interrupted(tmp_path, monkeypatch)

    def no_models(*args, **kwargs):
        raise AssertionError("models were loaded before the run directory was checked")

    with monkeypatch.context() as patch:
        patch.setattr(train_loop, "build_setup", no_models)
        with pytest.raises(ValueError) as info:
            train(config)
    message = str(info.value)
    assert message.startswith("resume: ") and "interrupted run" in message
    assert "step-000004" in message and "resume=True" in message and "overwrite=True" in message
    # A different config cannot resume it either, and is told so before any model loads.
    with monkeypatch.context() as patch:
        patch.setattr(train_loop, "build_setup", no_models)
        with pytest.raises(ValueError, match="^resume: .* different config"):
            train(config.replace(resume=True, lr=2e-3, run_name=config.run_dir().name))

    resumed = train(config.replace(resume=True))
    straight = train(config.replace(output_dir=str(tmp_path / "straight")))
    assert _numbers(resumed.history) == _numbers(straight.history)


def test_overwrite_starts_over_even_with_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _interrupted(tmp_path, monkeypatch)
    loaded = []
    original = train_loop._Run.load_checkpoint

    def spy(self, ckpt):
        loaded.append(ckpt.name)
        return original(self, ckpt)

    monkeypatch.setattr(train_loop._Run, "load_checkpoint", spy)
    result = train(config.replace(resume=True, overwrite=True))
    assert loaded == [] and not result.loaded
    assert [r["step"] for r in result.history if r["phase"] == "train"] == list(range(1, 7))


def test_damaged_newest_checkpoint_falls_back_to_the_previous(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _interrupted(tmp_path, monkeypatch)
    run_dir = config.run_dir()
    newest = run_dir / "checkpoints" / "step-000004"
    state = json.loads((newest / "state.json").read_text())
    assert set(state["files"]) >= {"trainable.safetensors", "optimizer.pt", "rng-0.pt"}
    data = bytearray((newest / "optimizer.pt").read_bytes())
    data[len(data) // 2] ^= 0x01
    (newest / "optimizer.pt").write_bytes(bytes(data))

    with pytest.warns(UserWarning, match=r"step-000004 has a damaged optimizer\.pt"):
        assert latest_checkpoint(run_dir) == run_dir / "checkpoints" / "step-000002"
    loaded = []
    original = train_loop._Run.load_checkpoint

    def spy(self, ckpt):
        loaded.append(ckpt.name)
        return original(self, ckpt)

    monkeypatch.setattr(train_loop._Run, "load_checkpoint", spy)
    with pytest.warns(UserWarning, match="step-000004"):
        resumed = train(config.replace(resume=True))
    assert loaded == ["step-000002"]
    straight = train(config.replace(output_dir=str(tmp_path / "straight")))
    assert _numbers(resumed.history) == _numbers(straight.history)


def test_a_checkpoint_without_its_state_is_skipped(tmp_path: Path, monkeypatch) -> None:
    config = _interrupted(tmp_path, monkeypatch)
    run_dir = config.run_dir()
    (run_dir / "checkpoints" / "step-000004" / "state.json").unlink()
    (run_dir / "checkpoints" / "step-000002" / "trainable.safetensors").unlink()
    with pytest.warns(UserWarning) as record:
        assert latest_checkpoint(run_dir) is None
    text = " ".join(str(w.message) for w in record)
    assert "step-000004 has no readable state.json" in text
    assert "step-000002 lacks trainable.safetensors" in text


def test_keep_checkpoints_keeps_a_fallback_by_default() -> None:
    assert TrainConfig().keep_checkpoints == 2
    with pytest.raises(ValueError, match="^keep_checkpoints:"):
        TrainConfig(keep_checkpoints=0)


SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    from vbon.train import TrainConfig, train

    result = train(TrainConfig.from_json(sys.argv[1]))
    print(json.dumps({"loaded": result.loaded, "reward": result.metrics["reward"],
                      "end": time.time()}))
    """
)


@pytest.mark.slow
def test_two_processes_one_config_train_once(tmp_path: Path) -> None:
    config = _config(tmp_path / "runs", steps=40)
    config_path = tmp_path / "config.json"
    config.to_json(config_path)
    script = tmp_path / "train_one.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(config_path)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
        outs.append(json.loads(out.strip().splitlines()[-1]))
    assert sorted(o["loaded"] for o in outs) == [False, True]
    assert outs[0]["reward"] == outs[1]["reward"]
    rows = [json.loads(x) for x in (config.run_dir() / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["phase"] == "train"] == list(range(1, 41))
    assert (config.run_dir().parent / (config.run_dir().name + ".lock")).exists()
