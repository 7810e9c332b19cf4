"""Metrics for every figure: reward, win rate against pi_ref, KL to pi_ref (k1, k3 and the
Rao-Blackwellised ``kl_rb``), BoN at many N, and the Pareto frontier (the paper's experiments).

Standard errors treat prompts as the independent unit: samples of one prompt are averaged first,
then the mean and its standard error are taken over prompts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from vbon._array import as_bool, as_float64, as_index, check_n, is_tensor, like
from vbon.bon import kl_bon_bound
from vbon.cdf import RewardCDF
from vbon.objectives import log_bon_ratio

__all__ = [
    "MeanSE",
    "mean_se",
    "win_rates",
    "win_rate",
    "kl_estimates",
    "next_token_kl",
    "kl_rb",
    "per_prompt_table",
    "bon_evaluate",
    "pareto_frontier",
    "frontier_counts",
    "PolicyEvaluation",
    "evaluate_policy",
    "SamplePool",
    "sample_pool",
    "evaluate_bon_on_task",
    "evaluate_policy_on_task",
    "evaluate_run",
]


@dataclass(frozen=True)
class MeanSE:
    """A mean with its standard error over ``n`` independent units (prompts)."""

    mean: float
    se: float
    n: int

    def __str__(self) -> str:
        return f"{self.mean:.4f} +- {self.se:.4f}"


def mean_se(values: Any, prompt_index: Any = None) -> MeanSE:
    """Mean and standard error, clustered by prompt when ``prompt_index`` is given.

    ``values`` may be (P, k) (k samples per prompt, rows are prompts) or flat with
    ``prompt_index`` naming each value's prompt, or flat and independent.
    """
    v = as_float64(values, "values")
    if v.size == 0:
        raise ValueError("values: empty")
    if prompt_index is not None:
        idx = as_index(prompt_index, "prompt_index").ravel()
        if idx.shape != v.ravel().shape:
            raise ValueError(f"prompt_index: shape {idx.shape} does not match values {v.shape}")
        _, inverse, counts = np.unique(idx, return_inverse=True, return_counts=True)
        per_prompt = np.bincount(inverse, weights=v.ravel()) / counts
    elif v.ndim == 2:
        per_prompt = v.mean(axis=1)
    else:
        per_prompt = v.ravel()
    n = per_prompt.size
    se = float(per_prompt.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    return MeanSE(float(per_prompt.mean()), se, n)


def win_rates(
    rewards: Any,
    ref_rewards: Any,
    prompt_index: Any = None,
    *,
    method: Literal["all", "first"] = "all",
) -> Any:
    """Per-sample win rate of policy rewards against pi_ref samples of the same prompt.

    Returns an array shaped like ``rewards``, a tensor when ``rewards`` is one.

    Args:
        rewards: policy rewards, (P, k) or flat with ``prompt_index``.
        ref_rewards: each prompt's reference rewards in draw order, (P, M) or a ragged list.
        prompt_index: prompt of each reward when ``rewards`` is flat.
        method: "all" compares with every reference reward of the prompt, ties count 1/2 (the
            package's default); "first" is the authors' variant: one comparison with the first
            cached reference sample, ties count as a loss.
    """
    wrap = like(rewards)
    rewards = as_float64(rewards, "rewards")  # numpy from here; the result is wrapped back
    if method == "first":
        if isinstance(ref_rewards, RewardCDF):
            raise ValueError(
                "ref_rewards: method='first' needs the rewards in draw order, not a RewardCDF"
            )
        cdf = RewardCDF(ref_rewards, max_m=1)
        return wrap(cdf.count_below(rewards, prompt_index, strict=True).astype(float))
    if method != "all":
        raise ValueError(f"method: expected 'all' or 'first', got {method!r}")
    cdf = ref_rewards if isinstance(ref_rewards, RewardCDF) else RewardCDF(ref_rewards)
    below = cdf.count_below(rewards, prompt_index, strict=True)
    below_or_equal = cdf.count_below(rewards, prompt_index, strict=False)
    rows = (
        np.broadcast_to(as_index(prompt_index, "prompt_index"), below.shape)
        if prompt_index is not None
        else np.broadcast_to(
            np.arange(cdf.num_prompts).reshape((-1,) + (1,) * (below.ndim - 1)), below.shape
        )
    )
    return wrap((below + below_or_equal) / (2.0 * cdf.counts[rows]))


def win_rate(
    rewards: Any,
    ref_rewards: Any,
    prompt_index: Any = None,
    *,
    method: Literal["all", "first"] = "all",
) -> MeanSE:
    """Mean win rate against pi_ref with its standard error over prompts (see ``win_rates``)."""
    per_sample = win_rates(rewards, ref_rewards, prompt_index, method=method)
    return mean_se(per_sample, prompt_index)


def kl_estimates(
    policy_logprobs: Any,
    ref_logprobs: Any,
    mask: Any = None,
    prompt_index: Any = None,
) -> dict[str, MeanSE]:
    """Monte Carlo KL(pi_theta || pi_ref) from samples y ~ pi_theta, completion tokens only.

    Args:
        policy_logprobs: per-token log pi_theta of the sampled completion tokens, (B, T), or
            per-sequence sums, (B,).
        ref_logprobs: the same tokens under pi_ref, same shape.
        mask: (B, T) True on completion tokens (padding excluded); all tokens when omitted.
        prompt_index: prompt of each sample, for standard errors clustered by prompt.

    Returns:
        ``{"k1": ..., "k3": ...}``: k1 sums log(pi_theta/pi_ref) over tokens (unbiased, can be
        negative per sample); k3 sums (rho - 1) - log rho with rho = pi_ref/pi_theta per token
        (unbiased, non-negative, lower variance; Schulman 2020). ``k1_per_sample`` and
        ``k3_per_sample`` hold the per-sequence values (B,) behind them.
    """
    lp = as_float64(policy_logprobs, "policy_logprobs")
    lr = as_float64(ref_logprobs, "ref_logprobs")
    if lp.shape != lr.shape:
        raise ValueError(f"ref_logprobs: shape {lr.shape} does not match policy {lp.shape}")
    if lp.ndim == 1:
        lp, lr = lp[:, None], lr[:, None]
    m = np.ones(lp.shape, dtype=bool) if mask is None else as_bool(mask, "mask")
    if m.shape != lp.shape:
        raise ValueError(f"mask: shape {m.shape} does not match log-probs {lp.shape}")
    log_ratio = np.where(m, lp - lr, 0.0)
    k1 = log_ratio.sum(axis=1)
    k3 = np.where(m, np.expm1(-log_ratio) + log_ratio, 0.0).sum(axis=1)
    return {
        "k1": mean_se(k1, prompt_index),
        "k3": mean_se(k3, prompt_index),
        "k1_per_sample": k1,
        "k3_per_sample": k3,
    }


def next_token_kl(policy_logprobs: Any, ref_logprobs: Any) -> Any:
    """KL(pi_theta(. | s) || pi_ref(. | s)) = sum_v pi_theta(v | s) log(pi_theta / pi_ref)(v | s)
    of each next-token distribution: log-softmax tensors (..., V) in, (...) out.

    Differentiable in ``policy_logprobs`` (torch) and exact over the vocabulary; numpy arrays
    work too. A token pi_theta gives no mass contributes 0 whatever pi_ref gives it.
    """
    if is_tensor(policy_logprobs):
        import torch

        p = policy_logprobs
        q = torch.as_tensor(ref_logprobs, device=p.device, dtype=p.dtype)
        # Where pi_theta gives no mass the term is 0; masking q there first keeps the gradient
        # finite (0 * (-inf - q) would be NaN in the backward pass).
        massless = p == -torch.inf
        return (p.exp() * (p.masked_fill(massless, 0.0) - q.masked_fill(massless, 0.0))).sum(-1)
    p = np.asarray(policy_logprobs, dtype=np.float64)
    q = np.asarray(ref_logprobs, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.where(p > -np.inf, np.exp(p) * (p - q), 0.0).sum(-1)


def kl_rb(policy_logprobs: Any, ref_logprobs: Any, mask: Any = None) -> Any:
    """The Rao-Blackwellised estimate of KL(pi_theta || pi_ref) of each sampled sequence.

    Amini, Vieira, Cotterell (NeurIPS 2025): along a completion y ~ pi_theta, sum over its
    positions of the exact next-token KL given the sampled prefix,
    sum_t KL(pi_theta(. | x, y_<t) || pi_ref(. | x, y_<t)). Each term is k1's term averaged over
    the next token given its prefix, so it is unbiased, never negative, and at each position no
    noisier than k1's term (Rao-Blackwell); the sum has no such guarantee, since k1's terms can
    cancel along a sequence where these cannot (``tests/test_kl_rb.py`` has a counterexample),
    but on language models it is usually the less noisy (notebook 06 measures it).

    Args:
        policy_logprobs, ref_logprobs: (B, T, V) log-softmax of pi_theta and pi_ref at the
            sampling temperature at the T positions that predict completion tokens (torch or
            numpy; torch keeps the gradient through pi_theta).
        mask: (B, T) True on completion tokens; all positions when omitted.

    Returns:
        (B,) per-sequence sums, of the input's kind.
    """
    lp_shape = tuple(policy_logprobs.shape)
    if len(lp_shape) != 3 or tuple(ref_logprobs.shape) != lp_shape:
        raise ValueError(
            f"ref_logprobs: expected two (B, T, V) log-softmax arrays of one shape, got "
            f"{lp_shape} and {tuple(ref_logprobs.shape)}"
        )
    per_token = next_token_kl(policy_logprobs, ref_logprobs)
    if mask is None:
        return per_token.sum(-1)
    if tuple(mask.shape) != lp_shape[:2]:
        raise ValueError(f"mask: shape {tuple(mask.shape)} does not match (B, T) = {lp_shape[:2]}")
    if is_tensor(per_token):
        import torch

        keep = torch.as_tensor(mask, device=per_token.device).bool()
        return torch.where(keep, per_token, 0.0).sum(-1)
    return np.where(as_bool(mask, "mask"), per_token, 0.0).sum(-1)


def per_prompt_table(prompt_index: Any, **values: Any) -> pd.DataFrame:
    """Each per-sample metric averaged over the samples of each prompt: one row per prompt.

    The unit the intervals resample (``vbon.stats``): prompts, not samples, are independent.
    """
    idx = np.asarray(prompt_index).ravel()
    prompts, inverse, counts = np.unique(idx, return_inverse=True, return_counts=True)
    out = {"prompt": prompts, "samples": counts}
    for name, v in values.items():
        v = np.asarray(v, dtype=np.float64).ravel()
        if v.shape != idx.shape:
            raise ValueError(f"{name}: shape {v.shape} does not match prompt_index {idx.shape}")
        out[name] = np.bincount(inverse, weights=v) / counts
    return pd.DataFrame(out)


def bon_evaluate(
    pool_rewards: Any,
    pool_ref_logprobs: Any,
    ref_rewards: Any,
    n_grid: Sequence[int],
    *,
    n_resamples: int = 8,
    seed: int = 0,
    per_prompt: bool = False,
    extras: dict[str, Any] | None = None,
) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
    """Best-of-N at each N from one pool of fresh pi_ref samples per test prompt.

    For each N and resample, N of each prompt's pool samples are chosen without replacement and
    the best is kept (ties: first). Reported per N: reward, win rate against the reference cache
    (ties 1/2), and KL(pi_BoN || pi_ref) estimated with the paper's exact formula,
    E_BoN[log pi_BoN(y) - log pi_ref(y)] = E_BoN[log sum_i C(N,i) F^(N-i) pi_ref(y)^(i-1)], with F
    the reference-sample CDF (add-one smoothed, as in training) and pi_ref(y) the sample's
    sequence probability; the bound log N - (N-1)/N is reported beside it, never in its place.

    Args:
        pool_rewards: (P, S) rewards of S >= max(n_grid) fresh pi_ref samples per prompt.
        pool_ref_logprobs: (P, S) their sequence log pi_ref (completion tokens only).
        ref_rewards: the reference cache for the same P prompts (for F and the win rate).
        n_grid: the N values.
        n_resamples: subsets drawn per N (the means average over them).
        seed: seed of the subset draws.
        per_prompt: also return a long table (N, prompt, reward, win_rate, kl): each prompt's
            mean over the resamples, the unit the notebooks' intervals resample.
        extras: other (P, S) metrics of the pool samples (IMDB: ``{"p_pos": ...}``), reported
            at the same BoN choices as the reward (a column and its ``_se`` each).
    """
    r = as_float64(pool_rewards, "pool_rewards")
    lp = as_float64(pool_ref_logprobs, "pool_ref_logprobs")
    if r.ndim != 2 or r.shape != lp.shape:
        raise ValueError(
            f"pool_ref_logprobs: expected the (P, S) shape of pool_rewards {r.shape}, got {lp.shape}"
        )
    n_resamples = check_n(n_resamples, "n_resamples")
    ns = [check_n(n, "n_grid") for n in n_grid]
    prompts, pool = r.shape
    if max(ns) > pool:
        raise ValueError(f"n_grid: N = {max(ns)} exceeds the pool of {pool} samples per prompt")
    cdf = ref_rewards if isinstance(ref_rewards, RewardCDF) else RewardCDF(ref_rewards)
    if cdf.num_prompts != prompts:
        raise ValueError(f"ref_rewards: {cdf.num_prompts} prompts, pool has {prompts}")
    # F(y) + pi_ref(y) <= 1 holds for the true F; F_hat from M samples can break it when y is
    # likely (e.g. a short, frequent completion), and the exact formula then exceeds log N.
    # Clipping F_hat to 1 - pi_ref(y) keeps each term a valid BoN log-ratio.
    with np.errstate(divide="ignore"):
        log_f = np.minimum(cdf.log_cdf(r), np.log(-np.expm1(np.minimum(lp, -1e-300))))  # (P, S)
    win = win_rates(r, cdf)
    extra_arrays = {name: as_float64(v, name) for name, v in (extras or {}).items()}
    for name, v in extra_arrays.items():
        if v.shape != r.shape:
            raise ValueError(f"extras: {name} has shape {v.shape}, pool_rewards {r.shape}")
    rng = np.random.default_rng(seed)
    rows_idx = np.arange(prompts)[:, None]
    out, prompt_rows = [], []
    for n in ns:
        # A random permutation per (resample, prompt); its first N entries are the subset.
        keys = rng.random((n_resamples, prompts, pool))
        subset = np.argsort(keys, axis=-1)[..., :n]
        best_in_subset = np.argmax(r[rows_idx, subset], axis=-1)  # first maximal: the tie rule
        chosen = np.take_along_axis(subset, best_in_subset[..., None], axis=-1)[..., 0]  # (R, P)
        pick = (rows_idx.T, chosen)
        kl = log_bon_ratio(log_f[pick], lp[pick], n)
        per = {"reward": r[pick], "win_rate": win[pick], "kl": kl}
        per.update({name: extra[pick] for name, extra in extra_arrays.items()})
        per = {k: v.mean(axis=0) for k, v in per.items()}  # (P,): mean over the resamples
        reward_s, win_s, kl_s = (mean_se(per[k]) for k in ("reward", "win_rate", "kl"))
        prompt_rows.append(pd.DataFrame({"N": n, "prompt": np.arange(prompts), **per}))
        out.append(
            {
                "N": n,
                "reward": reward_s.mean,
                "reward_se": reward_s.se,
                "win_rate": win_s.mean,
                "win_rate_se": win_s.se,
                "kl": kl_s.mean,
                "kl_se": kl_s.se,
                "kl_bound": kl_bon_bound(n),
            }
        )
        for name in extra_arrays:
            value = mean_se(per[name])
            out[-1][name], out[-1][f"{name}_se"] = value.mean, value.se
    table = pd.DataFrame(out)
    if per_prompt:
        return table, pd.concat(prompt_rows, ignore_index=True)
    return table


def pareto_frontier(x: Any, y: Any) -> Any:
    """Mask of points on the Pareto frontier: no other point has x <= and y >= with one strict.

    Lower x (KL) and higher y (reward or win rate) are better. The mask is flat, a bool tensor
    when ``x`` is a tensor.
    """
    xs = as_float64(x, "x").ravel()
    ys = as_float64(y, "y").ravel()
    if xs.shape != ys.shape:
        raise ValueError(f"y: shape {ys.shape} does not match x {xs.shape}")
    # Sort by x ascending, y descending within equal x: a point is on the frontier exactly when
    # its y beats every y before it (an exact duplicate keeps only its first copy).
    order = np.lexsort((-ys, xs))
    y_sorted = ys[order]
    best_before = np.concatenate([[-np.inf], np.maximum.accumulate(y_sorted)[:-1]])
    on = y_sorted > best_before
    mask = np.zeros(xs.size, dtype=bool)
    mask[order] = on
    if is_tensor(x):
        import torch

        return torch.as_tensor(mask, device=x.device)
    return mask


def frontier_counts(
    df: pd.DataFrame, x: str = "kl", y: str = "reward", method: str = "method"
) -> pd.Series:
    """Number of points each method has on the (x, y) Pareto frontier of all points."""
    for col in (x, y, method):
        if col not in df.columns:
            raise ValueError(f"df: missing column {col!r}")
    on = pareto_frontier(df[x].to_numpy(), df[y].to_numpy())
    counts = df.loc[on, method].value_counts()
    return counts.reindex(df[method].unique(), fill_value=0).rename("frontier_points")


def score_with_extras(
    reward_fn: Any, prompts: Sequence[str], completions: Sequence[str], eos: Any
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Rewards and the per-completion extras (IMDB: p_pos) of ``reward_fn``: a ``RewardModel``,
    a ``Task.reward_fn``, or any callable (which has no extras)."""
    fn = getattr(reward_fn, "score_with_extras", None)
    if fn is None:  # a bound Task.reward_fn: its task knows the reward model
        fn = getattr(getattr(reward_fn, "__self__", None), "score_with_extras", None)
    if fn is None:
        return np.asarray(reward_fn(prompts, completions, eos=eos), dtype=float), {}
    rewards, extras = fn(prompts, completions, eos=eos)
    return np.asarray(rewards, dtype=float), {
        k: np.asarray(v, dtype=float) for k, v in extras.items()
    }


@dataclass
class PolicyEvaluation:
    """A policy's metrics on test prompts, and the samples they came from."""

    reward: MeanSE
    win_rate: MeanSE
    kl_k1: MeanSE
    kl_k3: MeanSE
    eos_rate: float
    mean_length: float
    rewards: np.ndarray  # (P, k)
    texts: list[str]
    per_prompt: pd.DataFrame | None = None  # one row per test prompt: each metric's mean there
    # Metrics the reward model gives beside the reward (IMDB: p_pos, p(POS), the quantity the
    # authors' evaluation reports while training uses the logit).
    extras: dict[str, MeanSE] = field(default_factory=dict)
    # The Rao-Blackwellised KL (``kl_rb``) on the same samples as k1 and k3; None where the
    # next-token distributions were not available.
    kl_rb: MeanSE | None = None

    def as_dict(self) -> dict[str, float]:
        out: dict[str, float] = {"eos_rate": self.eos_rate, "length": self.mean_length}
        for name in ("reward", "win_rate", "kl_k1", "kl_k3", "kl_rb"):
            value: MeanSE | None = getattr(self, name)
            if value is not None:
                out[name], out[f"{name}_se"] = value.mean, value.se
        out["kl"], out["kl_se"] = out["kl_k3"], out["kl_k3_se"]
        for name, value in self.extras.items():
            out[name], out[f"{name}_se"] = value.mean, value.se
        return out


def evaluate_policy(
    policy: Any,
    reference: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    reward_fn: Any,
    ref_rewards: Any,
    *,
    k: int = 1,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    batch_size: int = 64,
    seed: int = 0,
    win_method: Literal["all", "first"] = "all",
) -> PolicyEvaluation:
    """Sample k completions per test prompt from ``policy``; report reward, win rate, KL.

    Args:
        policy, reference: pi_theta and pi_ref (same tokenizer); log-probs of both are taken at
            the sampling ``temperature``, on completion tokens only.
        prompts: test prompts.
        reward_fn: ``reward_fn(prompts, completions, eos=...)``, the task reward.
        ref_rewards: the test prompts' reference cache (``ReferenceCache.cdf()`` or rewards),
            for the win rate.
        k: samples per prompt.
    """
    from vbon.generation import completion_kl_terms, sample

    k = check_n(k, "k")
    completions = sample(
        policy,
        tokenizer,
        list(prompts),
        k,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        batch_size=batch_size,
        seed=seed,
    )
    repeated = [prompts[i] for i in completions.prompt_index]
    rewards, extras = score_with_extras(reward_fn, repeated, completions.texts, completions.ended)
    idx = completions.prompt_index
    # One forward of each model gives k1 and k3 (the sampled tokens) and kl_rb (the whole
    # next-token distributions), all on the same samples.
    lp, lr, rb = completion_kl_terms(
        policy, reference, completions, temperature=temperature, batch_size=batch_size
    )
    kl = kl_estimates(lp, lr, completions.mask, idx)
    rb = rb.double().numpy()
    return PolicyEvaluation(
        per_prompt=per_prompt_table(
            idx,
            reward=rewards,
            win_rate=win_rates(rewards, ref_rewards, idx, method=win_method),
            kl_k1=kl["k1_per_sample"],
            kl_k3=kl["k3_per_sample"],
            kl_rb=rb,
            length=completions.lengths,
            eos=completions.ended,
            **extras,
        ),
        extras={name: mean_se(v, idx) for name, v in extras.items()},
        reward=mean_se(rewards, idx),
        win_rate=win_rate(rewards, ref_rewards, idx, method=win_method),
        kl_k1=kl["k1"],
        kl_k3=kl["k3"],
        kl_rb=mean_se(rb, idx),
        eos_rate=float(completions.ended.mean()),
        mean_length=float(completions.lengths.mean()),
        rewards=rewards.reshape(len(prompts), k),
        texts=completions.texts,
    )


# -- task level: what the analysis notebooks call -------------------------------------------------
@dataclass
class SamplePool:
    """S fresh pi_ref samples per test prompt, scored: the pool BoN is evaluated from."""

    prompts: list[str]
    texts: list[list[str]]  # (P, S)
    rewards: np.ndarray  # (P, S)
    ref_logprobs: np.ndarray  # (P, S) sequence log pi_ref at the sampling temperature
    ended: np.ndarray  # (P, S) EOS emitted
    lengths: np.ndarray  # (P, S) completion tokens
    extras: dict[str, np.ndarray] = field(default_factory=dict)  # (P, S) each, e.g. p_pos

    def best_of(self, n: int) -> np.ndarray:
        """Index of the BoN choice among each prompt's first n samples (ties: the first)."""
        n = check_n(n, "n")
        if n > self.rewards.shape[1]:
            raise ValueError(f"n: {n} exceeds the pool of {self.rewards.shape[1]} per prompt")
        return np.argmax(self.rewards[:, :n], axis=1)


def sample_pool(
    task: Any,
    prompts: Sequence[str],
    size: int,
    *,
    seed: int = 0,
    batch_size: int = 64,
    device: Any = None,
    precision: str | None = None,
    reference: tuple[Any, Any] | None = None,
) -> SamplePool:
    """Draw ``size`` completions per prompt from the task's pi_ref with its sampling settings.

    Scores them with the task's reward (EOS penalty included) and takes their sequence
    log pi_ref at the sampling temperature, which the exact KL of BoN needs. ``precision``
    (``vbon.precision``; None: the device's default, as the reference caches use) is the
    numerical policy pi_ref is sampled at. ``reference``: pi_ref's ``(model, tokenizer)``,
    already loaded at that precision (a temperature sweep loads it once).
    """

    from vbon.models import cpu_threads
    from vbon.precision import load_dtype, precision_context, resolve_precision

    size = check_n(size, "size")
    precision = resolve_precision(precision, device)
    if reference is None:
        reference = task.load_reference(device=device, **load_dtype(precision))
    model, tokenizer = reference
    with cpu_threads(task.cpu_threads), precision_context(precision, model.device):
        return _score_pool(task, list(prompts), size, model, tokenizer, seed, batch_size)


def _score_pool(
    task: Any, prompts: list[str], size: int, model: Any, tokenizer: Any, seed: int, batch_size: int
) -> SamplePool:
    from vbon.generation import completion_logprobs, sample

    s = task.sampling
    completions = sample(
        model, tokenizer, list(prompts), size, **s.sample_kwargs(), batch_size=batch_size, seed=seed
    )
    repeated = [prompts[i] for i in completions.prompt_index]
    rewards, extras = score_with_extras(
        task.reward_fn, repeated, completions.texts, completions.ended
    )
    lp = completions.logprobs  # summed while sampling: no second pass over the pool
    if lp is None:
        lp = completion_logprobs(
            model, completions, temperature=s.temperature, batch_size=batch_size
        )
    lp = lp.numpy()
    shape = (len(prompts), size)
    return SamplePool(
        prompts=list(prompts),
        texts=[completions.texts[i * size : (i + 1) * size] for i in range(len(prompts))],
        rewards=np.asarray(rewards, dtype=float).reshape(shape),
        ref_logprobs=lp.astype(float).reshape(shape),
        ended=np.asarray(completions.ended).reshape(shape),
        lengths=completions.lengths.reshape(shape),
        extras={name: v.reshape(shape) for name, v in extras.items()},
    )


def evaluate_bon_on_task(
    task: Any,
    n_grid: Sequence[int],
    *,
    prompts: int,
    m: int,
    pool_size: int | None = None,
    n_resamples: int = 8,
    seed: int = 0,
    ref_seed: int = 0,
    progress: bool = True,
    per_prompt: bool = False,
    reference: tuple[Any, Any] | None = None,
) -> tuple[pd.DataFrame, SamplePool] | tuple[pd.DataFrame, SamplePool, pd.DataFrame]:
    """Best-of-N on the task's first ``prompts`` test prompts at each N (``bon_evaluate``).

    The win rate and F come from the test reference cache (``m`` samples per prompt, the one
    training's evaluation uses); the pool is fresh pi_ref samples (``pool_size``, default
    2 max(n_grid)). Returns the table (N, reward, win_rate, kl, kl_bound, with standard errors,
    plus eos_rate and length of the chosen samples) and the pool; with ``per_prompt`` also
    the per-prompt table of ``bon_evaluate``. ``reference``: pi_ref's ``(model, tokenizer)``,
    already loaded (``sample_pool``).
    """
    from vbon.reference import build_task_reference

    ns = [check_n(n, "n_grid") for n in n_grid]
    pool_size = 2 * max(ns) if pool_size is None else check_n(pool_size, "pool_size")
    ref = build_task_reference(
        task, "test", m, seed=ref_seed, max_prompts=prompts, progress=progress
    )
    pool = sample_pool(task, ref.prompts, pool_size, seed=seed + 104_729, reference=reference)
    table, prompt_table = bon_evaluate(
        pool.rewards,
        pool.ref_logprobs,
        ref.cdf(),
        ns,
        n_resamples=n_resamples,
        seed=seed,
        per_prompt=True,
        extras=pool.extras,
    )
    rows = np.arange(len(pool.prompts))
    chosen = [(rows, pool.best_of(n)) for n in ns]
    table["eos_rate"] = [float(pool.ended[pick].mean()) for pick in chosen]
    table["length"] = [float(pool.lengths[pick].mean()) for pick in chosen]
    return (table, pool, prompt_table) if per_prompt else (table, pool)


def evaluate_policy_on_task(
    policy_path: Any,
    task: Any,
    *,
    prompts: int,
    m: int,
    k: int = 4,
    seed: int = 0,
    ref_seed: int = 0,
    win_method: Literal["all", "first"] = "all",
    batch_size: int = 64,
    progress: bool = True,
    precision: str | None = None,
    reference: Any = None,
) -> PolicyEvaluation:
    """``evaluate_policy`` of a saved policy on the task's first ``prompts`` test prompts.

    Uses the task's sampling settings (pass a task built with another ``temperature`` to
    evaluate a policy away from its training temperature; the win rate is then against pi_ref
    samples at that temperature and the KL is between the two tempered policies). The policy,
    pi_ref and the test reference cache run at one ``precision`` (``vbon.precision``; None: the
    device's default, the trainer's with ``mixed_precision="auto"``). ``reference``: pi_ref
    already loaded (at that precision), so that evaluating many policies loads it once.
    """
    from vbon.models import cpu_threads, load_causal_lm
    from vbon.precision import load_dtype, precision_context, resolve_precision
    from vbon.reference import build_task_reference

    precision = resolve_precision(precision)
    dtype = load_dtype(precision)
    ref = build_task_reference(
        task, "test", m, seed=ref_seed, max_prompts=prompts, progress=progress, precision=precision
    )
    policy, tokenizer = load_causal_lm(policy_path, **dtype)
    if reference is None:
        reference, _ = task.load_reference(**dtype)
    with cpu_threads(task.cpu_threads), precision_context(precision, policy.device):
        return evaluate_policy(
            policy,
            reference,
            tokenizer,
            ref.prompts,
            task.reward_fn,
            ref.cdf(),
            k=k,
            **task.sampling.sample_kwargs(),
            batch_size=batch_size,
            seed=seed,
            win_method=win_method,
        )


def evaluate_run(
    run: Any,
    task: Any = None,
    *,
    temperature: float | None = None,
    reference: Any = None,
    progress: bool = True,
) -> PolicyEvaluation:
    """A trained run's final policy evaluated exactly as its trainer evaluated it: the same
    test prompts, test reference cache, samples per prompt (``eval_k``), evaluation seed and
    win-rate method, through ``evaluate_policy``. At the run's own sampling settings this
    repeats the run's final evaluation (up to the last digits of a reloaded model); with
    ``temperature`` (or a ``task`` built with other settings) it evaluates the policy there,
    against pi_ref at the same settings.

    ``run``: a ``TrainResult`` or a run directory. ``reference``: pi_ref, already loaded.
    """
    import torch

    from vbon.precision import sampling_precision
    from vbon.train.loop import EVAL_SEED_OFFSET, TrainResult, eval_batch_size, load_run
    from vbon.train.setup import config_task

    run = run if isinstance(run, TrainResult) else load_run(run)
    cfg = run.config
    if task is not None and temperature is not None:
        raise ValueError("temperature: pass either a task or a temperature, not both")
    if task is None:
        task = config_task(cfg, **({} if temperature is None else {"temperature": temperature}))
    return evaluate_policy_on_task(
        run.policy_path,
        task,
        prompts=cfg.eval_prompts,
        m=cfg.eval_m,
        k=cfg.eval_k,
        seed=cfg.seed + EVAL_SEED_OFFSET,
        ref_seed=cfg.ref_seed,
        win_method=cfg.win_method,
        batch_size=eval_batch_size(cfg.eval_k, "cuda" if torch.cuda.is_available() else "cpu"),
        progress=progress,
        precision=sampling_precision(cfg.mixed_precision),
        reference=reference,
    )


def policy_samples(task: Any, prompts: Sequence[str], run_dir: Any, *, seed: int = 0) -> list[str]:
    """One completion per prompt from a trained run's policy, each prefixed by its reward
    (``"[+1.23] text"``), sampled with the task's settings: for reading samples side by side."""
    from vbon.generation import sample
    from vbon.train.loop import load_run

    model, tokenizer = load_run(run_dir).load_policy()
    out = sample(model, tokenizer, list(prompts), 1, **task.sampling.sample_kwargs(), seed=seed)
    rewards = task.reward_fn(list(prompts), out.texts, eos=out.ended)
    return [f"[{r:+.2f}] {t}" for r, t in zip(rewards, out.texts, strict=True)]
