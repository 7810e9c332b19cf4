"""Speed of the exact BoN maths and of the batched F_hat, against a plain numpy sort.

A sort of the same rewards is the floor: pi_BoN needs the items in reward order. Returning
per-item values in the caller's order also needs the permutation, so an argsort is printed too.
Times are the best of several repeats, measured in this process; quote the ratios.

The target (within 3x of the sort) is judged at 1e5 items and more, where the work grows with
the support. Below that the ~0.15 ms a call costs whatever its size (input checks and some forty
array operations) exceeds three sorts of 1e3 items (~30 us); the rows are printed all the same.
The "exp/log" column times the three float64 passes that pi_BoN needs per item (log1p, expm1
and exp, in torch; neither torch nor numpy has a SIMD float64 log1p or expm1): at 1e3 items they
alone take two sorts, at 1e4 one.

    python benchmarks/bon_math.py [--quick]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch

from vbon import bon
from vbon.cdf import RewardCDF, empirical_log_cdf

TARGET_FROM = 10**5  # see the module docstring


def best_time(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up: page faults and lazy imports are not the function's cost
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def interleaved_best(fns: list[Callable[[], object]], repeats: int) -> list[float]:
    """Best time of each function, calling them in turn so that drift in the machine's speed
    (a shared VM) falls on all of them alike. The order is shuffled each round: a call is
    slower after one that evicted its data from the caches or left the allocator's heap
    trimmed, and no function should always follow the same one."""
    for fn in fns:
        fn()
    best = [np.inf] * len(fns)
    rng = np.random.default_rng(0)
    for _ in range(repeats):
        for i in rng.permutation(len(fns)):
            start = time.perf_counter()
            fns[i]()
            best[i] = min(best[i], time.perf_counter() - start)
    return best


def transcendentals(minus_q: torch.Tensor, n_log_ratio: torch.Tensor) -> None:
    """The log1p, expm1 and exp passes over one support that pi_BoN cannot do without."""
    torch.log1p(minus_q)
    torch.expm1(n_log_ratio)
    torch.exp(n_log_ratio)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, smaller sizes")
    args = parser.parse_args()
    repeats = 3 if args.quick else 21
    sizes = [10**3, 10**4, 10**5] if args.quick else [10**3, 10**4, 10**5, 10**6]
    rng = np.random.default_rng(0)

    print("exact pi_BoN (bon_pmf), injective rewards")
    print(
        f"{'items':>9} {'N':>5} {'pmf ms':>9} {'sort ms':>9} {'argsort ms':>11} {'exp/log ms':>11} "
        f"{'/sort':>7} {'/argsort':>9}"
    )
    judged = []
    for k in sizes:
        p = rng.dirichlet(np.ones(k))
        r = rng.normal(size=k)
        ns = (2, 16, 256)
        # Their arguments as pi_BoN meets them (items in reward order, N = 16).
        p_sorted = torch.from_numpy(p[np.argsort(r)])
        minus_q = -p_sorted / torch.cumsum(p_sorted, 0)
        exp_log_args = (minus_q, 16 * torch.log1p(minus_q))
        t_sort, t_arg, t_transc, *t_pmf = interleaved_best(
            [
                lambda r=r: np.sort(r),
                lambda r=r: np.argsort(r),
                lambda a=exp_log_args: transcendentals(*a),
            ]
            + [lambda p=p, r=r, n=n: bon.bon_pmf(p, r, n) for n in ns],
            repeats,
        )
        for n, t in zip(ns, t_pmf, strict=True):
            print(
                f"{k:>9} {n:>5} {t * 1e3:>9.2f} {t_sort * 1e3:>9.2f} {t_arg * 1e3:>11.2f} "
                f"{t_transc * 1e3:>11.2f} {t / t_sort:>7.2f} {t / t_arg:>9.2f}"
            )
            if k >= TARGET_FROM:
                judged.append(t / t_sort)
    if judged:
        verdict = "met" if max(judged) <= 3.0 else "NOT met"
        print(
            f"target pmf <= 3x sort at >= {TARGET_FROM:.0e} items: worst {max(judged):.2f}x, {verdict}"
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
