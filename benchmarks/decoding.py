"""The sampler's decoding loop against the plain loop it replaced, on both toy worlds.

``vbon.generation._decode`` shares one prefill among the rows that repeat a prompt (M samples
per prompt in a reference cache, k per prompt in a rollout), drops rows that ended from the
batch once they are half of it, and sums each row's log-probability while it decodes. The
baseline, run in the same process on the same batches and seeds, is the loop before: every
row's own prefill, every row stepped until the last one ends, and a second forward pass for
the log-probabilities (what ``sample_pool`` did for BoN's exact KL). Prints the times, the
ratios, and whether the two drew the same tokens.

    python benchmarks/decoding.py [--prompts 8] [--samples 64] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import time

import torch

from vbon.generation import _decode, _left_padded, completion_logprobs, plain_decode, sample
from vbon.models import cpu_threads
from vbon.tasks import get_task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--samples", type=int, default=64, help="samples per prompt")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    for name in ("tldr", "imdb"):
        task = get_task(name, "smoke")
        model, tok = task.load_reference()
        s = task.sampling
        prompts = task.train_prompts[: args.prompts]
        kw = {"max_new_tokens": s.max_new_tokens, "temperature": s.temperature}
        kw.update(eos=[tok.eos_token_id], pad=tok.pad_token_id)
        rows = [
            tok(p, add_special_tokens=False)["input_ids"]
            for p in prompts
            for _ in range(args.samples)
        ]
        batches = [
            _left_padded(rows[i : i + args.batch_size], tok.pad_token_id)
            for i in range(0, len(rows), args.batch_size)
        ]
        with cpu_threads(1):
            times, drawn = {}, {}
            for label, fn in (("plain loop", plain_decode), ("vbon _decode", _decode)):
                torch.manual_seed(0)
                start = time.perf_counter()
                out = [fn(model, ids, att, **kw) for ids, att in batches]
                times[label] = time.perf_counter() - start
                drawn[label] = torch.cat([o[0] if isinstance(o, tuple) else o for o in out])
            # BoN's pool needs log pi_ref(y): a second pass before, summed while decoding now.
            pool = sample(
                model, tok, prompts, args.samples, **task.sampling.sample_kwargs(), seed=0
            )
            start = time.perf_counter()
            completion_logprobs(model, pool, temperature=s.temperature)
            second_pass = time.perf_counter() - start
        n = len(rows)
        same = torch.equal(drawn["plain loop"], drawn["vbon _decode"])
        print(
            f"toy {name}: {len(prompts)} prompts x {args.samples} samples, batch {args.batch_size}"
        )
        for label, t in times.items():
            print(f"  {label:14s} {t:6.2f} s  {n / t:7.1f} compl/s")
        ratio = times["plain loop"] / times["vbon _decode"]
        print(f"  speed-up {ratio:.2f}x; the same tokens drawn: {same}")
        print(
            f"  log-probabilities: a second pass takes {second_pass:.2f} s "
            f"({second_pass / times['vbon _decode']:.2f}x the sampling), none now"
        )


if __name__ == "__main__":
    main()
