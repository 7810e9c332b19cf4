"""Speed of the exact BoN maths and of the batched F_hat, against a plain numpy sort.

A sort of the same rewards is the floor: pi_BoN needs the items in reward order. Returning
per-item values in the caller's order also needs the permutation, so an argsort is printed too.
Times are the best of several repeats, measured in this process; quote the ratios.

    python benchmarks/bon_math.py [--quick]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

from vbon import bon
from vbon.cdf import RewardCDF, empirical_log_cdf


def best_time(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up: page faults and lazy imports are not the function's cost
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, smaller sizes")
    args = parser.parse_args()
    repeats = 3 if args.quick else 7
    sizes = [10**3, 10**4, 10**5] if args.quick else [10**3, 10**4, 10**5, 10**6]
    rng = np.random.default_rng(0)

    print("exact pi_BoN (bon_pmf), injective rewards")
    print(
        f"{'items':>9} {'N':>5} {'pmf ms':>9} {'sort ms':>9} {'argsort ms':>11} {'/sort':>7} {'/argsort':>9}"
    )
    for k in sizes:
        p = rng.dirichlet(np.ones(k))
        r = rng.normal(size=k)
        t_sort = best_time(lambda r=r: np.sort(r), repeats)
        t_arg = best_time(lambda r=r: np.argsort(r), repeats)
        for n in (2, 16, 256):
            t = best_time(lambda p=p, r=r, n=n: bon.bon_pmf(p, r, n), repeats)
            print(
                f"{k:>9} {n:>5} {t * 1e3:>9.2f} {t_sort * 1e3:>9.2f} {t_arg * 1e3:>11.2f} "
                f"{t / t_sort:>7.1f} {t / t_arg:>9.1f}"
            )

    prompts, m, queries = (1000, 300, 20_000) if args.quick else (5000, 300, 100_000)
    table = rng.normal(size=(prompts, m))
    sorted_table = np.sort(table, axis=1)
    rewards = rng.normal(size=queries)
    prompt_index = rng.integers(0, prompts, size=queries)
    t_sort = best_time(lambda: np.sort(table, axis=1), repeats)
    t_cdf = RewardCDF(sorted_table, assume_sorted=True)
    t_build_query = best_time(
        lambda: RewardCDF(sorted_table, assume_sorted=True).log_cdf(rewards, prompt_index), repeats
    )
    t_query = best_time(lambda: t_cdf.log_cdf(rewards, prompt_index), repeats)
    t_unsorted = best_time(
        lambda: empirical_log_cdf(table, rewards, prompt_index=prompt_index), repeats
    )
    print(f"\nlog F_hat of {queries} rewards against {prompts} prompts x {m} reference rewards")
    print(f"  numpy sort of the reference table (floor): {t_sort * 1e3:8.2f} ms")
    for label, t in [
        ("query a built RewardCDF (training loop)", t_query),
        ("build from sorted rewards + query", t_build_query),
        ("empirical_log_cdf from unsorted rewards", t_unsorted),
    ]:
        print(f"  {label:<42} {t * 1e3:8.2f} ms  {t / t_sort:5.1f}x sort")


if __name__ == "__main__":
    main()
