"""Training precision (vbon.precision): fp32 master weights, one numerical policy for F_hat's
reference samples and the rollouts, global PPO minibatches over processes, GPUs of sweep workers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from vbon.precision import (
    check_precision,
    default_precision,
    precision_context,
    resolve_mixed_precision,
    sampling_precision,
)
from vbon.train import TrainConfig, train
from vbon.train.common import Timer, process_batches
from vbon.train.enumerable import EnumerableWorld
from vbon.train.modeling import freeze_bottom, sequence_logprobs

LR = 3e-6  # the paper's TL;DR learning rate


# -- fp32 master weights ---------------------------------------------------------------------------
def _bf16_checkpoint(tmp_path):
    """A tiny random GPT-2 saved in bf16, loaded back honouring the checkpoint's dtype."""
    from transformers import AutoModelForCausalLM

    world = EnumerableWorld(seed=0)
    path = tmp_path / "bf16-checkpoint"
    world.model.to(torch.bfloat16).save_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype="auto").eval()
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    return world, model


def _nll(module, world):
    """Negative log-likelihood of the 256 completions (any smooth loss will do)."""
    n = len(world.sequences)
    prompt = torch.zeros((n, 1), dtype=torch.long)
    logp, _ = sequence_logprobs(
        module,
        prompt,
        torch.ones_like(prompt),
        world.sequences,
        torch.ones(world.sequences.shape, dtype=torch.bool),
        temperature=1.0,
    )
    return -logp.sum() / logp.numel()


def _changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> tuple[int, int]:
    changed = sum(int((after[n].float() != b.float()).sum()) for n, b in before.items())
    return changed, sum(b.numel() for b in before.values())


def _trainable(module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in module.named_parameters() if p.requires_grad}


def test_bf16_weights_stepped_directly_do_not_change(tmp_path):
    """The old behaviour: AdamW on the bf16 parameters themselves loses a 3e-6 step."""
    world, model = _bf16_checkpoint(tmp_path)
    freeze_bottom(model, 1)
    before = _trainable(model)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LR)
    _nll(model, world).backward()
    optimizer.step()
    after = _trainable(model)
    changed, total = _changed(before, after)
    # Only weights within ~1e-3 of zero (LayerNorm biases start at 0) can move by 3e-6 in bf16.
    big = {n: b.float().abs() >= 1e-3 for n, b in before.items()}
    moved_big = sum(int(((after[n] != b) & big[n]).sum()) for n, b in before.items())
    n_big = sum(int(m.sum()) for m in big.values())
    print(
        f"\n[precision] bf16 weights stepped at lr {LR}: {changed} of {total} changed, "
        f"{moved_big} of the {n_big} with |w| >= 1e-3"
    )
    assert moved_big == 0 and n_big > 0.9 * total
    assert changed < 0.1 * total


@pytest.mark.parametrize("mixed_precision", ["bf16", "auto"])
def test_trainer_steps_fp32_master_weights(tmp_path, mixed_precision):
    """The trainer on a bf16 checkpoint (CPU): fp32 trainable weights that move at lr 3e-6.

    "bf16": the frozen trunk stays bf16 and every forward runs under CPU bf16 autocast;
    "auto" (full precision on a CPU): the whole model is fp32.
    """
    from vbon.train.loop import _Run
    from vbon.train.ppo import ppo_step

    world, model = _bf16_checkpoint(tmp_path)
    config = TrainConfig(
        task="enumerable",
        method="kl_rl",
        beta=0.1,
        algorithm="ppo",
        lr=LR,
        steps=1,
        batch_prompts=8,
        k=1,
        mini_batch_size=8,
        ppo_epochs=1,
        num_layers_unfrozen=1,
        warmup_steps=0,
        evaluate=False,
        progress=False,
        cpu_threads=1,
        mixed_precision=mixed_precision,
        output_dir=str(tmp_path / "runs"),
    )
    setup = world.setup(config)
    setup.policy = model
    run = _Run(config, setup)
    module = run.accelerator.unwrap_model(run.ctx.module)
    trainable = {p.dtype for p in module.parameters() if p.requires_grad}
    frozen = {p.dtype for p in module.parameters() if not p.requires_grad}
    assert trainable == {torch.float32}  # the value head included
    assert frozen == ({torch.bfloat16} if mixed_precision == "bf16" else {torch.float32})
    assert run.ctx.precision == ("bf16-autocast" if mixed_precision == "bf16" else "fp32")
    state = run.ctx.optimizer.state_dict()
    before = _trainable(module)
    ppo_step(run.ctx, 0, Timer(torch.device("cpu")))
    changed, total = _changed(before, _trainable(module))
    moments = [s["exp_avg"] for s in run.ctx.optimizer.state_dict()["state"].values()]
    print(f"\n[precision] trainer ({mixed_precision}), lr {LR}: {changed} of {total} changed")
    assert not state["state"] and moments and {m.dtype for m in moments} == {torch.float32}
    assert changed > 0.9 * total


# -- one numerical policy ------------------------------------------------------------------------
def test_precision_names_and_contexts(monkeypatch):
    assert sampling_precision("no", "cpu") == "fp32"
    assert sampling_precision("auto", "cpu") == default_precision("cpu") == "fp32"
    assert sampling_precision("bf16", "cpu") == "bf16-autocast"
    assert sampling_precision("fp16", "cpu") == "fp16-autocast"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_mixed_precision("auto", "cuda") == "bf16"
    assert default_precision("cuda") == "bf16-autocast"
    monkeypatch.undo()
    with precision_context("bf16-autocast", "cpu"):
        assert torch.is_autocast_enabled("cpu")
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16
    with precision_context("fp32", "cpu"):
        assert not torch.is_autocast_enabled("cpu")
    with pytest.raises(ValueError, match="^precision:"):
        check_precision("bf16")
    with pytest.raises(ValueError, match="^mixed_precision:"):
        sampling_precision("fp8", "cpu")


def test_cache_key_records_the_precision_and_keeps_fp32_keys():
    from vbon.reference import ReferenceSpec

    kw = dict(task="imdb", split="train", policy="p", reward="r", m=8, max_new_tokens=40)
    # The key this spec had before the precision was recorded: fp32 caches keep theirs.
    assert ReferenceSpec(**kw).key() == "c1e4f3f6ff91152d"
    assert ReferenceSpec(**kw, precision="fp32").key() == "c1e4f3f6ff91152d"
    assert ReferenceSpec(**kw, precision="bf16-autocast").key() != "c1e4f3f6ff91152d"
    with pytest.raises(ValueError, match="^precision:"):
        ReferenceSpec(**kw, precision="half")


class _Task:
    """A stand-in ``vbon.tasks`` task on the enumerable world; counts its model loads."""

    def __init__(self) -> None:
        self.world = EnumerableWorld(seed=0)
        self.name, self.profile = "enum", "smoke"
        self.train_prompts = self.test_prompts = ["a", "b", "c"]
        self.reference_id, self.reward_id, self.reward_kwargs = "enum-ref", "enum-reward", {}
        self.sampling = SimpleNamespace(
            max_new_tokens=4, temperature=1.0, top_k=0, top_p=1.0, eos_penalty=None
        )
        self.loads: list[torch.dtype | None] = []

    def load_reference(self, device=None, dtype=None):
        self.loads.append(dtype)
        return self.world.model, self.world.tokenizer

    def load_reward_model(self, device=None):
        return self.world.reward_fn


def test_a_cache_of_another_precision_is_rebuilt(tmp_path):
    from vbon.reference import build_task_reference

    task = _Task()
    kw = dict(root=tmp_path, progress=False, device="cpu")
    fp32 = build_task_reference(task, "train", 4, precision="fp32", **kw)
    assert task.loads == [torch.float32] and "precision" not in fp32.spec
    bf16 = build_task_reference(task, "train", 4, precision="bf16-autocast", **kw)
    assert bf16.directory != fp32.directory and bf16.spec["precision"] == "bf16-autocast"
    assert len(task.loads) == 2  # sampled again, not reused
    # The CPU default (a run's mixed_precision="auto") is fp32: the first cache, loaded as is.
    again = build_task_reference(task, "train", 4, **kw)
    assert again.directory == fp32.directory and len(task.loads) == 2
    np.testing.assert_array_equal(again.rewards(), fp32.rewards())


def test_fp32_cache_refuses_half_weights(tmp_path):
    from vbon.reference import ReferenceSpec, build_reference_cache

    world = EnumerableWorld(seed=0)
    spec = ReferenceSpec(task="enum", split="train", policy="p", reward="r", m=2, max_new_tokens=4)
    with pytest.raises(ValueError, match="^precision: 'fp32' but the model holds torch.bfloat16"):
        build_reference_cache(
            ["a"],
            spec,
            model=world.model.to(torch.bfloat16),
            tokenizer=world.tokenizer,
            reward_fn=world.reward_fn,
            root=tmp_path,
            progress=False,
        )


def test_the_run_passes_its_precision_to_the_reference_builder(tmp_path, monkeypatch):
    import vbon.train.loop as loop

    seen = {}
    world = EnumerableWorld(seed=0)

    def fake_build_setup(config, device=None, precision=None):
        seen["precision"] = precision
        return world.setup(config)

    monkeypatch.setattr(loop, "build_setup", fake_build_setup)
    config = TrainConfig(
        task="enumerable",
        method="kl_rl",
        beta=0.1,
        steps=1,
        evaluate=False,
        progress=False,
        mixed_precision="bf16",
        output_dir=str(tmp_path),
    )
    run = loop._Run(config, None)
    assert seen["precision"] == run.ctx.precision == "bf16-autocast"
    with run.ctx.autocast():  # the rollouts' context: the same policy as the builder's
        assert torch.is_autocast_enabled("cpu")


# -- PPO over several processes ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "world", "name"),
    [
        ({"algorithm": "ppo", "batch_prompts": 16, "mini_batch_size": 8}, 3, "batch_prompts"),
        ({"algorithm": "ppo", "batch_prompts": 24, "mini_batch_size": 6}, 4, "mini_batch_size"),
        (
            {"algorithm": "ppo", "batch_prompts": 16, "mini_batch_size": 8, "micro_batch_size": 2},
            4,
            "micro_batch_size",
        ),
        ({"algorithm": "rloo", "batch_prompts": 8, "k": 4, "micro_batch_size": 4}, 2, "micro"),
    ],
)
def test_batch_sizes_that_do_not_divide_among_processes_are_named(kwargs, world, name):
    config = TrainConfig(task="enumerable", method="kl_rl", beta=0.1, **kwargs)
    with pytest.raises(ValueError, match=rf"^{name}"):
        process_batches(config, world)


def test_process_batches_split_the_global_sizes():
    config = TrainConfig(
        task="enumerable",
        method="kl_rl",
        beta=0.1,
        algorithm="ppo",
        batch_prompts=16,
        mini_batch_size=8,
        micro_batch_size=4,
    )
    local = process_batches(config, 2)
    assert (local.prompts, local.rows, local.mini_batch, local.micro_batch) == (8, 8, 4, 2)
    # Per process: rows / mini_batch minibatches = rows_per_phase / mini_batch_size, as on one.
    assert local.rows // local.mini_batch == config.rows_per_phase // config.mini_batch_size


def test_two_process_ppo_takes_the_optimizer_steps_of_one(tmp_path):
    """accelerate launch, 2 CPU processes: the steps per phase and the lr schedule of one."""
    config = TrainConfig(
        task="enumerable",
        method="kl_rl",
        beta=0.1,
        algorithm="ppo",
        steps=2,
        batch_prompts=16,
        k=1,
        mini_batch_size=8,
        ppo_epochs=2,
        lr=1e-3,
        lr_schedule="linear",
        warmup_steps=0,
        evaluate=False,
        progress=False,
        cpu_threads=1,
        output_dir=str(tmp_path / "one"),
    )
    one = train(config)
    two_cfg = config.replace(output_dir=str(tmp_path / "two"))
    path = tmp_path / "two.json"
    two_cfg.to_json(path)
    # As tests/test_train.py: "--multi_gpu" on a machine without GPUs starts two torchrun
    # processes, which the trainer's Accelerator(cpu=True) joins in a gloo group.
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "-m",
        "vbon.train",
        "--config",
        str(path),
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    run_dir = two_cfg.run_dir()
    assert json.loads((run_dir / "result.json").read_text())["num_processes"] == 2
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    two = [r for r in rows if r["phase"] == "train"]
    ones = [r for r in one.history if r["phase"] == "train"]
    want = config.steps * config.ppo_epochs * config.rows_per_phase // config.mini_batch_size
    print(
        f"\n[precision] optimiser steps after each phase: one process "
        f"{[r['optimizer_steps'] for r in ones]}, two {[r['optimizer_steps'] for r in two]}; "
        f"lr {[r['lr'] for r in ones]} vs {[r['lr'] for r in two]}"
    )
    assert [r["optimizer_steps"] for r in two] == [r["optimizer_steps"] for r in ones]
    assert two[-1]["optimizer_steps"] == want
    assert [r["lr"] for r in two] == [r["lr"] for r in ones]
    assert two[-1]["lr"] == 0.0  # the linear schedule ends exactly at its last step


# -- devices of sweep workers --------------------------------------------------------------------
def test_worker_environment_round_robin():
    from vbon.train.sweep import worker_environment

    assert worker_environment(0, 0) == {} and worker_environment(3, 1) == {}
    assert [worker_environment(i, 2)["CUDA_VISIBLE_DEVICES"] for i in range(5)] == list("01010")
    assert worker_environment(1, 2, visible="4,7") == {"CUDA_VISIBLE_DEVICES": "7"}
    with pytest.raises(ValueError, match="^index:"):
        worker_environment(-1, 2)


def _worker_device(directory: str) -> tuple[int, str | None]:
    """Wait until both workers hold a job (a file each), then report this one's device."""
    import time
    from pathlib import Path

    (Path(directory) / str(os.getpid())).touch()
    deadline = time.time() + 120
    while len(list(Path(directory).iterdir())) < 2 and time.time() < deadline:
        time.sleep(0.05)
    return os.getpid(), os.environ.get("CUDA_VISIBLE_DEVICES")


def test_sweep_workers_receive_their_device(tmp_path, monkeypatch):
    from vbon.train import sweep

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    with sweep._worker_pool(2) as pool:
        # The first job blocks until the second runs: it runs on the other worker.
        seen = dict(f.result() for f in [pool.submit(_worker_device, str(tmp_path)) for _ in "ab"])
    print(f"\n[precision] sweep workers' CUDA_VISIBLE_DEVICES: {seen}")
    assert sorted(seen.values()) == ["0", "1"]
