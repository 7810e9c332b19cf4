"""Throughput of the reference-cache build on the toy IMDB world, against two baselines.

- floor: plain ``vbon.generation.sample`` of the same batches (prompt repetition), no scoring,
  no storage; beside it, the same work through transformers' ``generate`` with its
  ``num_return_sequences`` expansion (its own sampler, torch.multinomial);
- naive: one completion per ``sample`` call, one prompt at a time, scored one by one.

Prints completions/s, the ratios, and the process's peak resident memory.

    python benchmarks/reference_sampling.py [--prompts 32] [--m 32] [--batch-size 128]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time

import numpy as np
import torch
from transformers import GenerationConfig

from vbon.generation import sample
from vbon.precision import default_precision
from vbon.reference import build_reference_cache, task_reference_spec
from vbon.tasks import get_task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--m", type=int, default=32, help="completions per prompt")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--naive-prompts", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))

    task = get_task("imdb", "smoke")
    model, tok = task.load_reference()
    reward = task.load_reward_model()
    prompts = task.train_prompts[: args.prompts]
    s = task.sampling
    n = len(prompts) * args.m
    gen_kwargs = s.sample_kwargs()
    sample(model, tok, prompts[:2], 2, **gen_kwargs, seed=0)  # warm-up

    t0 = time.perf_counter()
    sample(model, tok, prompts, args.m, **gen_kwargs, batch_size=args.batch_size, seed=0)
    t_floor = time.perf_counter() - t0

    # The same work through generate's num_return_sequences expansion.
    per_call = max(1, args.batch_size // args.m)
    config = GenerationConfig(
        do_sample=True,
        num_return_sequences=min(args.m, args.batch_size),
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        **gen_kwargs,
    )
    t0 = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(prompts), per_call):
            enc = tok(
                prompts[i : i + per_call],
                return_tensors="pt",
                padding=True,
                add_special_tokens=False,
            )
            for _ in range(max(1, args.m // args.batch_size)):
                model.generate(**enc, generation_config=config)
    t_nrs = time.perf_counter() - t0

    # The precision a training run on this device samples F_hat's references at.
    spec = task_reference_spec(
        task, "train", args.m, seed=0, precision=default_precision(model.device)
    )
    with tempfile.TemporaryDirectory() as root:
        t0 = time.perf_counter()
        build_reference_cache(
            prompts,
            spec,
            model=model,
            tokenizer=tok,
            reward_fn=reward,
            root=root,
            batch_size=args.batch_size,
            progress=False,
        )
        t_cache = time.perf_counter() - t0

    naive_n = args.naive_prompts * args.m
    t0 = time.perf_counter()
    for p in prompts[: args.naive_prompts]:
        for j in range(args.m):
            c = sample(model, tok, [p], 1, **gen_kwargs, batch_size=1, seed=j)
            reward([p], c.texts, eos=c.ended)
    t_naive = (time.perf_counter() - t0) * n / naive_n  # extrapolated to the same n

    rate = lambda t: n / t  # noqa: E731
    print(
        f"toy IMDB world, {len(prompts)} prompts x M={args.m} = {n} completions, "
        f"{s.max_new_tokens} new tokens, batch {args.batch_size}, {torch.get_num_threads()} threads"
    )
    print(f"  floor: sample, prompt repetition       {rate(t_floor):8.1f} compl/s")
    print(f"  generate, num_return_sequences         {rate(t_nrs):8.1f} compl/s")
    print(f"  reference cache build (score + store)  {rate(t_cache):8.1f} compl/s")
    print(
        f"  naive loop (1 completion per call)     {rate(t_naive):8.1f} compl/s "
        f"(measured on {naive_n}, extrapolated)"
    )
    print(f"  cache build / floor time:  {t_cache / t_floor:5.2f}x   (target <= 1.3x)")
    print(f"  naive / cache build time:  {t_naive / t_cache:5.1f}x   (target >= 5x)")
    print(f"  sample / generate (num_return_sequences) time: {t_floor / t_nrs:5.2f}x")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  peak resident memory of this process: {peak:.0f} MiB")


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
