"""Training throughput of vbon.train (rloo, ppo) against TRL's RLOOTrainer at equal settings.

For each world (the toy-sentiment task, and a random GPT-2-small-sized model with a 50,257-token
vocabulary) and each trainer, a few steps run in a fresh subprocess (so peak memory is that
trainer's alone); the first ``--warmup`` steps are not timed, and step times are medians (with
``--repeats R`` the trainers run R times interleaved and the best is kept: on a shared machine a
change of load then hits every trainer). Printed per variant: samples/s,
seconds per step split into generate / reward / log-probs / backward (backward includes the
forward with grad and the optimiser step) and the loop overhead (time outside the four parts),
and the peak resident memory.

Equal settings for TRL: the same model object (same frozen bottom blocks), prompts, batch of
``batch_prompts * k`` completions, k, completion length, temperature 1 / top_k 0 / top_p 1,
beta = 1/(N-1), learning rate, gradient clipping, and a vBoN reward function (log F_hat against
the same reference rewards), no gradient checkpointing (TRL's RLOOConfig turns it on by
default; we do not recompute activations). TRL is not a dependency of vbon: pass ``--trl-path DIR`` holding it,
e.g. after ``pip install --no-deps --target DIR trl`` (it needs no torch of its own); without it,
or if it fails to run, the benchmark says so and prints our numbers alone.

    python benchmarks/train_throughput.py [--worlds toy,gpt2-small] [--trl-path /tmp/trl]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np
from _words import word_reward, word_tokenizer  # benchmarks/ is on sys.path

N_BON = 8  # vBoN's N: beta = 1/(N-1)
GPT2_VOCAB = 50257


# -- worlds -------------------------------------------------------------------------------------
def build_world(name: str, batch_prompts: int, m: int, max_new_tokens: int) -> dict[str, Any]:
    """Policy, tokenizer, reward, prompts and F_hat (reference rewards) of a benchmark world."""
    import torch

    from vbon.cdf import RewardCDF
    from vbon.generation import sample

    if name == "toy":
        from vbon.reference import build_task_reference
        from vbon.tasks import get_task

        task = get_task("imdb", "smoke", max_new_tokens=max_new_tokens)
        policy, tok = task.load_policy(device="cpu")
        reward = task.load_reward_model(device="cpu")
        prompts = list(task.train_prompts[:batch_prompts])
        cache = build_task_reference(task, "train", m, max_prompts=batch_prompts, progress=False)
        return {
            "policy": policy,
            "tok": tok,
            "reward": reward,
            "prompts": prompts,
            "cdf": cache.cdf(),
            "sampling_temperature": task.sampling.temperature,
        }
    if name == "gpt2-small":
        from transformers import GPT2Config, GPT2LMHeadModel

        tok = word_tokenizer(GPT2_VOCAB)
        torch.manual_seed(0)
        config = GPT2Config(  # GPT-2 small: 12 layers, 768 wide, 12 heads, 50,257 tokens
            vocab_size=GPT2_VOCAB,
            n_positions=1024,
            n_embd=768,
            n_layer=12,
            n_head=12,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            bos_token_id=GPT2_VOCAB - 1,
            eos_token_id=GPT2_VOCAB - 1,
            pad_token_id=GPT2_VOCAB - 1,
        )
        policy = GPT2LMHeadModel(config).eval()
        rng = np.random.default_rng(0)
        prompts = [
            " ".join(f"w{i}" for i in rng.integers(0, 5000, 6)) for _ in range(batch_prompts)
        ]
        reward = word_reward
        refs = sample(
            policy, tok, prompts, m, max_new_tokens=max_new_tokens, batch_size=256, seed=0
        )
        rr = reward([prompts[i] for i in refs.prompt_index], refs.texts).reshape(len(prompts), m)
        return {
            "policy": policy,
            "tok": tok,
            "reward": reward,
            "prompts": prompts,
            "cdf": RewardCDF(rr),
            "sampling_temperature": 1.0,
        }
    raise ValueError(f"world: expected toy or gpt2-small, got {name!r}")


# -- one measurement (runs in its own process) ---------------------------------------------------
def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_ours(args: argparse.Namespace, world: dict[str, Any]) -> dict[str, Any]:
    import torch

    from vbon.train import TrainConfig, TrainSetup, train
    from vbon.train.setup import Sampling

    ppo = args.trainer == "ours-ppo"
    setup = TrainSetup(
        policy=world["policy"],
        tokenizer=world["tok"],
        reward_fn=world["reward"],
        train_prompts=world["prompts"],
        test_prompts=world["prompts"][:1],
        sampling=Sampling(max_new_tokens=args.max_new_tokens, temperature=1.0),
        test_ref=np.zeros((1, 1)),
        train_cdf=world["cdf"],
    )
    with tempfile.TemporaryDirectory() as out:
        config = TrainConfig(
            task=f"bench-{args.world}",
            method="vbon",
            n=N_BON,
            algorithm="ppo" if ppo else "rloo",
            steps=args.warmup + args.steps,
            batch_prompts=args.batch_prompts,
            k=1 if ppo else args.k,
            mini_batch_size=args.batch_prompts if ppo else None,
            ppo_epochs=4 if ppo else None,
            lr=1e-5,
            num_layers_unfrozen=args.num_layers_unfrozen,
            evaluate=False,  # evaluation is not part of the throughput
            cpu_threads=torch.get_num_threads(),  # the same threads as TRL gets
            output_dir=out,
            progress=False,
        )
        start = time.perf_counter()
        result = train(config, setup)
        wall = time.perf_counter() - start
    rows = [r for r in result.history if r["phase"] == "train"][args.warmup :]
    # Medians: a step preempted by another process on a shared machine does not skew them.
    parts = {
        p: float(np.median([r[f"time_{p}"] for r in rows]))
        for p in ("generate", "reward", "logprobs", "backward", "other", "step")
    }
    samples = float(np.mean([r["num_samples"] for r in rows]))
    cpu = float(np.median([r["cpu_time_step"] for r in rows]))
    return {
        "samples_per_step": samples,
        "samples_per_s": samples / parts["step"],
        "samples_per_cpu_s": samples / cpu,
        "seconds": parts,
        "cpu_s_per_step": cpu,
        "wall_s": wall,
    }


def run_trl(args: argparse.Namespace, world: dict[str, Any]) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback

    try:
        from trl import RLOOConfig, RLOOTrainer
    except Exception as exc:  # noqa: BLE001 - any import failure means "TRL cannot run here"
        return {"error": f"cannot import trl: {type(exc).__name__}: {exc}"}
    from vbon.train.modeling import freeze_bottom

    cdf, reward, prompts = world["cdf"], world["reward"], world["prompts"]
    index = {p: i for i, p in enumerate(prompts)}

    def vbon_reward(prompts: list[str], completions: list[str], **_: Any) -> list[float]:
        r = reward(list(prompts), list(completions))
        return list(cdf.log_cdf(r, np.array([index[p] for p in prompts])))

    times: list[float] = []
    cpu_times: list[float] = []

    class StepTimes(TrainerCallback):
        def on_step_end(self, *_: Any, **__: Any) -> None:
            times.append(time.perf_counter())
            cpu_times.append(time.process_time())

    policy, tok = world["policy"], world["tok"]
    freeze_bottom(policy, args.num_layers_unfrozen)  # the same trainable blocks as ours
    with tempfile.TemporaryDirectory() as out:
        policy.save_pretrained(f"{out}/model")  # TRL loads pi_ref from the policy's path
        tok.save_pretrained(f"{out}/model")
        policy.config._name_or_path = f"{out}/model"
        rows = args.batch_prompts * args.k
        config = RLOOConfig(
            output_dir=f"{out}/trl",
            per_device_train_batch_size=rows,
            num_generations=args.k,
            max_completion_length=args.max_new_tokens,
            temperature=1.0,
            top_k=0,
            top_p=1.0,
            beta=1.0 / (N_BON - 1),
            learning_rate=1e-5,
            max_grad_norm=1.0,
            normalize_advantages=False,
            max_steps=args.warmup + args.steps,
            logging_steps=10_000,
            save_strategy="no",
            report_to=[],
            use_cpu=not torch.cuda.is_available(),
            bf16=False,
            seed=0,
            disable_dropout=True,
            gradient_checkpointing=False,  # TRL's default is True; ours does not recompute
        )
        data = Dataset.from_dict({"prompt": prompts * (args.warmup + args.steps + 1)})
        trainer = RLOOTrainer(
            model=policy,
            reward_funcs=[vbon_reward],
            args=config,
            train_dataset=data,
            processing_class=tok,
            callbacks=[StepTimes()],
        )
        start, cpu_start = time.perf_counter(), time.process_time()
        trainer.train()
        wall = time.perf_counter() - start
    # Step i's interval runs from the end of step i-1 (train() start for the first); the first
    # ``warmup`` intervals (which include TRL's setup) are not timed.
    step = float(np.median(np.diff([start, *times])[args.warmup :]))
    cpu = float(np.median(np.diff([cpu_start, *cpu_times])[args.warmup :]))
    return {
        "samples_per_step": rows,
        "samples_per_s": rows / step,
        "samples_per_cpu_s": rows / cpu,
        "seconds": {"step": step},
        "cpu_s_per_step": cpu,
        "wall_s": wall,
    }


def one(args: argparse.Namespace) -> None:
    """Child process: build the world, run one trainer, print one JSON line."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.trl_path:
        sys.path.insert(0, args.trl_path)
    m = args.m if args.world == "toy" else args.m_random
    world = build_world(args.world, args.batch_prompts, m, args.max_new_tokens)
    base_rss = _peak_rss_mib()
    try:
        out = run_trl(args, world) if args.trainer == "trl" else run_ours(args, world)
    except Exception as exc:  # noqa: BLE001 - report, do not hide, a trainer that cannot run
        out = {"error": f"{type(exc).__name__}: {exc}"}
    out.update(
        peak_rss_mib=_peak_rss_mib(),
        rss_before_training_mib=base_rss,
        threads=torch.get_num_threads(),
    )
    print("RESULT " + json.dumps(out))


# -- the driver ---------------------------------------------------------------------------------
def _child(args: argparse.Namespace, world: str, trainer: str) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--one", "--world", world, "--trainer", trainer]
    for name in (
        "steps",
        "warmup",
        "batch_prompts",
        "k",
        "max_new_tokens",
        "m",
        "m_random",
        "num_layers_unfrozen",
        "threads",
    ):
        cmd += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    if args.trl_path:
        cmd += ["--trl-path", args.trl_path]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    return {"error": f"exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}"}


def _fmt(name: str, r: dict[str, Any]) -> str:
    if "error" in r:
        return f"  {name:10s} FAILED: {r['error']}"
    s = r["seconds"]
    line = (
        f"  {name:10s} {r['samples_per_s']:8.2f} samples/s ({r['samples_per_cpu_s']:.2f} per CPU-s)"
        f"  {s['step']:7.3f} s/step ({r['cpu_s_per_step']:.3f} CPU-s)"
    )
    if "generate" in s:
        line += (
            f"  [generate {s['generate']:.3f}  reward {s['reward']:.3f}  logprobs "
            f"{s['logprobs']:.3f}  backward {s['backward']:.3f}  other {s['other']:.4f}"
            f" = {s['other'] / s['step']:.1%}]"
        )
    line += f"  peak RSS {r['peak_rss_mib']:.0f} MiB"
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worlds", default="toy,gpt2-small")
    parser.add_argument("--trainers", default="ours-rloo,ours-ppo,trl")
    parser.add_argument("--steps", type=int, default=4, help="timed steps")
    parser.add_argument("--warmup", type=int, default=1, help="untimed first steps")
    parser.add_argument("--batch-prompts", type=int, default=8)
    parser.add_argument("--k", type=int, default=4, help="samples per prompt (rloo, TRL)")
    parser.add_argument("--max-new-tokens", type=int, default=40)
    parser.add_argument("--m", type=int, default=32, help="reference samples per prompt (F_hat)")
    parser.add_argument(
        "--m-random",
        type=int,
        default=4,
        help="reference samples per prompt for the random model (its F_hat only has to exist)",
    )
    parser.add_argument("--num-layers-unfrozen", type=int, default=2)
    parser.add_argument(
        "--repeats", type=int, default=1, help="interleaved repeats per trainer; the best is kept"
    )
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument(
        "--trl-path",
        default=os.environ.get("VBON_TRL_PATH", ""),
        help="directory holding the trl package (pip install --no-deps --target)",
    )
    # internal: one measurement in a child process
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--world", default="toy", help=argparse.SUPPRESS)
    parser.add_argument("--trainer", default="ours-rloo", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        one(args)
        return
    print(
        f"settings: {args.batch_prompts} prompts x k={args.k} = {args.batch_prompts * args.k} "
        f"completions/step (ppo: {args.batch_prompts} x 1, 4 epochs), {args.max_new_tokens} new "
        f"tokens, top {args.num_layers_unfrozen} blocks trainable, vBoN N={N_BON}, "
        f"{args.steps} timed steps after {args.warmup} warm-up, threads={args.threads or 'default'}"
    )
    if "trl" in args.trainers and not args.trl_path:
        try:
            import trl  # noqa: F401
        except ImportError:
            print(
                "TRL: not installed here and no --trl-path given: TRL's RLOOTrainer is skipped "
                "(pip install --no-deps --target DIR trl, then --trl-path DIR)"
            )
            args.trainers = ",".join(t for t in args.trainers.split(",") if t != "trl")
    for world in args.worlds.split(","):
        print(f"\n== {world}")
        results: dict[str, dict[str, Any]] = {}
        for rep in range(args.repeats):  # interleaved, so a change of load hits every trainer
            for trainer in args.trainers.split(","):
                r = _child(args, world, trainer)
                best = results.get(trainer)
                if best is None or (
                    "samples_per_s" in r
                    and r.get("samples_per_s", 0) > best.get("samples_per_s", 0)
                ):
                    results[trainer] = r
                if args.repeats > 1:
                    print(f"  (repeat {rep + 1}) " + _fmt(trainer, r).strip(), flush=True)
        for trainer, r in results.items():
            print(_fmt(trainer, r), flush=True)
        ours, trl = results.get("ours-rloo", {}), results.get("trl", {})
        if "samples_per_s" in ours and "samples_per_s" in trl:
            print(
                f"  rloo / TRL RLOOTrainer: {ours['samples_per_s'] / trl['samples_per_s']:.2f}x "
                f"samples/s, {ours['samples_per_cpu_s'] / trl['samples_per_cpu_s']:.2f}x samples "
                "per CPU-second of the process (not inflated when another process preempts it)"
            )

        elif "trl" in results:
            print("  TRL could not run here, see the error above; our numbers stand alone.")


if __name__ == "__main__":
    main()
