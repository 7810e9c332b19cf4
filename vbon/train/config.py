"""The training configuration: one dataclass for every method and algorithm the paper compares.

``TrainConfig`` follows the TRL split between configuration and trainer, with nanoGPT/CleanRL
clarity: every field is a plain value, documented below, validated on construction, and saved as
``config.json`` beside the run. Fields left at ``None`` take the default of the run's profile
(``PROFILE_DEFAULTS``): ``smoke`` budgets run in about a minute on a laptop CPU, ``paper`` is the
authors' trlx setup of the paper's experiments (PPO, lr 3e-5, 128 rollouts per phase, minibatch 32,
4 PPO epochs, top 2 blocks trainable, GAE gamma 1 lambda 0.95, clip 0.2, score clip 10).

Objectives (as the paper defines them), all maximising E_{pi_theta}[R] - beta KL(pi_theta || pi_ref):

- ``vbon``: R = log F_hat(r(y)), beta = 1/(N-1) (the lower bound L divided by N-1);
- ``vbon_exact``: R = (log pi_BoN(y) - log pi_ref(y)) / (N-1), beta = 1/(N-1), which needs
  log pi_ref(y | x) of each completion at reward time;
- ``kl_rl``: R = r(y), a free beta;
- ``bon_sft``: maximum likelihood on the best of ``n`` reference samples per prompt;
- ``vbon_offline``: vBoN fitted from the reference cache alone, without rollouts (QRPO's
  regression of beta log(pi_theta / pi_ref) onto R - beta log Z; ``vbon.train.offline``);
- ``bonbon``: BoNBoN (Gui et al. 2024), from the cache's best and worst of n samples per prompt:
  alpha SFT(best) + (1 - alpha) IPO(best vs worst) with margin 1/(2 beta*_n)
  (``vbon.train.bonbon``);
- ``bond`` and ``jbond``: BOND and J-BOND (Sessa et al. 2024), the Jeffreys divergence to
  Best-of-N of an anchor, (1 - lambda) KL(pi_BoN || pi) by SFT on the anchor's best samples plus
  lambda KL(pi || pi_BoN) by vBoN's policy gradient; the anchor is pi_ref or an EMA of the
  policy (iterated BOND) (``vbon.train.bond``).

The quantile reward R of vbon and vbon_offline is ``transform`` of F ("log": log F, vBoN's;
"identity": F, the win rate against pi_ref; "exp": exp(transform_t F)), with F estimated by
``cdf_estimator`` ("add_one", the authors' F_hat; "posterior"; "pooled"; ``vbon.cdf``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from vbon._checks import check_real, check_run_name, check_text

__all__ = ["METHODS", "ALGORITHMS", "PROFILE_DEFAULTS", "TrainConfig", "defaults_for", "field_docs"]

Method = Literal[
    "vbon", "vbon_exact", "kl_rl", "bon_sft", "vbon_offline", "bonbon", "bond", "jbond"
]
Algorithm = Literal["rloo", "ppo"]
METHODS = ("vbon", "vbon_exact", "kl_rl", "bon_sft", "vbon_offline", "bonbon", "bond", "jbond")
# Methods trained from the reference cache, without rollouts.
OFFLINE_METHODS = ("bon_sft", "vbon_offline", "bonbon")
# Methods trained on the best (and worst) of n reference samples per prompt.
BON_PAIR_METHODS = ("bon_sft", "bonbon")
# The Jeffreys-divergence methods with an anchor (pi_ref or an EMA of the policy).
BOND_METHODS = ("bond", "jbond")
# Methods whose score is a quantile reward f(F) (transform, cdf_estimator) at beta = 1/(N-1).
QUANTILE_METHODS = ("vbon", "vbon_exact", "vbon_offline")
ALGORITHMS = ("rloo", "ppo")

# AdamW and value-loss settings of trlx's sentiment config (the authors' IMDB runs).
_OPTIMISER: dict[str, Any] = {
    "vf_coef": 1.0,
    "adam_betas": (0.9, 0.95),
    "adam_eps": 1e-8,
    "weight_decay": 1e-6,
}
# ``steps`` marker: as many rollout phases as make one pass over the train prompts.
ONE_PASS = "one_pass"
# Rows of the CarperAI/openai_summarize_tldr train split: what a TL;DR run asking for every
# train prompt (max_train_prompts=0) passes over.
TLDR_TRAIN_ROWS = 116_722

# Defaults for the fields left at None: per profile, then per task, each with a shared part
# ("base") and one part per kind of run ("rloo", "ppo", "bon_sft"). The paper rows are the paper
# section 4 (the authors' trlx PPO); the smoke rows run in about a minute on two CPU cores, with
# lr and budget chosen on toy-sentiment so that vbon at N = 8 stays below BoN's KL bound.
PROFILE_DEFAULTS: dict[str, dict[str, dict[str, Any]]] = {
    "smoke": {
        "base": {
            "algorithm": "rloo",
            "num_layers_unfrozen": 2,
            "warmup_steps": 5,
            "m": 32,
            "max_train_prompts": 256,
            "eval_prompts": 64,
            "eval_k": 4,
            "eval_m": 32,
            "eval_every": 0,
            "save_every": 0,
            # One thread: the toy models are too small for intra-op parallelism to pay, and on
            # a loaded machine spinning OpenMP threads get preempted (10x slower steps).
            "cpu_threads": 1,
            **_OPTIMISER,
            "max_grad_norm": 1.0,
        },
        # Small lr, many steps, k = 8: RL's KL grows with the noise of each step, so this reaches
        # a higher win rate at a given KL than larger or noisier steps (measured on
        # toy-sentiment at N = 8: win rate 0.69 at KL 1.0, against 0.61 with k = 4). 45 steps
        # keep a margin below the KL bound 1.20 whatever the sampling stream: 60 steps ended at
        # KL 1.14 with one stream and 1.45 with another; 45 end at KL 0.94, win rate 0.65.
        "rloo": {"lr": 3e-4, "steps": 45, "batch_prompts": 8, "k": 8},
        # PPO: 28 phases of 64 rollouts, 4 epochs of 2 minibatches (win rate 0.62 at KL 0.62;
        # 32 phases reached KL k1 1.30, above the bound, with one sampling stream, and 24
        # phases a win rate of 0.59).
        "ppo": {
            "lr": 1e-4,
            "steps": 28,
            "batch_prompts": 64,
            "k": 1,
            "mini_batch_size": 32,
            "ppo_epochs": 4,
        },
        "bon_sft": {"lr": 1e-3, "steps": 30, "batch_prompts": 16},
        "bonbon": {"lr": 1e-4, "steps": 30, "batch_prompts": 16},
        # jbond: one policy sample and two anchor samples per prompt.
        "jbond": {"lr": 3e-4, "steps": 45, "batch_prompts": 32, "k": 1},
        # vbon_offline: 8 prompts x 4 cached completions per step, the rows of an rloo phase of
        # the IMDB smoke spec. On toy IMDB (N = 4, 30 steps) lr 1e-3 reached KL 2.96 for a win
        # rate of 0.56, lr 1e-4 KL 0.78 for 0.54 (a trial with 8 completions per prompt and
        # step): the smaller step (notebook 08).
        "offline": {"lr": 1e-4, "steps": 30, "batch_prompts": 8, "k": 4},
    },
    "paper": {
        "base": {
            "algorithm": "ppo",
            "num_layers_unfrozen": 2,
            "warmup_steps": 0,
            "m": 300,
            "max_train_prompts": None,
            "eval_prompts": 512,
            "eval_k": 4,
            "eval_m": 100,
            "eval_every": 20,
            "save_every": 10,
            **_OPTIMISER,
            "max_grad_norm": 0.0,  # the authors' trlx runs do not clip gradients
        },
        # 100 phases x 128 rollouts = 12,800 samples; PPO: 4 epochs x 4 minibatches of 32 per
        # phase = 1,600 optimiser steps.
        "rloo": {"lr": 3e-5, "steps": 100, "batch_prompts": 32, "k": 4},
        "ppo": {
            "lr": 3e-5,
            "steps": 100,
            "batch_prompts": 128,
            "k": 1,
            "mini_batch_size": 32,
            "ppo_epochs": 4,
        },
        "bon_sft": {"lr": 3e-5, "steps": 400, "batch_prompts": 32},
        "bonbon": {"lr": 3e-5, "steps": 400, "batch_prompts": 32},
        "jbond": {"lr": 3e-5, "steps": 100, "batch_prompts": 128, "k": 1},
        "offline": {"lr": 3e-5, "steps": 400, "batch_prompts": 32, "k": 4},
    },
}
# The converged profile runs the same toy worlds as smoke; its longer budgets live in the
# experiment specs (vbon.experiment), which set steps and lr explicitly.
PROFILE_DEFAULTS["converged"] = PROFILE_DEFAULTS["smoke"]
# Task-specific parts: the authors' TL;DR PPO (trlx_pythia_summarization.py: lr 3e-6, top 8
# blocks, AdamW betas (0.9, 0.999) eps 1e-5 weight decay 0.01, vf_coef 0.2, batches of 4 rows
# with DeepSpeed gradient accumulation 4 = 16 rows per optimiser step, so 128 rollouts x 4
# epochs = 32 updates per phase, and len(prompts) / 128 phases = one pass over the train
# prompts), on the 4096 train prompts of the paper params (max_train_prompts=0 takes all
# ~117k); and the enumerable world.
TASK_DEFAULTS: dict[tuple[str, str], dict[str, dict[str, Any]]] = {
    ("paper", "tldr"): {
        "base": {
            "lr": 3e-6,
            "num_layers_unfrozen": 8,
            "vf_coef": 0.2,
            "adam_betas": (0.9, 0.999),
            "adam_eps": 1e-5,
            "weight_decay": 0.01,
            "max_train_prompts": 4096,
        },
        "ppo": {"steps": ONE_PASS, "mini_batch_size": 16, "micro_batch_size": 4},
    },
    ("smoke", "enumerable"): {
        "base": {
            "warmup_steps": 0,
            "m": 4096,
            "max_train_prompts": None,
            "eval_prompts": 1,
            "eval_k": 256,
            "eval_m": 256,
        },
        "rloo": {"lr": 1e-3, "steps": 200, "batch_prompts": 16, "k": 4},
        "ppo": {"lr": 3e-4, "steps": 60, "batch_prompts": 64, "mini_batch_size": 32},
        "bon_sft": {"lr": 1e-3, "steps": 150, "batch_prompts": 64},
        # bonbon at n = 4: KL to pi_BoN 1.59 -> 0.51 at lr 1e-3, 0.38 at 3e-3 (150 steps).
        "bonbon": {"lr": 3e-3, "steps": 150, "batch_prompts": 64},
        "jbond": {"lr": 1e-3, "steps": 200, "batch_prompts": 64, "k": 1},
        # vbon_offline (one prompt, 64 of its 4096 cached references per step): identity and
        # exp(t=1) flatten by 200 steps at lr 3e-3 or 1e-2, log only by about 600 at 1e-2
        # (measured KL(pi || pi*) after 800 steps: 0.05, 0.09 and 0.23 at 1e-2).
        "offline": {"lr": 1e-2, "steps": 600, "batch_prompts": 1, "k": 64},
    },
}


TASK_DEFAULTS[("converged", "enumerable")] = TASK_DEFAULTS[("smoke", "enumerable")]
TASK_DEFAULTS[("paper", "enumerable")] = TASK_DEFAULTS[("smoke", "enumerable")]


def defaults_for(profile: str, task: str, kind: str) -> dict[str, Any]:
    """The default field values of a run: profile base < profile kind < task base < task kind."""
    table = PROFILE_DEFAULTS[profile]
    extra = TASK_DEFAULTS.get((profile, task), {})
    return {
        **table["base"],
        **table.get(kind, {}),
        **extra.get("base", {}),
        **extra.get(kind, {}),
    }


# The authors' BoN-SFT (examples/sft_sentiments.py), for sft_recipe="authors": lr 5e-6, batch 8,
# one epoch over the 5000 IMDB train prompts (625 steps), every layer trainable.
SFT_AUTHORS: dict[str, Any] = {
    "lr": 5e-6,
    "batch_prompts": 8,
    "steps": 625,
    "num_layers_unfrozen": -1,
}

# Fields added after runs were cached: left out of the identity hash while at these values, so
# that a run's name (and its cached results) stays what it was before the field existed.
_IDENTITY_DEFAULTS: dict[str, Any] = {
    "adam_eps": 1e-8,
    "trainable": "blocks",
    "sft_recipe": "vbon",
    "transform": "log",
    "transform_t": None,
    "cdf_estimator": "add_one",
    "offline_log_z": "closed",
    "kl_estimator": "k1",
    "bonbon_alpha": 0.005,
    "bond_lambda": 0.5,
    "anchor_ema": None,
    "anchor_gamma": 0.0,
}

# Fields that do not change what a run computes: they are left out of the run's identity hash.
_NOT_IDENTITY = frozenset(
    {
        "resume",
        "progress",
        "output_dir",
        "run_name",
        "save_every",
        "keep_checkpoints",
        "overwrite",
        "cpu_threads",
    }
)


def _positive_int(name: str, value: Any, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}: must be an integer >= {minimum}, got {value!r}")


def _positive_float(name: str, value: Any, *, allow_zero: bool = False) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name}: must be a finite number {bound}, got {value!r}")


@dataclass
class TrainConfig:
    """Everything one training run needs; ``vbon.train.train(config)`` runs it.

    Fields at ``None`` are filled from ``PROFILE_DEFAULTS`` on construction, so ``config.json``
    always records the values actually used.
    """

    # --- what is trained ---------------------------------------------------------------------
    task: str = "imdb"
    """Task name for ``vbon.tasks.get_task`` ("imdb", "tldr"), or "enumerable" (the exact-check
    world of ``vbon.train.enumerable``: 256 sequences, pi_BoN known in closed form)."""
    profile: str = "smoke"
    """"smoke" (toy worlds, CPU budgets), "converged" (toy worlds; the same defaults, the
    experiment specs train longer) or "paper" (hub models, the paper's settings)."""
    task_overrides: dict[str, Any] = field(default_factory=dict)
    """Keyword overrides for ``get_task`` (e.g. ``{"n_train": 1000}``, sampling fields). On
    the paper profile the hub commits the task loads are filled in (``policy_revision``, ...)."""
    method: Method = "vbon"
    """"vbon" (reward log F_hat, bound L), "vbon_exact" (the paper's exact reward),
    "kl_rl" (raw reward r, free beta), "bon_sft" (SFT on the best of n reference samples),
    "vbon_offline" (vbon's optimum fitted from the reference cache, no rollouts), "bonbon"
    (BoNBoN on the best and worst of n reference samples), "bond" (BOND: the Jeffreys
    divergence to Best-of-n of an anchor) or "jbond" (J-BOND)."""
    algorithm: Algorithm | None = None
    """"rloo" (REINFORCE, leave-one-out baseline over k samples per prompt, KL as a k1 sequence
    sum in the reward) or "ppo" (value head, GAE, clipped losses; the authors' trlx setup).
    None: the profile's (smoke: rloo, paper: ppo). Ignored by bon_sft."""
    n: int | None = None
    """N of the Best-of-N that vbon approximates (beta = 1/(N-1)); for bon_sft and bonbon the
    number of reference samples the best (and worst) is picked from; for bond the N of its
    target (the n of each iteration with a moving anchor). None: 8 (jbond: its 2), or from
    beta. Unused by kl_rl."""
    beta: float | None = None
    """KL weight. Required for kl_rl. For vbon it may replace ``n``: N = 1/beta + 1 rounded by
    ``n_rounding``; when both are given they must agree."""
    n_rounding: Literal["exact", "nearest", "authors"] = "exact"
    """How N is derived from beta for vbon: "exact" (1/beta + 1 must be an integer), "nearest",
    or "authors" (int(1/beta) + 1, the authors' truncation)."""
    transform: Literal["log", "identity", "exp"] = "log"
    """The quantile transform f of vbon and vbon_offline's reward R = f(F(r(y))): "log"
    (vBoN's bound L), "identity" (F, InfAlign's calibrated reward: the win rate against
    pi_ref) or "exp" (exp(transform_t F), InfAlign-CTRL). The KL weight stays beta = 1/(N-1);
    only "log" makes the optimum pi_BoN(N)-like (``vbon.objectives``)."""
    transform_t: float | None = None
    """The temperature t of ``transform="exp"`` (non-zero); None otherwise."""
    cdf_estimator: Literal["add_one", "posterior", "pooled"] = "add_one"
    """How f(F) is estimated from the M references (``vbon.cdf.quantile_scores``): "add_one"
    (f((k+1)/(M+1)), the authors' F_hat), "posterior" (E[f(F) | k, M] under a uniform prior;
    for log, psi(k+1) - psi(M+2)) or "pooled" (a location-scale fit shared across prompts,
    M >= 2)."""
    offline_log_z: Literal["closed", "references"] = "closed"
    """vbon_offline's log Z in the target f(F_hat) - beta log Z: "closed" (QRPO's closed form,
    exact when F(r(y)) is uniform under pi_ref, i.e. no ties) or "references" (per prompt, the
    mean of exp(f(F_hat)/beta) over its references; consistent with ties; vbon.train.offline)."""
    scaling: Literal["paper", "authors"] = "paper"
    """vbon_exact's reward divisor: "paper" divides log(pi_BoN/pi_ref) by N-1 (the true
    objective at KL weight 1/(N-1)); "authors" divides by N as the authors' code did."""
    exact_ref_with_prompt: bool = False
    """Authors' quirk for vbon_exact: log pi_ref(y) includes the prompt tokens' log-probability
    (the paper's pi_ref(y) is the completion's probability given the prompt)."""
    kl_estimator: Literal["k1", "rb"] = "k1"
    """The KL(pi_theta || pi_ref) estimate inside the objective of rloo and ppo: "k1" (the
    sampled tokens' log-ratio, trlx's and the paper's) or "rb" (the Rao-Blackwellised estimate,
    the exact next-token KL summed along the sampled prefix, with its pathwise gradient;
    Amini, Vieira, Cotterell, NeurIPS 2025; ``vbon.evaluate.kl_rb``). It needs the full
    next-token distributions of pi_theta and pi_ref: rows x tokens x vocabulary floats."""
    bonbon_alpha: float = 0.005
    """bonbon's weight of the SFT term (the negative log-likelihood of the best of n, a sequence
    sum as in the authors' code) against the IPO term's 1 - alpha (the authors' 0.005)."""
    bond_lambda: float = 0.5
    """bond and jbond's Jeffreys weight: (1 - lambda) KL(pi_BoN || pi) (SFT on the anchor's
    best of n) + lambda KL(pi || pi_BoN) (vBoN's policy gradient); the paper's beta, 0.5 in
    all its main runs. 0: BoN-SFT on the anchor's samples; 1: vbon against the anchor."""
    anchor_ema: float | None = None
    """bond and jbond's anchor update theta_anchor <- (1 - eta) theta_anchor + eta theta after
    each step. 0 keeps the anchor at pi_ref (BOND at the target N, with F_hat and the BoN
    targets from the reference cache); > 0 is iterated BOND, distilling Best-of-n of a moving
    anchor from fresh anchor samples, so the effective N grows. None: 0 for bond, the paper's
    0.02 for jbond."""
    anchor_gamma: float = 0.0
    """bond (with anchor_ema > 0) and jbond: weight of the extra regulariser KL(pi || pi_anchor)
    (J-BOND's gamma, 0 in the paper's Figure 5), added to the log-ratio's weight in the return."""
    score_clip: float | None = 10.0
    """Clip the score R to [-score_clip, score_clip] before the KL term (trlx's
    cliprange_reward = 10); None disables it."""
    eos_score: float | None = None
    """If set, completions that did not emit EOS get this score instead of R (after log F_hat,
    a vbon option; not the authors' rule). The authors' "-20 for vBoN, -1 for PPO" is a reward
    model score, set before F_hat: the task's ``eos_penalty`` (with the TL;DR task's
    ``eos_rule="authors"`` for their EOS handling)."""

    # --- reference samples (F_hat) -------------------------------------------------------------
    m: int | None = None
    """Reference samples per train prompt for F_hat (vbon) or the BoN pool (bon_sft, >= n)."""
    max_m: int | None = None
    """Use only the first max_m of the cached M samples per prompt (the M ablation)."""
    ref_seed: int = 0
    """Seed of the reference cache (part of its key)."""
    max_train_prompts: int | None = None
    """Train on the first P train prompts only (the reference cache is built for those); 0:
    every train prompt of the task. None: the profile's (smoke 256; paper: all 5000 IMDB
    prompts, 4096 of TL;DR's ~117k, so that no default samples the whole TL;DR split)."""
    sft_groups: int = 1
    """bon_sft (bonbon): BoN targets (best-worst pairs) per prompt, from disjoint groups of n
    reference samples (draw order; needs m >= n * sft_groups). The paper used one per prompt."""
    sft_recipe: Literal["vbon", "authors"] = "vbon"
    """bon_sft's recipe: "vbon" (the profile's lr, batch and steps, the profile's trainable
    blocks, dropout off, loss on the completion + its EOS) or "authors" (their
    examples/sft_sentiments.py: lr 5e-6, batch 8, 625 steps = one epoch over 5000 prompts,
    all layers trainable, dropout on, loss on prompt + completion without EOS). Fields given
    explicitly win over the recipe's."""

    # --- sampling (None: the task's settings, which the reference cache also uses) ---------------
    max_new_tokens: int | None = None
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None

    # --- budget and batches --------------------------------------------------------------------
    steps: int | None = None
    """Iterations: rollout phases for rloo/ppo (one optimiser step each for rloo, ppo_epochs x
    rows / mini_batch_size for ppo), optimiser steps for bon_sft. None: the profile's (paper
    TL;DR PPO: one pass over the train prompts, ceil(prompts / batch_prompts) phases)."""
    batch_prompts: int | None = None
    """Prompts per rollout phase (bon_sft: examples per optimiser step), over all processes."""
    k: int | None = None
    """Samples per prompt in a rollout: >= 2 for rloo (the leave-one-out baseline), 1 for ppo by
    default. Rows per phase = batch_prompts * k."""
    mini_batch_size: int | None = None
    """ppo: rows per optimiser step over all processes (paper: 32; each of P processes takes
    mini_batch_size / P). Unused by rloo (one step per phase)."""
    micro_batch_size: int | None = None
    """Rows per forward/backward over all processes (each of P takes micro_batch_size / P);
    gradients are accumulated over micro-batches (gradient accumulation). None: the whole
    (mini-)batch at once. rloo: a multiple of k (per process), so each micro-batch holds
    whole prompt groups."""
    ppo_epochs: int | None = None
    """PPO passes over each rollout buffer (paper: 4)."""

    # --- optimisation --------------------------------------------------------------------------
    lr: float | None = None
    """AdamW learning rate (paper: 3e-5 IMDB, 3e-6 TL;DR)."""
    adam_betas: tuple[float, float] | None = None
    """AdamW betas. None: the profile's ((0.9, 0.95) as trlx's sentiment config; paper TL;DR
    (0.9, 0.999) as the authors')."""
    adam_eps: float | None = None
    """AdamW epsilon. None: the profile's (1e-8, torch's and trlx's sentiment config; paper
    TL;DR 1e-5 as the authors')."""
    weight_decay: float | None = None
    """AdamW weight decay. None: the profile's (1e-6 as trlx's sentiment config; paper TL;DR
    0.01 as the authors')."""
    lr_schedule: Literal["constant", "linear", "cosine"] = "constant"
    """Learning-rate schedule after warm-up (trlx's sentiment config is effectively constant)."""
    warmup_steps: int | None = None
    """Linear warm-up optimiser steps (a first Adam step at full lr spends KL on noise)."""
    max_grad_norm: float | None = None
    """Gradient clipping by global norm; 0 disables it. None: the profile's (smoke 1.0; paper
    0, no clipping, as the authors' trlx runs)."""
    num_layers_unfrozen: int | None = None
    """Train only the top k transformer blocks (+ final norm, + an untied LM head); -1 trains
    all. The frozen bottom is shared with pi_ref (same tensors) and computed once per batch."""
    share_reference: bool = True
    """Share the frozen bottom of the policy with pi_ref and reuse its activations. Off: pi_ref
    is a separate frozen copy."""
    trainable: Literal["blocks", "authors"] = "blocks"
    """What trains besides the top blocks: "blocks" (the final norm and an untied head; every
    embedding frozen, so pi_ref is exactly the initial policy) or "authors" (trlx's freezing:
    only the bottom blocks and the token embedding freeze, so GPT-2's position embedding trains
    too, and the KL reference of training shares the policy's current trunk, embeddings
    included, so pi_ref drifts with them; evaluation's KL still uses the initial policy)."""

    # --- PPO (the authors' trlx settings) -------------------------------------------------------
    gamma: float = 1.0
    """GAE discount."""
    lam: float = 0.95
    """GAE lambda."""
    cliprange: float = 0.2
    """PPO policy ratio clip."""
    cliprange_value: float = 0.2
    """PPO value clip (around the rollout's values)."""
    vf_coef: float | None = None
    """Weight of the value loss. None: the profile's (1.0; paper TL;DR 0.2 as the authors')."""
    whiten_advantages: bool | Literal["authors"] = True
    """Normalise advantages: True per minibatch over its completion tokens (masked mean and
    std); "authors" as trlx, per forward batch (micro-batch) over all its positions up to its
    longest completion, padding included, with the unbiased variance; False: not at all."""

    # --- evaluation, logging, checkpoints --------------------------------------------------------
    evaluate: bool = True
    """Evaluate at all (False: no evaluation, e.g. for throughput benchmarks)."""
    eval_every: int | None = None
    """Evaluate on test prompts every this many steps (0: only at the start and the end)."""
    eval_at_start: bool = True
    """Evaluate pi_ref (the initial policy) before training, as step 0."""
    eval_prompts: int | None = None
    """Test prompts used by evaluation (the first ones of the task's test split)."""
    eval_k: int | None = None
    """Policy samples per test prompt in evaluation."""
    eval_m: int | None = None
    """Reference samples per test prompt for the win rate."""
    win_method: Literal["all", "first"] = "all"
    """Win rate against every reference sample of the prompt, ties 1/2 ("all"), or the authors'
    comparison with the first cached one, ties lost ("first")."""
    save_every: int | None = None
    """Checkpoint every this many steps (0: none; the final policy is always saved)."""
    keep_checkpoints: int = 2
    """Checkpoints kept on disk (the newest). Two by default: when the newest is damaged, a
    resume falls back to the one before (with 1 it would start over)."""
    resume: bool = False
    """Continue an interrupted run from its last intact checkpoint (same config required).
    Without it, ``train`` refuses to start over a directory holding an interrupted run."""
    overwrite: bool = False
    """Start over even if a finished or interrupted run with this config exists (wins over
    ``resume``)."""
    log_samples: bool = False
    """Also write every rollout row's prompt, score and KL to samples-rank<r>.jsonl."""

    # --- runtime -------------------------------------------------------------------------------
    seed: int = 0
    """Seed of initialisation, prompt order and sampling (per process: seed, step, rank)."""
    run_name: str | None = None
    """Run directory name (one name, created under output_dir: no path separators or "..");
    None derives method-algorithm-N/beta-seed-<config hash>."""
    output_dir: str | None = None
    """Parent of the run directory; None: runs/<profile>/<task>/train."""
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = "auto"
    """"auto": bf16 on a GPU that supports it, else full precision. Trainable weights are fp32
    whatever the checkpoint's dtype (frozen ones may stay half under bf16/fp16 autocast); the
    reference samples behind F_hat are drawn at the same precision (vbon.precision)."""
    progress: bool = True
    """Show a tqdm progress bar with live reward and KL."""
    cpu_threads: int | None = None
    """torch intra-op threads during the run on a CPU (None: the profile's; smoke uses 1, which
    is fastest for the toy models, paper leaves torch's default)."""

    def __post_init__(self) -> None:
        if isinstance(self.adam_betas, list):
            self.adam_betas = tuple(self.adam_betas)
        if isinstance(self.whiten_advantages, str) and self.whiten_advantages.lower() in (
            "true",
            "false",
        ):  # the CLI's --whiten-advantages true/false/authors
            self.whiten_advantages = self.whiten_advantages.lower() == "true"
        if isinstance(self.task_overrides, dict) or self.task_overrides is None:
            self.task_overrides = dict(self.task_overrides or {})
        # Any name goes with a hand-made TrainSetup (the benchmarks); build_setup checks it.
        check_text(self.task, "task", what="a task name (imdb, tldr, enumerable)")
        if self.profile not in PROFILE_DEFAULTS:
            raise ValueError(
                f"profile: expected one of {sorted(PROFILE_DEFAULTS)}, got {self.profile!r}"
            )
        if self.method not in METHODS:
            raise ValueError(f"method: expected one of {METHODS}, got {self.method!r}")
        if self.algorithm is None:
            # bond and jbond have their own policy gradient in rloo's form, on every profile.
            self.algorithm = (
                "rloo"
                if self.method in BOND_METHODS
                else PROFILE_DEFAULTS[self.profile]["base"]["algorithm"]
            )
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm: expected one of {ALGORITHMS}, got {self.algorithm!r}")
        self._fill_defaults()
        self._check_objective()
        self._check_batches()
        self._check_rest()
        self._pin_revisions()

    def _pin_revisions(self) -> None:
        """Record the hub commits the task will load in ``task_overrides`` (paper profile), so
        that a changed pin is another run (the identity hashes task_overrides)."""
        if self.profile != "paper" or self.task == "enumerable":
            return
        import warnings

        from vbon.tasks import UnpinnedRevisionWarning, hub_revisions

        with warnings.catch_warnings():  # get_task repeats the warning when it loads the task
            warnings.simplefilter("ignore", UnpinnedRevisionWarning)
            pins = hub_revisions(self.task, self.profile, **self.task_overrides)
        for name, revision in pins.items():
            if self.task_overrides.get(name) in (None, ""):
                self.task_overrides[name] = revision

    # -- defaults and validation ------------------------------------------------------------------
    def _fill_defaults(self) -> None:
        kind = {
            "bon_sft": "bon_sft",
            "vbon_offline": "offline",
            "bonbon": "bonbon",
            "jbond": "jbond",
        }.get(self.method, self.algorithm)
        table = defaults_for(self.profile, self.task, kind)
        if self.method == "jbond" and self.k not in (None, 1):
            raise ValueError(f"k: jbond draws one policy sample per prompt, got k = {self.k}")
        if self.method in BON_PAIR_METHODS or self.method == "jbond":
            self.k = 1  # one target (pair, policy sample) per prompt
        if self.method == "bon_sft" and self.sft_recipe == "authors":
            table = {**table, **SFT_AUTHORS}
        if self.method in BOND_METHODS and self.anchor_ema is None:
            self.anchor_ema = 0.02 if self.method == "jbond" else 0.0
        names = {f.name for f in dataclasses.fields(self)}
        for name, value in table.items():
            if name in names and getattr(self, name) is None:
                setattr(self, name, value)
        if self.steps == ONE_PASS:
            self.steps = -(-self._train_prompt_count() // self.batch_prompts)
        if not self.is_rl or self.algorithm == "rloo":
            # Unused fields are pinned so that they do not change the run's identity.
            self.mini_batch_size = None
            self.ppo_epochs = None

    @property
    def moving_anchor(self) -> bool:
        """J-BOND and iterated BOND (anchor_ema > 0): the anchor follows the policy, so the run
        has no fixed target pi_BoN(N) and the J it logs (against the anchor) stays flat."""
        return self.method in BOND_METHODS and bool(self.anchor_ema)

    @property
    def train_prompt_count(self) -> int:
        """Train prompts a run passes over: max_train_prompts, capped by the task's n_train
        (IMDB's 5000 or TL;DR's rows when neither caps it; the enumerable world has one)."""
        return 1 if self.task == "enumerable" else self._train_prompt_count()

    def _train_prompt_count(self) -> int:
        counts = [TLDR_TRAIN_ROWS if self.task == "tldr" else 5000]
        n_train = self.task_overrides.get("n_train")
        if isinstance(n_train, int) and not isinstance(n_train, bool) and n_train > 0:
            counts.append(n_train)
        if isinstance(self.max_train_prompts, int) and self.max_train_prompts > 0:
            counts.append(self.max_train_prompts)
        return min(counts)

    def _check_objective(self) -> None:
        # Imported here: the CLI builds its parser from this module and should not load torch.
        from vbon.objectives import beta_from_n, n_from_beta

        from_beta = self.beta is not None and self.method in QUANTILE_METHODS
        if self.n is None and not from_beta and self.method != "kl_rl":
            self.n = 2 if self.method == "jbond" else 8

        if self.method in QUANTILE_METHODS:
            if self.beta is not None:
                _positive_float("beta", self.beta)
                n_beta = n_from_beta(self.beta, rounding=self.n_rounding)
                if self.n is not None and self.n != n_beta:
                    raise ValueError(
                        f"beta: {self.beta} gives N = {n_beta} (n_rounding={self.n_rounding!r}) "
                        f"but n = {self.n}; pass one of them"
                    )
                self.n = n_beta
            _positive_int("n", self.n, 2)
            if self.beta is None:
                self.beta = beta_from_n(self.n)
        elif self.method == "kl_rl":
            if self.beta is None:
                raise ValueError("beta: kl_rl needs a KL weight beta > 0")
            _positive_float("beta", self.beta)
            self.n = None
        elif self.method in BOND_METHODS:
            _positive_int("n", self.n, 2)
            if self.method == "jbond" and self.n != 2:
                raise ValueError(
                    f"n: jbond distils Best-of-2 of its anchor (its reward's -log 16 is set for "
                    f"two anchor samples), got n = {self.n}; use bond for other n"
                )
            if self.beta is not None and not math.isclose(self.beta, beta_from_n(self.n)):
                raise ValueError(f"beta: {self.method} uses 1/(n-1); leave beta unset")
            self.beta = beta_from_n(self.n)
        elif self.method == "bonbon":
            _positive_int("n", self.n, 2)
            from vbon.objectives import bonbon_beta

            beta_n = bonbon_beta(self.n)
            if self.beta is not None and not math.isclose(self.beta, beta_n, rel_tol=1e-9):
                raise ValueError(
                    f"beta: bonbon's IPO weight is beta*_n = {beta_n:.6g} at n = {self.n}; "
                    "leave beta unset"
                )
            self.beta = beta_n
        else:  # bon_sft
            _positive_int("n", self.n, 1)
            self.beta = None
        if self.n_rounding not in ("exact", "nearest", "authors"):
            raise ValueError(f"n_rounding: expected exact/nearest/authors, got {self.n_rounding!r}")
        if self.scaling not in ("paper", "authors"):
            raise ValueError(f"scaling: expected 'paper' or 'authors', got {self.scaling!r}")
        from vbon.cdf import ESTIMATORS
        from vbon.objectives import check_transform

        _, self.transform_t = check_transform(self.transform, self.transform_t)
        if self.cdf_estimator not in ESTIMATORS:
            raise ValueError(
                f"cdf_estimator: expected one of {ESTIMATORS}, got {self.cdf_estimator!r}"
            )
        if self.offline_log_z not in ("closed", "references"):
            raise ValueError(
                f"offline_log_z: expected 'closed' or 'references', got {self.offline_log_z!r}"
            )
        if self.offline_log_z != "closed" and self.method != "vbon_offline":
            raise ValueError("offline_log_z: only vbon_offline has a partition target")
        quantile = self.method in ("vbon", "vbon_offline")
        if self.transform != "log" and not quantile:
            raise ValueError(
                f"transform: only vbon and vbon_offline take a quantile transform, got "
                f"{self.transform!r} with method {self.method!r}"
            )
        if self.cdf_estimator != "add_one" and self.method not in QUANTILE_METHODS:
            raise ValueError(
                f"cdf_estimator: only vbon, vbon_exact and vbon_offline take another estimator "
                f"of F, not {self.method}; leave it at 'add_one'"
            )
        if self.kl_estimator not in ("k1", "rb"):
            raise ValueError(f"kl_estimator: expected 'k1' or 'rb', got {self.kl_estimator!r}")
        if self.kl_estimator != "k1" and not self.is_rl:
            raise ValueError(
                f"kl_estimator: {self.method} is trained offline, with no KL term to estimate; "
                "leave it at 'k1'"
            )
        check_real(self.bonbon_alpha, "bonbon_alpha", minimum=0.0, strict=False, maximum=1.0)
        check_real(self.bond_lambda, "bond_lambda", minimum=0.0, strict=False, maximum=1.0)
        check_real(self.anchor_gamma, "anchor_gamma", minimum=0.0, strict=False)
        check_real(
            self.anchor_ema, "anchor_ema", minimum=0.0, strict=False, maximum=1.0, allow_none=True
        )
        if self.method not in BOND_METHODS:
            given = {
                "bond_lambda": self.bond_lambda != 0.5,
                "anchor_ema": self.anchor_ema is not None,
                "anchor_gamma": self.anchor_gamma != 0.0,
            }
            for name, set_ in given.items():
                if set_:
                    raise ValueError(f"{name}: only bond and jbond take it, not {self.method}")
        else:
            if self.method == "jbond" and self.anchor_ema == 0:
                raise ValueError(
                    "anchor_ema: jbond's anchor moves (the paper's 0.02); for a fixed anchor "
                    "at pi_ref use bond"
                )
            if self.anchor_ema == 0 and self.anchor_gamma != 0:
                raise ValueError(
                    "anchor_gamma: with anchor_ema=0 the anchor is pi_ref, whose KL the "
                    "objective already weighs; set anchor_ema > 0 or leave gamma at 0"
                )
            if self.kl_estimator != "k1":
                raise ValueError(
                    f"kl_estimator: {self.method}'s KL to its anchor is the k1 log-ratio; "
                    "'rb' is offered for vbon, vbon_exact and kl_rl"
                )
            if self.eos_score is not None:
                raise ValueError(
                    f"eos_score: {self.method} scores by quantiles against its anchor; use "
                    "the task's eos_penalty (a reward-model score) instead"
                )
        if self.method == "bonbon" and self.sft_recipe != "vbon":
            raise ValueError("sft_recipe: the authors' recipe is bon_sft's; bonbon has its own")
        if self.method in BOND_METHODS and self.algorithm != "rloo":
            raise ValueError(
                f"algorithm: {self.method} trains by its own policy gradient (rloo's form), "
                f"not {self.algorithm}"
            )
        if self.bonbon_alpha != 0.005 and self.method != "bonbon":
            raise ValueError(f"bonbon_alpha: only bonbon has an SFT weight, not {self.method}")
        if self.score_clip is not None:
            _positive_float("score_clip", self.score_clip)
        check_real(self.eos_score, "eos_score", allow_none=True)

    def _check_batches(self) -> None:
        _positive_int("steps", self.steps)
        _positive_int("batch_prompts", self.batch_prompts)
        _positive_int("k", self.k)
        if self.is_rl and self.algorithm == "rloo" and self.method != "jbond" and self.k < 2:
            raise ValueError(
                f"k: rloo needs k >= 2 samples per prompt for its leave-one-out baseline, got {self.k}"
            )
        rows = self.batch_prompts * self.k
        if self.is_rl and self.algorithm == "ppo":
            _positive_int("mini_batch_size", self.mini_batch_size)
            _positive_int("ppo_epochs", self.ppo_epochs)
            if rows % self.mini_batch_size:
                raise ValueError(
                    f"mini_batch_size: {self.mini_batch_size} must divide the rollout's "
                    f"batch_prompts * k = {rows} rows"
                )
            step_rows = self.mini_batch_size
        else:
            step_rows = rows
        if self.micro_batch_size is not None:
            _positive_int("micro_batch_size", self.micro_batch_size)
            if step_rows % self.micro_batch_size:
                raise ValueError(
                    f"micro_batch_size: {self.micro_batch_size} must divide the {step_rows} rows "
                    "of an optimiser step"
                )
            if self.is_rl and self.algorithm == "rloo" and self.micro_batch_size % self.k:
                raise ValueError(
                    f"micro_batch_size: must be a multiple of k = {self.k} for rloo (each "
                    "micro-batch holds whole prompt groups for the leave-one-out baseline)"
                )

    def _check_rest(self) -> None:
        _positive_float("lr", self.lr)
        if not (isinstance(self.adam_betas, tuple) and len(self.adam_betas) == 2):
            raise ValueError(f"adam_betas: expected two floats, got {self.adam_betas!r}")
        for b in self.adam_betas:
            check_real(b, "adam_betas", minimum=0.0, strict=False)
        if not all(0 <= b < 1 for b in self.adam_betas):
            raise ValueError(f"adam_betas: each must lie in [0, 1), got {self.adam_betas!r}")
        _positive_float("adam_eps", self.adam_eps)
        _positive_float("weight_decay", self.weight_decay, allow_zero=True)
        if self.lr_schedule not in ("constant", "linear", "cosine"):
            raise ValueError(
                f"lr_schedule: expected constant/linear/cosine, got {self.lr_schedule!r}"
            )
        _positive_int("warmup_steps", self.warmup_steps, 0)
        _positive_float("max_grad_norm", self.max_grad_norm, allow_zero=True)
        if self.trainable not in ("blocks", "authors"):
            raise ValueError(f"trainable: expected 'blocks' or 'authors', got {self.trainable!r}")
        if self.sft_recipe not in ("vbon", "authors"):
            raise ValueError(f"sft_recipe: expected 'vbon' or 'authors', got {self.sft_recipe!r}")
        if self.whiten_advantages not in (True, False, "authors"):
            raise ValueError(
                f"whiten_advantages: expected True, False or 'authors', got {self.whiten_advantages!r}"
            )
        if (
            isinstance(self.num_layers_unfrozen, bool)
            or not isinstance(self.num_layers_unfrozen, int)
            or self.num_layers_unfrozen < -1
        ):
            raise ValueError(
                f"num_layers_unfrozen: an integer >= 0, or -1 for all, got {self.num_layers_unfrozen!r}"
            )
        if self.m is not None:
            _positive_int("m", self.m)
        if self.max_m is not None:
            _positive_int("max_m", self.max_m)
        _positive_int("sft_groups", self.sft_groups)
        from_cache = self.method == "bond" and self.anchor_ema == 0
        if (self.method in QUANTILE_METHODS or from_cache) and self.m is not None:
            # F_hat from M samples resolves the BoN(N) target only when M >= M_PER_N N
            # (vbon.cdf): warn, since the M ablation breaks the rule on purpose.
            from vbon.cdf import check_well_posed

            used = min(self.m, self.max_m) if self.max_m is not None else self.m
            check_well_posed(used, self.n, name="max_m" if self.max_m is not None else "m")
        if self.method == "bond" and self.anchor_ema == 0 and self.n > (self.max_m or self.m):
            raise ValueError(
                f"m: bond's Best-of-N targets need at least n = {self.n} cached samples per "
                f"prompt, the cache gives {self.max_m or self.m}"
            )
        if self.method in BON_PAIR_METHODS and self.n * self.sft_groups > self.m:
            raise ValueError(
                f"m: {self.method} takes sft_groups = {self.sft_groups} group(s) of n = {self.n} "
                f"reference samples per prompt, more than m = {self.m}; raise m"
            )
        if self.max_train_prompts is not None:  # None after the defaults: every prompt, as 0
            _positive_int("max_train_prompts", self.max_train_prompts, 0)
        if self.max_new_tokens is not None:
            _positive_int("max_new_tokens", self.max_new_tokens)
        if self.temperature is not None:
            _positive_float("temperature", self.temperature)
        if self.top_k is not None:
            _positive_int("top_k", self.top_k, 0)
        check_real(self.top_p, "top_p", minimum=0.0, maximum=1.0, allow_none=True)
        for name in ("gamma", "lam"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not 0 <= value <= 1:
                raise ValueError(f"{name}: must lie in [0, 1], got {value!r}")
        for name in ("cliprange", "cliprange_value"):
            _positive_float(name, getattr(self, name))
        _positive_float("vf_coef", self.vf_coef, allow_zero=True)
        for name in ("eval_every", "save_every"):
            _positive_int(name, getattr(self, name), 0)
        for name in ("eval_prompts", "eval_k", "eval_m", "keep_checkpoints"):
            _positive_int(name, getattr(self, name))
        if self.win_method not in ("all", "first"):
            raise ValueError(f"win_method: expected 'all' or 'first', got {self.win_method!r}")
        if self.mixed_precision not in ("auto", "no", "bf16", "fp16"):
            raise ValueError(
                f"mixed_precision: expected auto/no/bf16/fp16, got {self.mixed_precision!r}"
            )
        if self.cpu_threads is not None:
            _positive_int("cpu_threads", self.cpu_threads)
        _positive_int("seed", self.seed, 0)
        _positive_int("ref_seed", self.ref_seed, 0)
        if self.run_name is not None:
            check_run_name(self.run_name)
        if self.output_dir is not None:
            check_text(self.output_dir, "output_dir", what="a directory")
        if not isinstance(self.task_overrides, dict):
            raise ValueError(f"task_overrides: expected a dict, got {self.task_overrides!r}")

    # -- identity, naming, (de)serialisation ----------------------------------------------------
    @property
    def is_rl(self) -> bool:
        """Trained online, on its own rollouts (rloo or ppo)."""
        return self.method not in OFFLINE_METHODS

    @property
    def rows_per_phase(self) -> int:
        """Rollout rows per iteration over all processes (batch_prompts * k)."""
        return self.batch_prompts * self.k

    def identity(self) -> dict[str, Any]:
        """The fields that determine what the run computes (hashed into the run name)."""
        return {
            k: v
            for k, v in self.to_dict().items()
            if k not in _NOT_IDENTITY
            and not (k in _IDENTITY_DEFAULTS and v == _IDENTITY_DEFAULTS[k])
        }

    def fingerprint(self) -> str:
        blob = json.dumps(self.identity(), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:8]

    def default_run_name(self) -> str:
        """method-algorithm-N<n>|beta<beta>-seed<s>-<hash>, e.g. vbon-rloo-N8-seed0-1a2b3c4d."""
        if self.method in BON_PAIR_METHODS or self.method in BOND_METHODS:
            head = f"{self.method}-n{self.n}"
        elif self.method == "vbon_offline":
            head = f"vbon_offline-N{self.n}"
        elif self.method == "kl_rl":
            head = f"kl_rl-{self.algorithm}-beta{self.beta:g}"
        else:
            head = f"{self.method}-{self.algorithm}-N{self.n}"
        if self.transform != "log":
            head += f"-{self.transform}" + (f"{self.transform_t:g}" if self.transform_t else "")
        if self.cdf_estimator != "add_one":
            head += f"-{self.cdf_estimator}"
        if self.kl_estimator != "k1":
            head += f"-kl{self.kl_estimator}"
        return f"{head}-seed{self.seed}-{self.fingerprint()}"

    def run_dir(self) -> Path:
        """``<output_dir>/<run_name>``; output_dir defaults to runs/<profile>/<task>/train."""
        from vbon import paths

        parent = (
            Path(self.output_dir).expanduser()
            if self.output_dir is not None
            else paths.runs_dir(self.profile) / self.task / "train"
        )
        return parent / (self.run_name or self.default_run_name())

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["adam_betas"] = list(self.adam_betas)
        return out

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=2, sort_keys=True, default=str)
        if path is not None:
            Path(path).write_text(text + "\n")
        return text

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"config: unknown field(s) {unknown}")
        return cls(**data)

    @classmethod
    def from_json(cls, path: str | Path) -> TrainConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed (re-validated).

        For vbon, N and beta are one setting: changing one of them re-derives the other.
        """
        data = self.to_dict()
        if "n" in changes and "beta" not in changes:
            data["beta"] = None if data.get("method") in QUANTILE_METHODS else data["beta"]
        if "beta" in changes and "n" not in changes:
            data["n"] = None if data.get("method") in QUANTILE_METHODS else data["n"]
        return TrainConfig.from_dict({**data, **changes})


def field_docs() -> dict[str, str]:
    """Each ``TrainConfig`` field's docstring (the string under it in the class body)."""
    import ast
    import inspect
    import textwrap

    tree = ast.parse(textwrap.dedent(inspect.getsource(TrainConfig)))
    body = tree.body[0].body
    docs: dict[str, str] = {}
    for node, nxt in zip(body, body[1:], strict=False):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
        ):
            docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs
