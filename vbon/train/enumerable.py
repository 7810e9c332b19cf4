"""An enumerable world where pi_ref, pi_BoN and every KL are known exactly.

A tiny GPT-2 over a vocabulary of 4 tokens ("a b c d") continues the one-token prompt "a" with
exactly 4 tokens (no EOS): 4^4 = 256 possible completions. Their probabilities under any policy
come from one forward pass over all 256, so

- pi_ref(y), pi_BoN(y) (``vbon.bon.bon_pmf``, exact for any N) and
- KL(pi_theta || pi_BoN), KL(pi_theta || pi_ref)

are exact numbers, not estimates. The reward is a fixed function of the sequence: a random
log-normal value per sequence (distinct values; a heavy right tail, where the invariance of F
to monotone transforms of r matters). It checks that the trainers optimise what the paper says.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import torch
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from vbon.bon import bon_pmf, kl_bon_ref
from vbon.cdf import RewardCDF
from vbon.train.setup import Sampling, TrainSetup, bon_sft_examples, bonbon_pairs

__all__ = ["EnumerableWorld"]

VOCAB = ("a", "b", "c", "d")
LENGTH = 4
PROMPT = "a"


def _tokenizer() -> PreTrainedTokenizerFast:
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {t: i for i, t in enumerate(VOCAB)} | {"<pad>": len(VOCAB)}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    # The pad id lies outside the model's 4-token vocabulary: nothing is ever padded here
    # (one prompt length, no EOS), and the model can never emit it.
    return PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", padding_side="left")


class EnumerableWorld:
    """The 256-sequence world. ``setup(config)`` gives the ``TrainSetup`` for ``train``.

    Args:
        seed: seed of the model's initialisation (pi_ref).
        reward_seed: seed of the reward table.
        n_layer, n_embd, init_std: size and initial sharpness of the tiny GPT-2.
        bon_n: the N of pi_BoN in the exact metrics (default: the config's n; set it for kl_rl).
    """

    def __init__(
        self,
        seed: int = 0,
        *,
        reward_seed: int = 1234,
        n_layer: int = 3,
        n_embd: int = 32,
        init_std: float = 0.2,
        bon_n: int | None = None,
    ) -> None:
        self.seed = seed
        self.bon_n = bon_n
        self.reward_seed = reward_seed
        self.tokenizer = _tokenizer()
        config = GPT2Config(
            vocab_size=len(VOCAB),
            n_positions=8,
            n_embd=n_embd,
            n_layer=n_layer,
            n_head=2,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            initializer_range=init_std,
            bos_token_id=None,
            eos_token_id=None,
            # The pad id (4) lies outside the 4-token vocabulary on purpose (see _tokenizer);
            # the model itself never needs one.
            pad_token_id=None,
        )
        torch.manual_seed(seed)
        self.model = GPT2LMHeadModel(config).eval()
        self.model.generation_config.eos_token_id = None
        self.model.generation_config.bos_token_id = None
        self.model.generation_config.pad_token_id = len(VOCAB)
        # All completions, in base-4 order: code(y) = sum_t y_t 4^(3-t).
        self.sequences = torch.tensor(list(itertools.product(range(len(VOCAB)), repeat=LENGTH)))
        z = np.random.default_rng(reward_seed).standard_normal(len(self.sequences))
        self.rewards = np.exp(z)  # log-normal: distinct values, a heavy right tail
        self.ref_logprobs = self.logprobs(self.model)
        self.ref_probs = np.exp(self.ref_logprobs)

    # -- exact quantities -----------------------------------------------------------------------
    @torch.no_grad()
    def logprobs(self, model: Any, temperature: float = 1.0) -> np.ndarray:
        """log pi(y | "a") of all 256 completions (float64, sums to 1 in probability)."""
        n = len(self.sequences)
        ids = torch.cat([torch.zeros((n, 1), dtype=torch.long), self.sequences], dim=1)
        device = next(model.parameters()).device
        logits = model(input_ids=ids.to(device), use_cache=False).logits[:, :-1].double()
        logp = torch.log_softmax(logits / temperature, dim=-1)
        out = logp.gather(-1, self.sequences.to(device).unsqueeze(-1)).squeeze(-1).sum(-1)
        return out.cpu().numpy()

    def code(self, texts: list[str]) -> np.ndarray:
        """Index of each completion text in ``self.sequences``."""
        index = {t: i for i, t in enumerate(VOCAB)}
        out = np.empty(len(texts), dtype=np.int64)
        for j, text in enumerate(texts):
            tokens = text.split()
            if len(tokens) != LENGTH:
                raise ValueError(f"completions: expected {LENGTH} tokens, got {text!r}")
            out[j] = sum(index[t] * len(VOCAB) ** (LENGTH - 1 - i) for i, t in enumerate(tokens))
        return out

    def reward_fn(self, prompts: list[str], completions: list[str], **_: Any) -> np.ndarray:
        """r(y): the fixed reward of each completion."""
        return self.rewards[self.code(list(completions))]

    def bon_probs(self, n: int) -> np.ndarray:
        """pi_BoN over the 256 completions (exact)."""
        return bon_pmf(self.ref_probs, self.rewards, n)

    def kl_bon_ref(self, n: int) -> float:
        return float(kl_bon_ref(self.ref_probs, self.rewards, n))

    @staticmethod
    def kl(p_log: np.ndarray, q: np.ndarray) -> float:
        """KL(p || q) with p given by log-probabilities."""
        p = np.exp(p_log)
        with np.errstate(divide="ignore"):
            return float(np.sum(p * (p_log - np.log(q))))

    def nearest_bon(
        self, model: Any, ns: Any = None, temperature: float = 1.0
    ) -> tuple[int, float]:
        """The N whose pi_BoN(N) is nearest the policy, and KL(pi_theta || pi_BoN(N)) there:
        where a method without a fixed N (iterated BOND, J-BOND: the anchor moves) has got to.
        ``ns``: the N searched (default 1..1024, doubling past 64)."""
        if ns is None:
            ns = [*range(1, 65), *(2**k for k in range(7, 11))]
        lp = self.logprobs(model, temperature)
        kls = [self.kl(lp, self.bon_probs(int(n))) for n in ns]
        best = int(np.argmin(kls))
        return int(ns[best]), float(kls[best])

    def exact_metrics(
        self, model: Any, n: int | None, temperature: float = 1.0
    ) -> dict[str, float]:
        """Exact KL(pi_theta || pi_ref), KL(pi_theta || pi_BoN) (when N is given), E[r]."""
        lp = self.logprobs(model, temperature)
        out = {
            "exact_kl_ref": self.kl(lp, self.ref_probs),
            "exact_reward": float(np.exp(lp) @ self.rewards),
        }
        if n is not None:
            out["exact_kl_bon"] = self.kl(lp, self.bon_probs(n))
        return out

    def sample_ref(self, size: int, seed: int) -> np.ndarray:
        """Indices of ``size`` iid draws from pi_ref."""
        rng = np.random.default_rng(seed)
        return rng.choice(len(self.ref_probs), size=size, p=self.ref_probs / self.ref_probs.sum())

    def texts(self, codes: np.ndarray) -> list[str]:
        return [" ".join(VOCAB[t] for t in self.sequences[c].tolist()) for c in codes]

    def score(self, config: Any) -> tuple[np.ndarray, float] | None:
        """The score s(y) of every completion and the KL weight beta that ``config`` trained
        on (F_hat from its own reference draws), or None for bon_sft (no KL-RL objective)."""
        from vbon.cdf import quantile_scores
        from vbon.objectives import log_bon_ratio

        if config.method in ("bon_sft", "bonbon", "bond", "jbond"):
            return None
        if config.method == "kl_rl":
            return self.rewards.astype(float), float(config.beta)
        draws = self.sample_ref(config.m, seed=config.ref_seed)
        ref = self.rewards[draws]
        if config.max_m:
            ref = ref[: config.max_m]
        cdf, everything = RewardCDF(ref[None, :]), self.rewards[None, :]
        if config.method in ("vbon", "vbon_offline"):
            kind = {"transform": config.transform, "t": config.transform_t}
            scores = quantile_scores(cdf, everything, None, estimator=config.cdf_estimator, **kind)
            return scores[0], float(config.beta)
        log_f = quantile_scores(cdf, everything, None, estimator=config.cdf_estimator)[0]
        ratio = log_bon_ratio(log_f, np.minimum(self.ref_logprobs, 0.0), config.n)
        return ratio / (config.n - 1), float(config.beta)

    def report(self, result: Any) -> dict[str, Any]:
        """Where a trained run of this world ended, exactly (``vbon.theory``).

        Returns the run's method, N or beta, seed; its exact reward, win rate against pi_ref
        and KL(pi || pi_ref); for the RL methods its objective J(pi) on the score it trained
        on, that objective's optimum J*, and the optimisation gap J* - J = beta
        KL(pi || pi*); and KL(pi || pi_BoN(N)) at the run's N (bon_sft's n; none for kl_rl and
        for a moving anchor, J-BOND or iterated BOND: ``nearest_bon`` places those).
        """
        from vbon import theory

        cfg = result.config
        model, _ = result.load_policy()
        q = np.exp(self.logprobs(model, cfg.temperature or 1.0))
        p = self.ref_probs / self.ref_probs.sum()
        out: dict[str, Any] = {
            "method": cfg.method,
            "n": None if cfg.method == "kl_rl" else cfg.n,
            "beta": cfg.beta,
            "seed": cfg.seed,
            **theory.policy_metrics(q / q.sum(), p, self.rewards),
        }
        scored = self.score(cfg)
        if scored is not None:
            s, beta = scored
            out["objective"] = theory.objective_value(q, p, s, beta)
            out["optimum"] = theory.optimum_value(p, s, beta)
            out["gap"] = out["optimum"] - out["objective"]
            # pi_ref's own distance to the optimum, KL(pi_ref || pi*): where every run starts.
            out["ref_kl_to_optimum"] = (
                out["optimum"] - theory.objective_value(p, p, s, beta)
            ) / beta
        if cfg.method != "kl_rl" and not cfg.moving_anchor:  # a moving anchor: no fixed N
            out["kl_to_bon"] = theory.kl_divergence(q, self.bon_probs(cfg.n))
        return out

    # -- the TrainSetup -------------------------------------------------------------------------
    def setup(self, config: Any) -> TrainSetup:
        """Prompts ["a"], F_hat from ``config.m`` pi_ref draws, the exact-metrics hook.

        The N of pi_BoN in the exact metrics is ``bon_n`` if set, else ``config.n`` (pass
        ``task_overrides={"bon_n": N}`` to a kl_rl run to measure its KL to pi_BoN).
        """
        bon_n = self.bon_n if self.bon_n is not None else config.n
        train_draws = self.sample_ref(config.m, seed=config.ref_seed)
        test_draws = self.sample_ref(config.eval_m, seed=config.ref_seed + 1)
        sft = pairs = None
        codes = train_draws[: config.max_m] if config.max_m else train_draws
        if config.method in ("bon_sft", "bonbon"):
            pool = train_draws[None, :]
            build = bon_sft_examples if config.method == "bon_sft" else bonbon_pairs
            made = build(
                [self.texts(pool[0])],
                self.rewards[pool],
                np.zeros(pool.shape, bool),
                config.n,
                config.sft_groups,
            )
            sft, pairs = (made, None) if config.method == "bon_sft" else (None, made)
        if config.method == "bond" and config.anchor_ema == 0:
            pool = codes[None, :]
            sft = bon_sft_examples(
                [self.texts(pool[0])],
                self.rewards[pool],
                np.zeros(pool.shape, bool),
                config.n,
                pool.shape[1] // config.n,
            )

        def extra_eval(model: Any) -> dict[str, float]:
            return self.exact_metrics(model, bon_n, config.temperature or 1.0)

        return TrainSetup(
            policy=self.model,
            tokenizer=self.tokenizer,
            reward_fn=self.reward_fn,
            train_prompts=[PROMPT],
            test_prompts=[PROMPT],
            sampling=Sampling(max_new_tokens=LENGTH, temperature=config.temperature or 1.0),
            test_ref=self.rewards[test_draws][None, :],
            train_cdf=RewardCDF(self.rewards[train_draws][None, :], max_m=config.max_m),
            sft_examples=sft,
            bonbon_pairs=pairs,
            extra_eval=extra_eval,
            reference_texts=[self.texts(codes)],
            reference_ended=np.zeros((1, len(codes)), bool),
            reference_rewards=self.rewards[codes][None, :],
            describe={"name": "enumerable", "seed": self.seed, "reward_seed": self.reward_seed},
        )
