"""One prepared GPU check of the trainers: run it whenever a GPU is available (about 5 minutes).

On a GPT-2-small-sized and a Pythia-1B-sized model (random weights, built locally: no hub), in
bf16: reference sampling (the M-sample cache's workload), then a few rloo and a few ppo steps of
vBoN (N = 8) through ``vbon.train.train``. Prints samples/s, generated tokens/s, seconds per step
by part, and peak GPU memory, one line per part, plus a JSON summary (``--out`` writes it too).
Parts that would overrun ``--budget-s`` are skipped and say so.

On a CPU (CI), or with ``--tiny``, the same code path runs on tiny models in seconds.

    python benchmarks/gpu_check.py [--tiny] [--budget-s 420] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from typing import Any

import numpy as np
import torch
from _words import word_reward, word_tokenizer  # benchmarks/ is on sys.path

N_BON = 8


def model_specs(tiny: bool) -> list[dict[str, Any]]:
    """(name, config, batch settings) of the checked models."""
    from transformers import GPT2Config, GPTNeoXConfig

    if tiny:
        return [
            {
                "name": "gpt2-tiny",
                "config": GPT2Config(
                    vocab_size=512,
                    n_embd=64,
                    n_layer=4,
                    n_head=4,
                    n_positions=256,
                    bos_token_id=511,
                    eos_token_id=511,
                ),
                "unfrozen": 2,
                "prompts": 4,
                "k": 2,
                "mini": 4,
                "prompt_len": 8,
                "new_tokens": 8,
                "m": 4,
                "steps": 2,
            },
            {
                "name": "pythia-tiny",
                "config": GPTNeoXConfig(
                    vocab_size=512,
                    hidden_size=64,
                    num_hidden_layers=4,
                    num_attention_heads=4,
                    intermediate_size=256,
                    max_position_embeddings=256,
                    rotary_pct=0.25,
                    tie_word_embeddings=False,
                ),
                "unfrozen": 2,
                "prompts": 4,
                "k": 2,
                "mini": 4,
                "prompt_len": 8,
                "new_tokens": 8,
                "m": 4,
                "steps": 2,
            },
        ]
    return [
        # GPT-2 small (124M): the IMDB experiment's policy size; top 2 blocks train (paper).
        {
            "name": "gpt2-small",
            "config": GPT2Config(
                vocab_size=50257,
                n_embd=768,
                n_layer=12,
                n_head=12,
                n_positions=1024,
                bos_token_id=50256,
                eos_token_id=50256,
            ),
            "unfrozen": 2,
            "prompts": 32,
            "k": 4,
            "mini": 32,
            "prompt_len": 8,
            "new_tokens": 40,
            "m": 16,
            "steps": 3,
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
            "mini": 16,
            "prompt_len": 256,
            "new_tokens": 53,
            "m": 8,
            "steps": 3,
        },
    ]


def _peak_gpu_gib() -> float:
    return torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else 0.0


def _reset_peak() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _build(spec: dict[str, Any], device: torch.device) -> tuple[Any, Any, list[str]]:
    from transformers import AutoModelForCausalLM

    config = spec["config"]
    vocab = config.vocab_size
    for name in ("resid_pdrop", "embd_pdrop", "attn_pdrop", "hidden_dropout", "attention_dropout"):
        if hasattr(config, name):
            setattr(config, name, 0.0)
    config.eos_token_id = config.pad_token_id = config.bos_token_id = vocab - 1
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).to(device).eval()
    model.generation_config.eos_token_id = model.generation_config.pad_token_id = vocab - 1
    tok = word_tokenizer(vocab)
    rng = np.random.default_rng(0)
    prompts = [
        " ".join(f"w{i}" for i in rng.integers(0, vocab - 1, spec["prompt_len"]))
        for _ in range(spec["prompts"])
    ]
    return model, tok, prompts


def check_model(spec: dict[str, Any], deadline: float, device: torch.device) -> list[dict]:
    from vbon.cdf import RewardCDF
    from vbon.generation import sample
    from vbon.train import TrainConfig, TrainSetup, train
    from vbon.train.setup import Sampling

    rows: list[dict] = []
    model, tok, prompts = _build(spec, device)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if bf16
        else torch.autocast("cpu", enabled=False)
    )

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
            max_new_tokens=spec["new_tokens"],
            batch_size=len(prompts) * spec["m"],
            seed=1,
        )
        if device.type == "cuda":
            torch.cuda.synchronize()
        sec = time.perf_counter() - start
    tokens = int(refs.mask.sum())
    rows.append(
        {
            "model": spec["name"],
            "params_M": round(params, 1),
            "part": "reference sampling",
            "samples_per_s": len(refs) / sec,
            "tokens_per_s": tokens / sec,
            "seconds": sec,
            "peak_gpu_gib": _peak_gpu_gib(),
        }
    )
    print(_line(rows[-1]), flush=True)
    ref_rewards = word_reward([prompts[i] for i in refs.prompt_index], refs.texts)
    cdf = RewardCDF(ref_rewards.reshape(len(prompts), spec["m"]))

    for algorithm in ("rloo", "ppo"):
        remaining = deadline - time.perf_counter()
        if remaining < 3 * rows[0]["seconds"] + 20:
            rows.append({"model": spec["name"], "part": algorithm, "skipped": "time budget"})
            print(f"{spec['name']:12s} {algorithm:18s} skipped: not enough of the time budget left")
            continue
        _reset_peak()
        setup = TrainSetup(
            policy=model,
            tokenizer=tok,
            reward_fn=word_reward,
            train_prompts=prompts,
            test_prompts=prompts[:1],
            sampling=Sampling(spec["new_tokens"]),
            test_ref=None,
            train_cdf=cdf,
        )
        ppo = algorithm == "ppo"
        with tempfile.TemporaryDirectory() as out:
            config = TrainConfig(
                task=f"gpu-check-{spec['name']}",
                method="vbon",
                n=N_BON,
                algorithm=algorithm,
                steps=spec["steps"] + 1,
                batch_prompts=spec["prompts"] * (spec["k"] if ppo else 1),
                k=1 if ppo else spec["k"],
                mini_batch_size=spec["mini"] if ppo else None,
                ppo_epochs=2 if ppo else None,
                lr=1e-5,
                num_layers_unfrozen=spec["unfrozen"],
                evaluate=False,
                output_dir=out,
                progress=False,
                mixed_precision="auto",
            )
            result = train(config, setup)
        hist = [r for r in result.history if r["phase"] == "train"][1:]  # first step: warm-up
        step = float(np.mean([r["time_step"] for r in hist]))
        samples = float(np.mean([r["num_samples"] for r in hist]))
        tokens = float(np.mean([r["num_samples"] * r["length"] for r in hist]))
        parts = {
            p: float(np.mean([r[f"time_{p}"] for r in hist]))
            for p in ("generate", "reward", "logprobs", "backward", "other")
        }
        rows.append(
            {
                "model": spec["name"],
                "params_M": round(params, 1),
                "part": algorithm,
                "samples_per_s": samples / step,
                "tokens_per_s": tokens / step,
                "seconds": step,
                "parts": parts,
                "peak_gpu_gib": _peak_gpu_gib(),
                "precision": "bf16" if bf16 else "fp32",
            }
        )
        print(_line(rows[-1]), flush=True)
    del model
    return rows


def _line(r: dict[str, Any]) -> str:
    text = (
        f"{r['model']:12s} {r['part']:18s} {r['samples_per_s']:9.1f} samples/s "
        f"{r['tokens_per_s']:10.0f} tokens/s  {r['seconds']:7.2f} s"
    )
    if "parts" in r:
        text += " /step [" + " ".join(f"{k} {v:.2f}" for k, v in r["parts"].items()) + "]"
    if torch.cuda.is_available():
        text += f"  peak GPU {r['peak_gpu_gib']:.2f} GiB"
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny models (the default on a CPU)")
    parser.add_argument("--budget-s", type=float, default=420.0, help="stop starting parts after")
    parser.add_argument("--out", default=None, help="also write the results as JSON here")
    args = parser.parse_args()
    start = time.perf_counter()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tiny = args.tiny or device.type == "cpu"
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu"
    print(f"device: {name}, torch {torch.__version__}, tiny={tiny}, budget {args.budget_s:.0f} s")
    deadline = start + args.budget_s
    results = []
    for spec in model_specs(tiny):
        if time.perf_counter() > deadline - 30:
            print(f"{spec['name']}: skipped, time budget spent")
            results.append({"model": spec["name"], "skipped": "time budget"})
            continue
        results += check_model(spec, deadline, device)
    total = time.perf_counter() - start
    summary = {
        "device": name,
        "tiny": tiny,
        "total_s": total,
        "results": results,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    print(f"total {total:.1f} s")
    print("JSON " + json.dumps(summary, default=float))
    out = args.out or (
        os.path.join(os.environ["OUT"], "gpu_check.json") if os.environ.get("OUT") else None
    )
    if out:
        with open(out, "w") as f:
            json.dump(summary, f, indent=2, default=float)
    return 0


if __name__ == "__main__":
    sys.exit(main())
