"""The vBoN reward as a TRL reward function (the paper's objective and estimate of F), for ``trl.RLOOTrainer``.

vBoN with the lower bound L is KL-regularised RL with reward log F(r(y)) and KL weight
beta = 1/(N-1). :func:`vbon_reward_function` turns a reference cache (``vbon.reference``: M
reference completions per training prompt, scored by the training reward) and that reward into a
callable with TRL's reward-function signature ``f(prompts, completions, **kwargs) -> list[float]``
that returns log F_hat(r(y)) for each completion, and carries the ``beta`` (and the sampling
settings) to configure TRL with::

    reward = vbon_reward_function(cache, task.reward_fn, n=16)
    args = RLOOConfig(output_dir="out", num_generations=4, **reward.rloo_config_kwargs())
    trainer = RLOOTrainer(model=task.policy_id, reward_funcs=reward, args=args,
                          train_dataset=reward.dataset())

TRL is an optional extra (``pip install vbon[trl]``); this module does not import it. The
calling convention (keyword arguments ``prompts``, ``completions``, ``completion_ids``, the
dataset's other columns, ``trainer_state``; a list of floats back) and the RLOOConfig fields
named below were read in the sources of TRL 0.22 (the first release whose RLOOTrainer takes
``reward_funcs``; older ones take a ``reward_model`` callable on texts and do not fit) and 1.16;
the test suite runs RLOOTrainer with TRL 1.16.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vbon.cdf import Smoothing
from vbon.models import eos_flags
from vbon.objectives import beta_from_n
from vbon.reference import ReferenceCache

__all__ = ["VBoNRewardFunction", "vbon_reward_function"]

RewardFn = Callable[..., np.ndarray]

_SHOWN = 60  # characters of an unknown prompt quoted in errors


def _quote(text: Any) -> str:
    text = str(text)
    return repr(text if len(text) <= _SHOWN else text[:_SHOWN] + "...")


def _accepts(fn: Callable[..., Any], name: str) -> bool:
    """Whether ``fn`` takes a keyword argument ``name`` (explicitly or through ``**kwargs``)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == name or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def _message_text(item: Any, what: str, i: int) -> str:
    """The text of a standard-format entry (a string) or of a conversational one (messages)."""
    if isinstance(item, str):
        return item
    if isinstance(item, Sequence) and all(isinstance(m, Mapping) for m in item):
        # TRL's conversational completions: a list holding the generated assistant message(s).
        return "".join(
            str(m.get("content", "")) for m in item if m.get("role", "assistant") == "assistant"
        )
    raise ValueError(
        f"{what}[{i}]: expected a string or a list of message dicts, got {type(item).__name__}"
    )


class VBoNRewardFunction:
    """log F_hat(r(y)) of each completion, with TRL's reward-function signature.

    Build it with :func:`vbon_reward_function`. Attributes: ``n`` (N), ``beta`` (1/(N-1), the KL
    weight for TRL), ``cache``, ``cdf`` (the ``vbon.cdf.RewardCDF`` used), ``max_m``,
    ``smoothing``, ``eos_token_id``, ``eos_score``.
    """

    def __init__(
        self,
        cache: ReferenceCache,
        reward_fn: RewardFn,
        *,
        n: int,
        max_m: int | None,
        smoothing: Smoothing,
        eos_token_id: int | Sequence[int] | None,
        eos_score: float | None,
    ) -> None:
        if not callable(reward_fn):
            raise ValueError(f"reward_fn: expected a callable, got {type(reward_fn).__name__}")
        if smoothing not in ("add_one", "none"):
            raise ValueError(f"smoothing: expected 'add_one' or 'none', got {smoothing!r}")
        if eos_score is not None:
            if not np.isfinite(eos_score):
                raise ValueError(f"eos_score: must be finite or None, got {eos_score!r}")
            if eos_token_id is None:
                raise ValueError(
                    "eos_token_id: required with eos_score (it tells which completions ended); "
                    "pass the policy tokenizer's eos_token_id"
                )
        self.n = n
        self.beta = beta_from_n(n)
        self.cache = cache
        self.max_m = max_m
        self.smoothing = smoothing
        self.eos_token_id = eos_token_id
        self.eos_score = None if eos_score is None else float(eos_score)
        self.reward_fn = reward_fn
        self.cdf = cache.cdf(max_m)
        self.prompts: list[str] = cache.prompts
        self._row: dict[str, int] = {}
        for i, p in enumerate(self.prompts):
            self._row.setdefault(p, i)  # a repeated prompt: its first row (same distribution)
        self._pass_ids = eos_token_id is None and _accepts(reward_fn, "completion_ids")
        self.__name__ = "vbon_log_F"  # TRL logs rewards under the function's name

    def __repr__(self) -> str:
        return (
            f"VBoNRewardFunction(n={self.n}, beta={self.beta:.6g}, prompts={len(self.prompts)}, "
            f"max_m={self.max_m}, smoothing={self.smoothing!r}, cache={str(self.cache.directory)!r})"
        )

    # -- TRL's reward-function call ----------------------------------------------------------------
    def __call__(
        self,
        prompts: Sequence[Any],
        completions: Sequence[Any],
        completion_ids: Sequence[Sequence[int]] | None = None,
        prompt_index: Sequence[int] | None = None,
        **kwargs: Any,
    ) -> list[float]:
        """log F_hat(r(y)) of each completion against its prompt's reference rewards.

        Args:
            prompts: one prompt per completion (strings, or lists of message dicts).
            completions: strings, or lists of message dicts (TRL's conversational format).
            completion_ids: the generated token ids (TRL passes them; they include EOS when
                generation stopped at it). Used for EOS flags, see :func:`vbon_reward_function`.
            prompt_index: the dataset's ``prompt_index`` column (see :meth:`dataset`), the
                cache row of each prompt; without it prompts are looked up by text.
            **kwargs: TRL's other arguments (dataset columns, ``trainer_state``, ...), ignored.
        """
        if isinstance(prompts, str) or isinstance(completions, str):
            raise ValueError("prompts and completions must be sequences, not one string")
        if len(prompts) != len(completions):
            raise ValueError(
                f"prompts and completions must have the same length, got {len(prompts)} "
                f"and {len(completions)}"
            )
        rows = self._rows(prompts, prompt_index)
        texts = [_message_text(c, "completions", i) for i, c in enumerate(completions)]
        prompt_texts = [self.prompts[r] for r in rows]

        eos = None
        call_kwargs: dict[str, Any] = {}
        if completion_ids is not None:
            if self.eos_token_id is not None:
                eos = eos_flags(len(texts), self.eos_token_id, completion_ids=completion_ids)
            elif self._pass_ids:
                call_kwargs["completion_ids"] = completion_ids
        elif self.eos_score is not None:
            raise ValueError(
                "completion_ids: required with eos_score (TRL passes them; call with "
                "completion_ids=... when calling the function yourself)"
            )
        rewards = np.asarray(
            self.reward_fn(prompt_texts, texts, eos=eos, **call_kwargs), dtype=np.float64
        )
        if rewards.shape != (len(texts),):
            raise ValueError(f"reward_fn: returned shape {rewards.shape}, expected ({len(texts)},)")
        if np.isnan(rewards).any():
            raise ValueError("reward_fn: returned NaN rewards")
        out = self.cdf.log_cdf(rewards, rows, smoothing=self.smoothing)
        if self.eos_score is not None:
            out = np.where(eos, out, self.eos_score)
        return [float(x) for x in out]

    def _rows(self, prompts: Sequence[Any], prompt_index: Sequence[int] | None) -> np.ndarray:
        """The cache row of each prompt: from ``prompt_index`` (checked) or by prompt text."""
        if prompt_index is not None:
            rows = np.asarray(prompt_index)
            if rows.shape != (len(prompts),) or (
                rows.size and not np.issubdtype(rows.dtype, np.integer)
            ):
                raise ValueError(
                    f"prompt_index: expected {len(prompts)} integers (one per completion), "
                    f"got {rows.tolist()!r:.80}"
                )
            bad = (rows < 0) | (rows >= len(self.prompts))
            if bad.any():
                raise ValueError(
                    f"prompt_index: {int(rows[bad][0])} is outside the reference cache's "
                    f"{len(self.prompts)} prompts ({self.cache.directory})"
                )
            for p, r in zip(prompts, rows, strict=True):
                if isinstance(p, str) and p != self.prompts[r]:
                    raise ValueError(
                        f"prompt_index: row {int(r)} of the reference cache is "
                        f"{_quote(self.prompts[r])}, but the prompt is {_quote(p)}; build the "
                        "dataset with .dataset() from the same cache"
                    )
            return rows.astype(np.int64)
        out = np.empty(len(prompts), dtype=np.int64)
        for i, p in enumerate(prompts):
            if not isinstance(p, str):
                raise ValueError(
                    f"prompts[{i}]: conversational prompts are matched to the reference cache "
                    "through a prompt_index column; train on .dataset() or add that column"
                )
            row = self._row.get(p)
            if row is None:
                raise ValueError(
                    f"prompts: {_quote(p)} is not in the reference cache at "
                    f"{self.cache.directory} ({len(self.prompts)} prompts); build the cache on "
                    "the training prompts (vbon.reference.build_task_reference) and train on them"
                )
            out[i] = row
        return out

    # -- configuring TRL ----------------------------------------------------------------------------
    def dataset(self) -> Any:
        """The cache's prompts as a ``datasets.Dataset`` with columns ``prompt`` and
        ``prompt_index`` (TRL passes the latter back to the reward function)."""
        from datasets import Dataset

        return Dataset.from_dict(
            {"prompt": list(self.prompts), "prompt_index": list(range(len(self.prompts)))}
        )

    def rloo_config_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``trl.RLOOConfig`` that make RLOO optimise the vBoN objective.

        ``beta`` = 1/(N-1); ``normalize_advantages=False`` (TRL's default, kept explicit); and,
        when the cache records them, the sampling settings F_hat was estimated with
        (``temperature``, ``top_k``, ``top_p``, ``max_completion_length``): the paper's estimate of F
        requires training to sample exactly as the reference samples were drawn. A cache
        imported from the authors' JSONL files does not record them; set them yourself.
        """
        out: dict[str, Any] = {"beta": self.beta, "normalize_advantages": False}
        spec = self.cache.spec
        if spec.get("policy") != "authors-jsonl":
            out.update(
                temperature=float(spec["temperature"]),
                top_k=int(spec["top_k"]),
                top_p=float(spec["top_p"]),
                max_completion_length=int(spec["max_new_tokens"]),
            )
        return out


def vbon_reward_function(
    cache: ReferenceCache | str | Path,
    reward_fn: RewardFn,
    *,
    n: int,
    max_m: int | None = None,
    smoothing: Smoothing = "add_one",
    eos_token_id: int | Sequence[int] | None = None,
    eos_score: float | None = None,
) -> VBoNRewardFunction:
    """The vBoN reward log F_hat(r(y)) as a reward function for TRL's ``RLOOTrainer``.

    For each completion y of a prompt x the returned callable scores ``r = reward_fn(x, y)``
    and returns log F_hat(r), with F_hat the paper's add-one estimator from the
    prompt's M cached reference rewards r_1..r_M:

        F_hat(r) = (1 + #{m : r_m < r}) / (M + 1),     log F_hat(r) in [-log(M+1), 0].

    vBoN's lower bound L = log N + (N-1) E[log F(r(y))] - KL(pi_theta || pi_ref), divided by
    N-1, is KL-regularised RL with this reward and KL weight beta = 1/(N-1)
    (``vbon.objectives.beta_from_n``), which the callable exposes as ``.beta``. To optimise
    exactly that objective with ``trl.RLOOTrainer`` (TRL 0.22 to 1.16):

    - ``RLOOConfig(beta=reward.beta)``. RLOOTrainer puts the KL in the reward (it subtracts
      beta times the sequence's summed log-ratio to the reference model from the reward before
      the leave-one-out baseline; RLOOConfig has no option to move it into the loss), which
      is the paper's form.
    - ``normalize_advantages=False`` (TRL's default): no rescaling of the advantages by their
      standard deviation, so they stay on the scale of reward - beta * KL. (GRPOTrainer, whose
      ``scale_rewards`` divides by per-group std and whose KL sits in the loss, does not
      match the paper's objective.)
    - Sample with the cache's settings (``temperature``, ``top_k``, ``top_p``,
      ``max_completion_length``) and score with the same reward: F_hat is only meaningful for
      rewards of completions drawn like the reference ones. :meth:`~VBoNRewardFunction.
      rloo_config_kwargs` returns all of these; :meth:`~VBoNRewardFunction.dataset` the prompts
      with their ``prompt_index``.

    The exact vBoN reward (method ``vbon_exact`` of ``vbon.train``) needs log pi_ref(y | x) of
    each completion, which TRL does not hand to reward functions; use vbon's own trainer for it.

    Args:
        cache: a finished ``vbon.reference.ReferenceCache`` (or its directory) of the training
            prompts, built with the training reward and sampling settings.
        reward_fn: vbon's reward interface ``reward_fn(prompts, completions, eos=...) ->
            np.ndarray`` (a ``vbon.models.RewardModel``, or ``Task.reward_fn``), the one the
            cache was scored with. It receives the cache's prompt strings and the completion
            texts (the assistant message's content for conversational completions).
        n: N of the Best-of-N being approximated, >= 2; sets ``beta`` = 1/(N-1). The reward
            itself does not depend on N.
        max_m: use only the first ``max_m`` cached rewards per prompt (the M ablation).
        smoothing: "add_one" (the authors' estimator, never -inf) or "none" (count / M). With
            "none" a completion below all M reference rewards gets -inf, which TRL's advantage
            computation cannot use; keep it for analysis.
        eos_token_id: the policy's EOS id(s). Completions end with EOS iff their generated ids
            (TRL's ``completion_ids``, which include the EOS token) contain one. With it, the
            EOS flags are computed here and passed to ``reward_fn`` as ``eos=``, so a reward
            with an EOS penalty (TL;DR: ``eos_penalty``) scores exactly as when the cache was
            built. Without it, ``completion_ids`` is passed on to ``reward_fn`` when it accepts
            that argument (``RewardModel`` and ``Task.reward_fn`` do and use their tokenizer's
            EOS id); otherwise ``eos=None`` is passed, and a reward that needs EOS flags raises.
        eos_score: if set, completions that did not end with EOS get this score instead of
            log F_hat (the authors' TL;DR vBoN runs used -20; ``TrainConfig.eos_score`` in
            ``vbon.train``). Needs ``eos_token_id``.

    Returns:
        A :class:`VBoNRewardFunction`: call it as TRL does, ``f(prompts=..., completions=...,
        completion_ids=..., **dataset_columns) -> list[float]``. Prompts are matched to cache
        rows through the ``prompt_index`` column when the dataset has one (checked against
        the prompt text), otherwise by text (a repeated prompt maps to its first row); a
        prompt not in the cache raises ValueError naming it.
    """
    if not isinstance(cache, ReferenceCache):
        cache = ReferenceCache(cache)
    return VBoNRewardFunction(
        cache,
        reward_fn,
        n=n,
        max_m=max_m,
        smoothing=smoothing,
        eos_token_id=eos_token_id,
        eos_score=eos_score,
    )
