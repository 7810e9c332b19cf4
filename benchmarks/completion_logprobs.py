"""The packed LM head: completion log-probs through the head only where the mask is set.

A rollout's completions end at different lengths, and a small model's LM head (rows x positions
x vocabulary) is most of its forward and backward cost. ``vbon.train.modeling.packed_logits``
sends only the kept positions through the head; the baseline, in the same process on the same
batch, is the full-width path (``logits_to_keep`` over every completion position, then the
mask), which the trainer uses for models whose logits are not head(base_model(x)).

Times, for one rollout batch of the toy IMDB policy (RLOO's shape: 8 prompts x 8 samples), the
policy's forward + backward and pi_ref's no-grad forward, best of ``--repeats`` interleaved
rounds, and prints both and their ratio.

    python benchmarks/completion_logprobs.py [--prompts 8] [--k 8] [--repeats 7] [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import torch

from vbon.generation import sample
from vbon.tasks import get_task
from vbon.train.modeling import freeze_bottom, sequence_logprobs


def _time(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (smoke runs use 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    task = get_task("imdb", "smoke")
    model, tok = task.load_policy()
    freeze_bottom(model, 2)
    batch = sample(
        model,
        tok,
        task.train_prompts[: args.prompts],
        args.k,
        **task.sampling.sample_kwargs(),
        seed=0,
    )
    width = int(batch.mask.sum(1).max())
    inputs = (
        batch.prompt_ids,
        batch.prompt_mask,
        batch.token_ids[:, :width],
        batch.mask[:, :width],
    )
    kept = float(batch.mask[:, :width].float().mean())

    def policy_step() -> None:
        logp, _ = sequence_logprobs(model, *inputs, temperature=1.0)
        logp.sum().backward()
        model.zero_grad(set_to_none=True)

    def reference_pass() -> None:
        with torch.no_grad():
            sequence_logprobs(model, *inputs, temperature=1.0)

    rows = {}
    for name, fn in (
        ("policy forward + backward", policy_step),
        ("pi_ref forward", reference_pass),
    ):
        packed, full = [], []
        for _ in range(args.repeats):  # interleaved, so drift hits both alike
            model.__dict__["_vbon_separable_head"] = True
            packed.append(_time(fn, 1))
            model.__dict__["_vbon_separable_head"] = False
            full.append(_time(fn, 1))
        rows[name] = (min(full), min(packed))
    print(
        f"batch {len(batch)} rows x {width} completion positions, {kept:.0%} of them kept "
        f"(the rest is padding after EOS); {args.threads} thread(s)"
    )
    for name, (full, packed) in rows.items():
        print(
            f"  {name:26s} full {full * 1e3:7.1f} ms   packed {packed * 1e3:7.1f} ms   {full / packed:.2f}x"
        )


if __name__ == "__main__":
    main()
