"""One prepared GPU check of the trainers and the paper run's cost: run it whenever a GPU is free.

On a GPT-2-small-sized and a Pythia-1B-sized model (random weights, built locally: no hub), in
bf16 where the GPU supports it, through ``vbon.train.train`` with hand-made ``TrainSetup``s and
a cheap random reward (``_words.word_reward``: throughput is the point, not learning):

- GPT-2 small (12 x 768, vocabulary 50,257), the IMDB experiment's size:
  reference sampling (the M-sample cache's workload: 40 new tokens, temperature 1), a few rloo
  steps of vBoN (N = 8), and a few phases of the paper profile's IMDB PPO with the authors'
  settings (``TrainConfig(profile="paper", algorithm="ppo")``: 128 rollouts per phase,
  minibatch 32, 4 PPO epochs, top 2 blocks trainable, lr 3e-5, 40 new tokens, temperature 1).
- Pythia-1B (GPTNeoX 16 x 2048, 8 heads, vocabulary 50,304, MLP 8192), the TL;DR one-GPU
  variant's size: reference sampling and one TL;DR PPO phase of the paper profile (prompts of
  550 tokens, 50 new at temperature 0.7, 128 rollouts, minibatch 32, 4 epochs, top 8 blocks
  trainable, lr 3e-6), after one untimed warm-up phase, plus a few rloo steps.

Prints samples/s, generated tokens/s, seconds per step by part and the peak memory
(``torch.cuda.max_memory_allocated`` on a GPU, the process's peak RSS on a CPU), one line per
part, then the projected wall time of the paper profile's notebooks 02-08: the per-sample and
per-phase rates measured here times the counts of ``vbon.dryrun.plan("paper")`` (the plan
``vbon reproduce --profile paper --dry-run`` prints; TL;DR rates scaled by the configured
variant's size over 1B). The figures are written as JSON to ``--out`` (default
``runs/paper/gpu_check.json``, which the dry run reads; ``--tiny`` writes
``runs/paper/gpu_check-tiny.json`` so that it never replaces a real measurement).

Expected on one H200 (estimates, not yet measured there): model builds about 20 s, GPT-2 parts
about 1 minute (reference sampling 5 s, rloo 15 s, paper PPO 4 phases 30 s), Pythia-1B parts
2-3 minutes (reference sampling 20 s, rloo 40 s, the TL;DR phase and its warm-up 60-90 s):
about 4 minutes in all. Parts that would overrun ``--budget-s`` (default 420 s) are skipped and
say so. On a CPU (CI), or with ``--tiny``, the same code path runs on tiny models in seconds.

    python benchmarks/gpu_check.py [--tiny] [--budget-s 420] [--out runs/paper/gpu_check.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _words import word_reward, word_tokenizer  # benchmarks/ is on sys.path

N_BON = 8  # vBoN's N of the rloo part (beta = 1/(N-1))


def model_specs(tiny: bool) -> list[dict[str, Any]]:
    """The checked models with their workloads.

    ``paper``: the task whose paper-profile PPO runs on this model, with the sampling settings
    and the number of phases (the first is a warm-up, not timed); ``paper_overrides`` shrink
    the authors' batch sizes in tiny mode only.
    """
    from transformers import GPT2Config, GPTNeoXConfig

    if tiny:
        gpt2 = GPT2Config(
            vocab_size=512,
            n_embd=64,
            n_layer=4,
            n_head=4,
            n_positions=256,
            bos_token_id=511,
            eos_token_id=511,
        )
        pythia = GPTNeoXConfig(
            vocab_size=512,
            hidden_size=64,
            num_hidden_layers=4,
            num_attention_heads=4,
            intermediate_size=256,
            max_position_embeddings=256,
            rotary_pct=0.25,
            tie_word_embeddings=False,
        )
        small = {"batch_prompts": 8, "mini_batch_size": 4, "ppo_epochs": 2}
        return [
            {
                "name": "gpt2-tiny",
                "config": gpt2,
                "unfrozen": 2,
                "prompts": 4,
                "k": 2,
                "prompt_len": 8,
                "new_tokens": 8,
                "temperature": 1.0,
                "m": 4,
                "steps": 2,
                "paper": "imdb",
                "paper_phases": 2,
                "paper_overrides": small,
            },
            {
                "name": "pythia-tiny",
                "config": pythia,
                "unfrozen": 2,
                "prompts": 4,
                "k": 2,
                "prompt_len": 24,
                "new_tokens": 8,
                "temperature": 0.7,
                "m": 4,
                "steps": 2,
                "paper": "tldr",
                "paper_phases": 2,
                "paper_overrides": {**small, "num_layers_unfrozen": 2},
            },
        ]
    return [
        # GPT-2 small (124M), GPT2Config's defaults: the IMDB experiment's policy size.
        {
            "name": "gpt2-small",
            "config": GPT2Config(),
            "unfrozen": 2,
            "prompts": 32,
            "k": 4,
            "prompt_len": 8,  # IMDB prompts: a 2..8-token prefix of a review
            "new_tokens": 40,
            "temperature": 1.0,
            "m": 16,
            "steps": 3,
            "paper": "imdb",
            "paper_phases": 4,  # 1 warm-up + 3 timed, about 30 s on an H200
            "paper_overrides": {},
        },
        # Pythia-1B (GPTNeoX, 16 x 2048): the TL;DR variants' size; top 8 blocks train (authors).
        {
            "name": "pythia-1b",
            "config": GPTNeoXConfig(
                vocab_size=50304,
                hidden_size=2048,
                num_hidden_layers=16,
                num_attention_heads=8,
                intermediate_size=8192,
                max_position_embeddings=2048,
                rotary_pct=0.25,
                tie_word_embeddings=False,
            ),
            "unfrozen": 8,
            "prompts": 16,
            "k": 4,
            "prompt_len": 550,  # a Reddit post cut at 512 policy tokens, plus the TL;DR cue
            "new_tokens": 50,
            "temperature": 0.7,
            "m": 8,
            "steps": 2,
            "paper": "tldr",
            "paper_phases": 2,  # 1 warm-up + the one timed TL;DR training phase
            "paper_overrides": {},
        },
    ]


def _peak_memory() -> tuple[str, float]:
    """("gpu", GiB allocated at peak since the last reset) or ("rss", the process's peak MiB)."""
    if torch.cuda.is_available():
        return "gpu", torch.cuda.max_memory_allocated() / 2**30
    return "rss", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_peak() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _prompts(vocab: int, n: int, length: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(f"w{i}" for i in rng.integers(0, vocab - 1, length)) for _ in range(n)]


def _build(spec: dict[str, Any], device: torch.device) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM

    config = spec["config"]
    vocab = config.vocab_size
    for name in ("resid_pdrop", "embd_pdrop", "attn_pdrop", "hidden_dropout", "attention_dropout"):
        if hasattr(config, name):
            setattr(config, name, 0.0)  # the authors train with dropout off
    config.eos_token_id = config.pad_token_id = config.bos_token_id = vocab - 1
    torch.manual_seed(0)
    with torch.device(device):  # initialised on the device: a 1B model's CPU init takes long
        model = AutoModelForCausalLM.from_config(config).eval()
    model.generation_config.eos_token_id = model.generation_config.pad_token_id = vocab - 1
    return model, word_tokenizer(vocab)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _train_row(
    spec: dict[str, Any], part: str, result: Any, params: float, bf16: bool, skip: int
) -> dict[str, Any]:
    """One result row from a run's train history (the first ``skip`` steps are warm-up)."""
    hist = [r for r in result.history if r["phase"] == "train"][skip:]
    step = float(np.mean([r["time_step"] for r in hist]))
    samples = float(np.mean([r["num_samples"] for r in hist]))
    tokens = float(np.mean([r["num_samples"] * r["length"] for r in hist]))
    parts = {
        p: float(np.mean([r[f"time_{p}"] for r in hist]))
        for p in ("generate", "reward", "logprobs", "backward", "other")
    }
    kind, peak = _peak_memory()
    return {
        "model": spec["name"],
        "params_M": round(params, 1),
        "part": part,
        "samples_per_s": samples / step,
        "tokens_per_s": tokens / step,
        "seconds": step,
        "samples_per_step": samples,
        "timed_steps": len(hist),
        "parts": parts,
        f"peak_{kind}_{'gib' if kind == 'gpu' else 'mib'}": peak,
        "precision": "bf16" if bf16 else "fp32",
    }


def check_model(spec: dict[str, Any], deadline: float, device: torch.device) -> list[dict]:
    """Reference sampling, rloo steps and the paper PPO phases of one model; one row each."""
    from vbon.cdf import RewardCDF
    from vbon.generation import sample
    from vbon.train import TrainConfig, TrainSetup, train
    from vbon.train.setup import Sampling

    rows: list[dict] = []
    model, tok = _build(spec, device)
    vocab = spec["config"].vocab_size
    prompts = _prompts(vocab, spec["prompts"], spec["prompt_len"], seed=0)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if bf16
        else torch.autocast("cpu", enabled=False)
    )
    sampling = Sampling(spec["new_tokens"], temperature=spec["temperature"])

    # Reference sampling: M completions per prompt, the reference cache's workload.
    _reset_peak()
    with autocast:
        sample(model, tok, prompts[:2], 1, max_new_tokens=4, seed=0)  # warm-up
        start = time.perf_counter()
        refs = sample(
            model,
            tok,
            prompts,
            spec["m"],
            **sampling.kwargs(),
            batch_size=len(prompts) * spec["m"],
            seed=1,
        )
        _sync(device)
        sec = time.perf_counter() - start
    kind, peak = _peak_memory()
    rows.append(
        {
            "model": spec["name"],
            "params_M": round(params, 1),
            "part": "reference sampling",
            "samples_per_s": len(refs) / sec,
            "tokens_per_s": int(refs.mask.sum()) / sec,
            "seconds": sec,
            f"peak_{kind}_{'gib' if kind == 'gpu' else 'mib'}": peak,
        }
    )
    print(_line(rows[-1]), flush=True)
    ref_rewards = word_reward([prompts[i] for i in refs.prompt_index], refs.texts)
    cdf = RewardCDF(ref_rewards.reshape(len(prompts), spec["m"]))

    # The paper profile's PPO first: the projection needs it, rloo is the extra.
    rows.append(_paper_ppo(spec, model, tok, params, bf16, deadline, rows[0]["seconds"]))
    # rloo: a few vBoN steps (smoke profile's trainer path, the model's batch settings).
    if deadline - time.perf_counter() < 3 * rows[0]["seconds"] + 20:
        rows.append({"model": spec["name"], "part": "rloo", "skipped": "time budget"})
        print(f"{spec['name']:12s} {'rloo':18s} skipped: not enough of the time budget left")
    else:
        _reset_peak()
        setup = TrainSetup(
            policy=model,
            tokenizer=tok,
            reward_fn=word_reward,
            train_prompts=prompts,
            test_prompts=prompts[:1],
            sampling=sampling,
            test_ref=None,
            train_cdf=cdf,
        )
        with tempfile.TemporaryDirectory() as out:
            config = TrainConfig(
                task=f"gpu-check-{spec['name']}",
                method="vbon",
                n=N_BON,
                algorithm="rloo",
                steps=spec["steps"] + 1,
                batch_prompts=spec["prompts"],
                k=spec["k"],
                lr=1e-5,
                num_layers_unfrozen=spec["unfrozen"],
                evaluate=False,
                output_dir=out,
                progress=False,
                mixed_precision="auto",
            )
            result = train(config, setup)
        rows.append(_train_row(spec, "rloo", result, params, bf16, skip=1))
        print(_line(rows[-1]), flush=True)

    del model
    return rows


def _paper_ppo(
    spec: dict[str, Any],
    model: Any,
    tok: Any,
    params: float,
    bf16: bool,
    deadline: float,
    ref_seconds: float,
) -> dict[str, Any]:
    """Phases of the paper profile's PPO for ``spec["paper"]`` (the authors' settings)."""
    from vbon.cdf import IllPosedWarning, RewardCDF
    from vbon.train import TrainSetup, train
    from vbon.train.setup import Sampling

    task, phases = spec["paper"], spec["paper_phases"]
    part = f"paper {task} ppo"
    # A phase generates 128 rollouts where reference sampling made prompts x M: a rough guard.
    if deadline - time.perf_counter() < phases * 8 * ref_seconds + 30:
        print(f"{spec['name']:12s} {part:18s} skipped: not enough of the time budget left")
        return {"model": spec["name"], "part": part, "skipped": "time budget"}
    _reset_peak()
    with tempfile.TemporaryDirectory() as out:
        # The paper profile's PPO defaults (vbon.train.config.PROFILE_DEFAULTS["paper"] and the
        # TL;DR task's): batch, minibatch, epochs, lr and trainable blocks come from there.
        with warnings.catch_warnings():
            # The paper profile's default M (300) is too few for N = 201 and says so; this
            # check draws no reference cache, so the warning is noise here.
            warnings.simplefilter("ignore", IllPosedWarning)
            config = _paper_config(task, phases, out, spec["paper_overrides"])
        vocab = spec["config"].vocab_size
        prompts = _prompts(vocab, config.batch_prompts, spec["prompt_len"], seed=2)
        # F_hat only has to exist: 4 random reference rewards per prompt.
        rng = np.random.default_rng(3)
        setup = TrainSetup(
            policy=model,
            tokenizer=tok,
            reward_fn=word_reward,
            train_prompts=prompts,
            test_prompts=prompts[:1],
            sampling=Sampling(spec["new_tokens"], temperature=spec["temperature"]),
            test_ref=None,
            train_cdf=RewardCDF(rng.random((len(prompts), 4))),
        )
        result = train(config, setup)
    row = _train_row(spec, part, result, params, bf16, skip=1)
    minibatches = config.ppo_epochs * config.rows_per_phase // config.mini_batch_size
    row.update(
        rows_per_phase=config.rows_per_phase,
        mini_batch_size=config.mini_batch_size,
        ppo_epochs=config.ppo_epochs,
        num_layers_unfrozen=config.num_layers_unfrozen,
        lr=config.lr,
        prompt_tokens=spec["prompt_len"],
        new_tokens=spec["new_tokens"],
        temperature=spec["temperature"],
        # One minibatch's forward + backward + optimiser step: a BoN-SFT step's cost.
        minibatch_step_s=row["parts"]["backward"] / minibatches,
    )
    print(_line(row), flush=True)
    return row


def _paper_config(task: str, phases: int, out: str, overrides: dict[str, Any]) -> Any:
    """The paper profile's PPO config of ``task`` (``PROFILE_DEFAULTS["paper"]`` and the task's
    defaults: batch, minibatch, epochs, lr and trainable blocks come from there)."""
    from vbon.train import TrainConfig

    return TrainConfig(
        task=task,
        profile="paper",
        method="vbon",
        n=8 if task == "imdb" else 201,  # TL;DR: the paper's beta = 0.005
        algorithm="ppo",
        steps=phases,
        evaluate=False,
        save_every=0,
        output_dir=out,
        progress=False,
        mixed_precision="auto",
        **overrides,
    )


def _line(r: dict[str, Any]) -> str:
    text = (
        f"{r['model']:12s} {r['part']:18s} {r['samples_per_s']:9.1f} samples/s "
        f"{r['tokens_per_s']:10.0f} tokens/s  {r['seconds']:7.2f} s"
    )
    if "parts" in r:
        text += " /step [" + " ".join(f"{k} {v:.2f}" for k, v in r["parts"].items()) + "]"
    if "peak_gpu_gib" in r:
        text += f"  peak GPU {r['peak_gpu_gib']:.2f} GiB"
    if "peak_rss_mib" in r:
        text += f"  peak RSS {r['peak_rss_mib']:.0f} MiB"
    return text


def rates(results: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per task, what ``vbon.dryrun.estimate_seconds`` multiplies the plan's counts by:
    seconds per reference sample, per 128-rollout PPO phase and per BoN-SFT step."""
    from vbon.dryrun import MEASURED_ROWS

    out: dict[str, dict[str, float]] = {}
    for task, prefix in (("imdb", "gpt2"), ("tldr", "pythia")):
        ref = [
            r
            for r in results
            if r["model"].startswith(prefix)
            and r.get("part") == "reference sampling"
            and "seconds" in r
        ]
        ppo = [
            r
            for r in results
            if r["model"].startswith(prefix)
            and r.get("part") == f"paper {task} ppo"
            and "seconds" in r
        ]
        if not ref or not ppo:
            continue
        out[task] = {
            "model": ref[0]["model"],
            "params_M": ref[0]["params_M"],
            "sample_s": 1.0 / ref[0]["samples_per_s"],
            # Normalised to the paper's 128 rollouts (tiny mode times smaller phases).
            "phase_s": ppo[0]["seconds"] * MEASURED_ROWS / ppo[0]["rows_per_phase"],
            "sft_step_s": ppo[0]["minibatch_step_s"],
        }
    return out


def projection(task_rates: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Projected wall seconds of each paper-profile notebook (``vbon.dryrun.plan("paper")``)."""
    from vbon.dryrun import estimate_seconds, plan

    p = plan("paper")
    per = {nb.notebook: estimate_seconds(nb, task_rates) for nb in p.notebooks}
    known = [s for s in per.values() if s is not None]
    return {"notebooks": per, "total_s": sum(known) if known else None, "counts": p.totals()}


def _hms(seconds: float) -> str:
    h, rest = divmod(int(round(seconds)), 3600)
    return f"{h}h{rest // 60:02d}m" if h else f"{rest // 60}m{rest % 60:02d}s"


def main() -> int:
    from vbon.dryrun import default_gpu_check_path

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny models (the default on a CPU)")
    parser.add_argument("--budget-s", type=float, default=420.0, help="stop starting parts after")
    parser.add_argument(
        "--out",
        default=None,
        help="write the results as JSON here (default runs/paper/gpu_check.json, read by the "
        "dry run; tiny: runs/paper/gpu_check-tiny.json)",
    )
    args = parser.parse_args()
    start = time.perf_counter()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tiny = args.tiny or device.type == "cpu"
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu"
    print(f"device: {name}, torch {torch.__version__}, tiny={tiny}, budget {args.budget_s:.0f} s")
    deadline = start + args.budget_s
    results: list[dict[str, Any]] = []
    for spec in model_specs(tiny):
        if time.perf_counter() > deadline - 30:
            print(f"{spec['name']}: skipped, time budget spent")
            results.append({"model": spec["name"], "skipped": "time budget"})
            continue
        results += check_model(spec, deadline, device)
    task_rates = rates(results)
    proj = projection(task_rates)
    print("projected wall time of the paper profile (gpu_check rates x the dry run's plan;")
    print(
        "  TL;DR scaled to the configured variant's size; reward scoring not measured: a lower bound):"
    )
    for notebook, sec in proj["notebooks"].items():
        print(f"  {notebook:20s} {'no measurement' if sec is None else _hms(sec)}")
    if proj["total_s"] is not None:
        print(
            f"  {'total':20s} {_hms(proj['total_s'])}"
            + ("  (tiny models: meaningless)" if tiny else "")
        )
    total = time.perf_counter() - start
    summary = {
        "device": name,
        "tiny": tiny,
        "total_s": total,
        "results": results,
        "rates": task_rates,
        "projection": proj,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    print(f"total {total:.1f} s")
    print("JSON " + json.dumps(summary, default=float))
    default = default_gpu_check_path()
    out = (
        Path(args.out)
        if args.out
        else default.with_name("gpu_check-tiny.json")
        if tiny
        else default
    )
    targets = [out]
    if os.environ.get("OUT"):  # the device machine's results folder
        targets.append(Path(os.environ["OUT"]) / out.name)
    for path in targets:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(summary, indent=2, default=float) + "\n")
    print(f"wrote {', '.join(str(p) for p in targets)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
