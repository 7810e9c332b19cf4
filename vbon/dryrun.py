"""The dry run of a long profile: ``vbon reproduce --profile paper --dry-run``.

Before hours of GPU time, check without generating anything that the run can start and say
what it will do:

1. ``resolve``: every hub model and dataset the paper profile's notebooks load (ids and pinned
   revisions from ``params/paper/*.yaml`` and the task modules' ``HUB_REVISIONS``, the gold
   reward model of notebook 07 included) is found in the local Hugging Face cache, or, online,
   on the hub. Offline (``HF_HUB_OFFLINE=1``) only the local cache counts. Each missing one is
   named with its revision and the command that downloads it.
2. ``check_gpu``: the GPU memory each notebook needs (an estimate from the models' sizes)
   against the visible GPU. With no CUDA device the dry run fails unless ``allow_cpu`` is
   given: the paper profile on a CPU would take weeks, so running it there should be a
   decision, not an accident.
3. ``plan``: per notebook, the runs (methods x N or beta x seeds), and the samples it
   generates (reference samples, rollouts, evaluation samples, BoN pools), with the projected
   time from ``benchmarks/gpu_check.py``'s measurement when one exists.
4. ``dry_run`` prints all of it and returns a non-zero exit status when something is missing.

The plan is also what ``benchmarks/gpu_check.py`` multiplies its measured rates by, so the
projected time it prints and the dry run's agree.

    from vbon.dryrun import plan, resolve, dry_run
    p = plan("paper")
    print(p.totals())
"""

from __future__ import annotations

import ast
import json
import math
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vbon import paths

__all__ = [
    "MODEL_SIZES",
    "GpuCheck",
    "ModelSize",
    "NotebookPlan",
    "Plan",
    "Resolution",
    "RunGroup",
    "Source",
    "check_configs",
    "check_gpu",
    "default_gpu_check_path",
    "download_command",
    "dry_run",
    "estimate_seconds",
    "format_plan",
    "load_gpu_check",
    "plan",
    "resolve",
]

# Rows per PPO phase that gpu_check times; estimates scale a run's phases by its own rows.
MEASURED_ROWS = 128


# -- model sizes ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelSize:
    """What the memory and time estimates need of a model."""

    params_b: float
    """Parameters, in billions."""
    layers: int
    hidden: int
    vocab: int


# From the models' config.json (hub model cards); used when the cache has no config to read.
MODEL_SIZES: dict[str, ModelSize] = {
    "lvwerra/gpt2-imdb": ModelSize(0.124, 12, 768, 50257),
    "lvwerra/distilbert-imdb": ModelSize(0.067, 6, 768, 30522),
    "cleanrl/EleutherAI_pythia-2.8b-deduped__sft__tldr": ModelSize(2.78, 32, 2560, 50304),
    "cleanrl/EleutherAI_pythia-2.8b-deduped__reward__tldr": ModelSize(2.78, 32, 2560, 50304),
    "cleanrl/EleutherAI_pythia-1b-deduped__sft__tldr": ModelSize(1.01, 16, 2048, 50304),
    "cleanrl/EleutherAI_pythia-1b-deduped__reward__tldr": ModelSize(1.01, 16, 2048, 50304),
    "cleanrl/EleutherAI_pythia-6.9b-deduped__sft__tldr": ModelSize(6.86, 32, 4096, 50432),
    "cleanrl/EleutherAI_pythia-6.9b-deduped__reward__tldr": ModelSize(6.86, 32, 4096, 50432),
    "mnoukhov/pythia410m-sft-tldr": ModelSize(0.405, 24, 1024, 50304),
    "mnoukhov/pythia410m-rm-tldr6.9b": ModelSize(0.405, 24, 1024, 50304),
}


def _size_from_config(path: Path) -> ModelSize | None:
    """A model's size from its config.json (GPT-2, GPTNeoX, DistilBERT and Llama-style keys)."""
    try:
        cfg = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    layers = cfg.get("num_hidden_layers") or cfg.get("n_layer") or cfg.get("n_layers")
    hidden = cfg.get("hidden_size") or cfg.get("n_embd") or cfg.get("dim")
    vocab = cfg.get("vocab_size")
    if not (isinstance(layers, int) and isinstance(hidden, int) and isinstance(vocab, int)):
        return None
    # 12 L h^2 (attention + a 4h MLP) plus the embeddings: within ~10% for these families.
    return ModelSize((12 * layers * hidden**2 + vocab * hidden) / 1e9, layers, hidden, vocab)


# -- the plan ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Source:
    """One hub repository a notebook loads."""

    repo_id: str
    repo_type: str
    """"model" or "dataset"."""
    revision: str | None
    """The pinned commit; None: unpinned (the hub's current main)."""
    role: str
    """What the notebooks use it as: policy, reward, dataset, gold reward."""

    @property
    def label(self) -> str:
        rev = self.revision[:12] if self.revision else "main (unpinned)"
        return f"{self.repo_type} {self.repo_id} @ {rev}"


@dataclass(frozen=True)
class RunGroup:
    """The runs of one method at one N (or beta), one per seed."""

    method: str
    setting: str
    seeds: int
    algorithm: str | None
    steps: int
    """Rollout phases (RL) or optimiser steps (bon_sft) per run."""
    rows_per_phase: int
    """Rollouts per phase (RL) or examples per step (bon_sft)."""
    evaluations: int
    """Evaluations per run (test prompts x eval_k samples each)."""
    eval_samples: int
    """Policy samples drawn by evaluation, per run."""
    trained_here: bool = True
    """False: the notebook loads runs an earlier notebook trained."""

    @property
    def rollouts(self) -> int:
        return self.seeds * self.steps * self.rows_per_phase if self.algorithm else 0


@dataclass
class NotebookPlan:
    """What one notebook loads, trains and generates."""

    notebook: str
    task: str
    sources: list[Source] = field(default_factory=list)
    runs: list[RunGroup] = field(default_factory=list)
    reference_samples: int = 0
    """New pi_ref samples of reference caches (F_hat, win rates, studies)."""
    bon_pool_samples: int = 0
    """Fresh pi_ref samples of BoN pools."""
    other_samples: int = 0
    """Policy samples outside training (temperature sweeps, gold re-scoring, shown examples)."""
    gpu_gib: float = 0.0
    """Estimated peak GPU memory (GiB)."""
    gpu_basis: str = ""
    """How ``gpu_gib`` was derived."""
    measured_as: str = ""
    """The gpu_check rate the time estimate uses ("imdb" or "tldr")."""
    policy_params_b: float | None = None
    """The policy's parameters (billions): times scale with it over the measured model's."""
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    """Configuration errors the notebook would stop at (found without loading anything)."""

    @property
    def rollouts(self) -> int:
        return sum(g.rollouts for g in self.runs if g.trained_here)

    @property
    def phases(self) -> int:
        """RL phases trained here, in units of the measured phase (128 rollouts)."""
        return sum(
            g.seeds * g.steps * g.rows_per_phase / MEASURED_ROWS
            for g in self.runs
            if g.trained_here and g.algorithm
        )

    @property
    def sft_steps(self) -> int:
        return sum(g.seeds * g.steps for g in self.runs if g.trained_here and not g.algorithm)

    @property
    def eval_samples(self) -> int:
        return sum(g.seeds * g.eval_samples for g in self.runs if g.trained_here)

    @property
    def generated(self) -> int:
        """Every sample generated outside the rollouts."""
        return (
            self.reference_samples + self.bon_pool_samples + self.eval_samples + self.other_samples
        )


@dataclass
class Plan:
    """The notebooks of one profile, in order."""

    profile: str
    notebooks: list[NotebookPlan]

    def sources(self) -> list[Source]:
        """Every hub source once (first notebook's role), in order of first use."""
        seen: dict[tuple[str, str, str | None], Source] = {}
        for nb in self.notebooks:
            for s in nb.sources:
                seen.setdefault((s.repo_type, s.repo_id, s.revision), s)
        return list(seen.values())

    def users(self, source: Source) -> list[str]:
        """The notebooks (numbers) that load ``source``."""
        return [
            nb.notebook[:2]
            for nb in self.notebooks
            if any(
                (s.repo_type, s.repo_id, s.revision)
                == (source.repo_type, source.repo_id, source.revision)
                for s in nb.sources
            )
        ]

    def totals(self) -> dict[str, int]:
        keys = ("reference_samples", "bon_pool_samples", "eval_samples", "other_samples")
        out = {k: sum(getattr(nb, k) for nb in self.notebooks) for k in keys}
        out["rollouts"] = sum(nb.rollouts for nb in self.notebooks)
        out["runs"] = sum(g.seeds for nb in self.notebooks for g in nb.runs if g.trained_here)
        return out


def notebook_defaults(notebook: Path) -> dict[str, Any]:
    """The literal defaults of a notebook's ``parameters`` cell (what papermill overrides)."""
    nb = json.loads(notebook.read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            out: dict[str, Any] = {}
            for node in ast.parse("".join(cell["source"])).body:
                target = node.target if isinstance(node, ast.AnnAssign) else None
                if isinstance(node, ast.Assign) and len(node.targets) == 1:
                    target = node.targets[0]
                if isinstance(target, ast.Name) and node.value is not None:
                    out[target.id] = ast.literal_eval(node.value)
            return out
    raise ValueError(f"notebook: {notebook.name} has no cell tagged 'parameters'")


def _parameters(notebook: Path, profile: str) -> dict[str, Any]:
    from vbon.reproduce import notebook_parameters

    return {**notebook_defaults(notebook), **notebook_parameters(notebook, profile)}


def _evaluations(config: Any) -> int:
    """How many evaluations ``vbon.train.loop`` runs for ``config`` (start, every, final)."""
    if not config.evaluate:
        return 0
    every = config.eval_every or 0
    during = len([s for s in range(1, config.steps) if every and s % every == 0])
    return int(config.eval_at_start) + during + 1


def _groups(configs: Sequence[Any], trained_here: bool = True) -> list[RunGroup]:
    """``configs`` grouped by method and N/beta (one group per setting, its seeds counted)."""
    groups: dict[tuple, RunGroup] = {}
    for c in configs:
        if c.method == "kl_rl":
            setting = f"beta={c.beta:g}"
        else:
            setting = f"{'n' if c.method in ('bon_sft', 'bonbon') else 'N'}={c.n}"
        if getattr(c, "max_m", None):
            setting += f" M={c.max_m}"
        from vbon.findings import variant_label

        setting += variant_label(c)
        rl = c.is_rl
        key = (c.method, setting)
        evals = _evaluations(c)
        if key in groups:
            g = groups[key]
            groups[key] = RunGroup(**{**g.__dict__, "seeds": g.seeds + 1})
            continue
        groups[key] = RunGroup(
            method=c.method,
            setting=setting,
            seeds=1,
            algorithm=c.algorithm if rl else None,
            steps=c.steps,
            rows_per_phase=c.rows_per_phase if rl else c.batch_prompts,
            evaluations=evals,
            eval_samples=evals * c.eval_prompts * c.eval_k,
            trained_here=trained_here,
        )
    return list(groups.values())


def _task_sources(
    task: str, overrides: dict[str, Any], extra_reward: str | None = None
) -> list[Source]:
    """The hub sources ``get_task(task, "paper", **overrides)`` loads (nothing is loaded)."""
    from vbon.tasks import UnpinnedRevisionWarning, hub_revisions, imdb, tldr

    module = {"imdb": imdb, "tldr": tldr}[task]
    with warnings.catch_warnings():  # unpinned sources are reported by the plan itself
        warnings.simplefilter("ignore", UnpinnedRevisionWarning)
        # The task modules' own source table (what make_task loads on the paper profile).
        sources = module._sources("paper", overrides)
        revisions = hub_revisions(task, "paper", **overrides)
        out = [
            Source(
                str(sources["policy"]),
                "model",
                revisions.get("policy_revision"),
                "policy, pi_ref, tokenizer",
            ),
            Source(
                str(sources["reward"]), "model", revisions.get("reward_revision"), "reward model"
            ),
            Source(
                str(sources["dataset"]), "dataset", revisions.get("dataset_revision"), "prompts"
            ),
        ]
        if sources.get("reference") not in (None, sources["policy"]):
            out.insert(
                1,
                Source(
                    str(sources["reference"]),
                    "model",
                    revisions.get("reference_revision"),
                    "pi_ref",
                ),
            )
        if extra_reward:
            gold = hub_revisions(task, "paper", **{**overrides, "reward_id": extra_reward})
            out.append(
                Source(extra_reward, "model", gold.get("reward_revision"), "gold reward model")
            )
    return [s for s in out if not Path(s.repo_id).expanduser().exists()]  # local dirs: no hub


def _size(repo_id: str, hub_cache: Path | None = None) -> ModelSize | None:
    if repo_id in MODEL_SIZES:
        return MODEL_SIZES[repo_id]
    local = Path(repo_id).expanduser() / "config.json"
    if local.is_file():
        return _size_from_config(local)
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(repo_id, "config.json", cache_dir=hub_cache)
    except Exception:  # noqa: BLE001 - an unreadable cache only loses the size
        return None
    return _size_from_config(Path(found)) if isinstance(found, str) else None


def _gib(x: float) -> float:
    return x / 2**30


def _memory(
    policy: ModelSize | None,
    rewards: Sequence[ModelSize | None],
    *,
    train_layers: int,
    rows: int,
    minibatch: int,
    tokens: int,
) -> tuple[float, str]:
    """Estimated peak GPU memory (GiB) of sampling (``train_layers=0``) or training.

    fp32 weights (the checkpoints' dtype; bf16 ones take half) of the policy and the reward
    models; for training AdamW state and gradients of the top ``train_layers`` blocks (12
    bytes a parameter), their activations in bf16 (34 s b h bytes a layer, Korthikanti et al.)
    for one minibatch, and fp32 logits with their gradient; the KV cache of a rollout of
    ``rows`` sequences of ``tokens``. Plus 20% for the allocator and workspaces. A rough guide
    (+-50%), not a promise.
    """
    if policy is None:
        return math.nan, "unknown model size"
    weights = 4 * 1e9 * (policy.params_b + sum(r.params_b for r in rewards if r is not None))
    kv = 2 * policy.layers * policy.hidden * tokens * rows * 2
    train = 0.0
    if train_layers:
        k = policy.layers if train_layers < 0 else min(train_layers, policy.layers)
        trainable = 1e9 * policy.params_b * k / policy.layers
        act = 34 * tokens * minibatch * policy.hidden * k
        logits = 2 * 4 * tokens * minibatch * policy.vocab
        train = 12 * trainable + act + logits
    total = 1.2 * (weights + kv + train)
    basis = (
        f"weights {_gib(weights):.1f} + KV cache {_gib(kv):.1f}"
        + (f" + training {_gib(train):.1f}" if train_layers else "")
        + " GiB, +20%"
    )
    return _gib(total), basis


def _check_spec(nb: NotebookPlan, build: Callable[[], Any], what: str) -> Any:
    """``build()``, or None with the error recorded on ``nb`` (the notebook would stop there)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return build()
    except (ValueError, TypeError, KeyError) as exc:
        nb.errors.append(f"{what}: {exc}")
        return None


def plan(profile: str = "paper") -> Plan:
    """What each notebook of ``profile`` loads, trains and generates, from its parameters
    (notebook defaults, then ``params/<profile>/<notebook>.yaml``) and the experiment specs.

    Nothing is loaded or generated. Only the paper profile has hub sources; the others run the
    local toy worlds and have nothing to plan here.
    """
    if profile != "paper":
        raise ValueError(
            f"profile: the dry run plans the paper profile (hub models, GPU), got {profile!r}; "
            "smoke and converged run the local toy worlds and need no dry run"
        )
    from vbon.reproduce import notebook_sequence

    notebooks = {p.name[:2]: p for p in notebook_sequence()}
    out: list[NotebookPlan] = []
    for number in ("02", "03", "04"):
        if number in notebooks:
            out.append(_plan_imdb(notebooks[number], profile))
    for number in ("05", "06", "07"):
        if number in notebooks:
            out.append(_plan_tldr(notebooks[number], profile))
    if "08" in notebooks:
        out.append(_plan_beyond(notebooks["08"], profile))
    return Plan(profile, out)


def _plan_beyond(notebook: Path, profile: str) -> NotebookPlan:
    """Notebook 08: offline vBoN at the IMDB spec's N grid (from notebook 02's cache) and the
    cost-of-F runs (their own cache of ``cost_m`` references on ``cost_prompts`` prompts); the
    enumerable world's runs are CPU-sized and only checked."""
    from vbon.experiment import experiment
    from vbon.quantile import m_cost_configs, online_offline_configs

    params = _parameters(notebook, profile)
    nb = _plan_imdb(notebook, profile)  # the sweep (loaded) and the GPU memory estimate
    spec = _check_spec(
        nb, lambda: experiment("imdb", profile, **params.get("experiment", {})), "experiment"
    )
    if spec is None:
        return nb
    nb.runs = [RunGroup(**{**g.__dict__, "trained_here": False}) for g in nb.runs]
    nb.bon_pool_samples = nb.other_samples = 0
    offline = [
        spec.base_config("vbon_offline", n=n, offline_log_z="references", seed=s)
        for n in spec.n_grid
        for s in spec.seeds
    ]
    exp_t = params.get("exp_t")
    transforms = [(t, exp_t if t == "exp" else None) for t in params.get("cost_transforms", [])]

    def cost_configs() -> list[Any]:
        return m_cost_configs(
            spec,
            n=params["cost_n"],
            m=params["cost_m"],
            train_prompts=params["cost_prompts"],
            m_grid=params["cost_m_grid"],
            transforms=transforms,
            estimators=params["cost_estimators"],
        )

    nb.runs += _groups(offline) + _groups(_check_spec(nb, cost_configs, "cost-of-F configs") or [])
    nb.reference_samples = params["cost_prompts"] * params["cost_m"]
    nb.notes = [
        f"cost-of-F cache {params['cost_prompts']} x M={params['cost_m']}; offline vBoN on "
        "notebook 02's cache; the sweep: notebook 03's runs (loaded)"
    ]

    def enumerable_configs() -> list[Any]:
        enum = experiment("enumerable", profile, **params.get("enumerable", {}))
        kinds = [(t, exp_t if t == "exp" else None) for t in params.get("enum_transforms", [])]
        return online_offline_configs(enum, n=params["enum_n"], transforms=kinds)

    _check_spec(nb, enumerable_configs, "the enumerable world's runs")
    return nb


def _plan_imdb(notebook: Path, profile: str) -> NotebookPlan:
    from vbon.experiment import experiment

    params = _parameters(notebook, profile)
    nb = NotebookPlan(notebook.stem, "imdb", measured_as="imdb")
    spec = _check_spec(
        nb, lambda: experiment("imdb", profile, **params.get("experiment", {})), "experiment"
    )
    if spec is None:
        return nb
    nb.sources = _task_sources("imdb", dict(spec.task_overrides))
    policy = _size(nb.sources[0].repo_id) if nb.sources else None
    nb.policy_params_b = policy.params_b if policy is not None else None
    reward = _size(nb.sources[1].repo_id) if len(nb.sources) > 1 else None
    tokens = 8 + 40  # a prompt of 2..8 tokens, 40 new ones
    number = notebook.stem[:2]
    if number == "02":
        m_max = max(params.get("m_grid", [0]))
        study = params.get("study_prompts", 0) * (m_max + params.get("study_heldout", 0))
        nb.reference_samples = spec.train_prompts * spec.m + spec.test_prompts * spec.eval_m + study
        nb.notes.append(
            f"train cache {spec.train_prompts} x M={spec.m}, test cache {spec.test_prompts} x "
            f"{spec.eval_m}, F_hat study {params.get('study_prompts')} x {m_max}+{params.get('study_heldout')}"
        )
        nb.gpu_gib, nb.gpu_basis = _memory(
            policy, [reward], train_layers=0, rows=512, minibatch=0, tokens=tokens
        )
        return nb
    configs = _check_spec(nb, spec.sweep_configs, "sweep configs") or []
    if number == "03":
        nb.runs = _groups(configs)
        nb.notes.append("reference caches: notebook 02's (loaded, built here when missing)")
    else:
        ablation = _check_spec(nb, spec.ablation_configs, "ablation configs") or []
        nb.runs = _groups(configs, trained_here=False) + _groups(ablation)
        pool = int(params.get("bon_pool", 0))
        nb.bon_pool_samples = spec.test_prompts * pool
        shown = int(params.get("show_prompts", 0))
        nb.other_samples = shown * len(_groups(configs))  # side-by-side samples per config
        nb.notes.append(
            f"BoN pool {spec.test_prompts} x {pool}; sweep runs: notebook 03's (loaded)"
        )

        # The enumerable world's sweep (its own spec and N grid, as notebook 04 builds it) runs
        # in seconds per run, but its spec and configs must exist on this profile too.
        def enumerable_configs() -> list[Any]:
            enum = experiment("enumerable", profile)
            return enum.sweep_configs(exact_n=enum.n_grid)

        _check_spec(nb, enumerable_configs, "the enumerable world's sweep")
    first = configs[0] if configs else None
    layers = first.num_layers_unfrozen if first is not None else 2
    mb = (first.mini_batch_size or first.rows_per_phase) if first is not None else 32
    nb.gpu_gib, nb.gpu_basis = _memory(
        policy, [reward], train_layers=layers, rows=MEASURED_ROWS, minibatch=mb, tokens=tokens
    )
    return nb


def _plan_tldr(notebook: Path, profile: str) -> NotebookPlan:
    from vbon.experiment import experiment

    p = _parameters(notebook, profile)
    nb = NotebookPlan(notebook.stem, "tldr", measured_as="tldr")
    spec = _check_spec(
        nb, lambda: experiment("tldr", profile, **p.get("experiment", {})), "experiment"
    )
    if spec is None:
        return nb
    overrides = dict(spec.task_overrides)
    gold_id = p.get("gold_reward_id") or None
    nb.sources = _task_sources("tldr", overrides, extra_reward=gold_id)
    policy = _size(nb.sources[0].repo_id)
    rewards = [
        _size(s.repo_id) for s in nb.sources if s.repo_type == "model" and "reward" in s.role
    ]
    nb.policy_params_b = policy.params_b if policy is not None else None
    tokens = 550 + 50  # prompts of up to 512 policy tokens (about 550 with the cue), 50 new
    number = notebook.stem[:2]
    if number == "05":
        nb.reference_samples = spec.train_prompts * spec.m + spec.test_prompts * spec.eval_m
        nb.notes.append(
            f"train cache {spec.train_prompts} x M={spec.m}, test cache {spec.test_prompts} x "
            f"{spec.eval_m}"
        )
        nb.gpu_gib, nb.gpu_basis = _memory(
            policy, rewards[:1], train_layers=0, rows=128, minibatch=0, tokens=tokens
        )
        return nb
    # The grid notebooks 06 and 07 build: the spec's sweep, the exact reward at every N.
    built = _check_spec(nb, lambda: spec.sweep_configs(exact_n=spec.n_grid), "sweep configs") or []
    if number == "06":
        nb.runs = _groups(built)
        nb.notes.append("reference caches: notebook 05's (loaded, built here when missing)")
        first = next((c for c in built if c.method != "bon_sft"), None)
        layers = first.num_layers_unfrozen if first is not None else 8
        mb = (first.mini_batch_size or first.rows_per_phase) if first is not None else 32
        nb.gpu_gib, nb.gpu_basis = _memory(
            policy,
            rewards[:1],
            train_layers=layers,
            rows=MEASURED_ROWS,
            minibatch=mb,
            tokens=tokens,
        )
        return nb
    nb.runs = _groups(built, trained_here=False)
    n_main = max(spec.n_grid)
    swept = [
        c
        for c in built
        if (c.method == "kl_rl" and abs(c.beta - 1 / (n_main - 1)) < 1e-12)
        or (c.method != "kl_rl" and c.n == n_main)
    ]
    temps = list(p["temperatures"])
    t_train = 0.7
    new_refs = sum(1 for t in temps if t != t_train)  # the training temperature's is 05's
    k = swept[0].eval_k if swept else 4
    nb.reference_samples = new_refs * spec.test_prompts * spec.eval_m
    nb.bon_pool_samples = len(temps) * spec.test_prompts * p["bon_pool"]
    nb.other_samples = len(temps) * len(swept) * spec.test_prompts * k
    nb.notes.append(
        f"{len(temps)} temperatures x (BoN pool {spec.test_prompts} x {p['bon_pool']}, "
        f"{len(swept)} runs at N = {n_main} x {spec.test_prompts} x {k} policy samples); "
        f"test caches at {new_refs} new temperatures; runs: notebook 06's (loaded)"
    )
    if gold_id:
        nb.reference_samples += spec.test_prompts * spec.eval_m  # the gold RM's test cache
        nb.other_samples += 2 * len(swept) * spec.test_prompts * k
        nb.notes.append(f"gold RM {gold_id}: a test cache and every run re-evaluated")
    nb.gpu_gib, nb.gpu_basis = _memory(
        policy, rewards, train_layers=0, rows=128, minibatch=0, tokens=tokens
    )
    return nb


# -- resolution ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Resolution:
    """Where one source was found: "local" (the HF cache), "hub" (online, to download) or
    "missing"."""

    source: Source
    status: str
    detail: str = ""


def _offline() -> bool:
    from huggingface_hub import constants

    flag = os.environ.get("HF_DATASETS_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")
    return bool(constants.HF_HUB_OFFLINE) or flag


def _caches(hf_home: str | os.PathLike | None) -> tuple[Path, Path]:
    """(hub cache, datasets cache): under ``hf_home`` when given, else the configured ones."""
    if hf_home is not None:
        root = Path(hf_home).expanduser()
        return root / "hub", root / "datasets"
    from huggingface_hub import constants

    datasets_cache = os.environ.get("HF_DATASETS_CACHE") or str(
        Path(constants.HF_HOME) / "datasets"
    )
    return Path(constants.HF_HUB_CACHE), Path(datasets_cache).expanduser()


_WEIGHTS = (".safetensors", ".bin", ".safetensors.index.json", ".bin.index.json", ".pt", ".gguf")


def _resolve_model(source: Source, hub_cache: Path) -> tuple[bool, str]:
    """Whether the hub cache holds the model at its revision (config and weights)."""
    from huggingface_hub import snapshot_download

    try:
        path = Path(
            snapshot_download(
                source.repo_id,
                revision=source.revision,
                cache_dir=hub_cache,
                local_files_only=True,
            )
        )
    except Exception as exc:  # noqa: BLE001 - LocalEntryNotFoundError and kin: not cached
        return False, f"not in {paths.shown(hub_cache)} ({type(exc).__name__})"
    if not (path / "config.json").is_file():
        return False, f"snapshot {path.name[:12]} has no config.json (an interrupted download?)"
    if not any(f.name.endswith(_WEIGHTS) for f in path.iterdir()):
        return False, f"snapshot {path.name[:12]} has no weight files (an interrupted download?)"
    return True, f"snapshot {path.name[:12]}"


def _resolve_dataset(source: Source, datasets_cache: Path) -> tuple[bool, str]:
    """Whether ``datasets.load_dataset`` finds the dataset offline: its prepared cache
    ``<cache>/<owner>___<name>/<config>/<version>/<commit>/`` (the layout and config-name check
    of datasets' own offline lookup), at the pinned commit when there is one."""
    from datasets.naming import camelcase_to_snakecase

    parts = source.repo_id.split("/")
    parts[-1] = camelcase_to_snakecase(parts[-1])
    root = datasets_cache / "___".join(parts)
    found = []
    for d in sorted(root.glob("*/*/*")):
        info = d / "dataset_info.json"
        if not (d.is_dir() and info.is_file()):
            continue
        try:
            config = json.loads(info.read_text()).get("config_name")
        except ValueError:
            continue
        if config == d.parts[-3]:
            found.append(d)
    if not found:
        return False, f"not in the datasets cache {paths.shown(datasets_cache)}"
    if source.revision is None:
        return True, f"prepared cache {found[-1].name[:12]}"
    pinned = [d for d in found if d.name == source.revision]
    if pinned:
        return True, f"prepared cache {source.revision[:12]}"
    others = ", ".join(sorted({d.name[:12] for d in found}))
    return False, (
        f"cached at other revision(s) {others}, not {source.revision[:12]} (offline, "
        "load_dataset would silently use the newest cached one)"
    )


def _on_hub(source: Source) -> tuple[bool, str]:
    from huggingface_hub import HfApi

    api = HfApi()
    try:
        info = (api.model_info if source.repo_type == "model" else api.dataset_info)(
            source.repo_id, revision=source.revision, timeout=30
        )
    except Exception as exc:  # noqa: BLE001 - any failure: cannot be resolved on the hub
        return (
            False,
            f"not on the hub either ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})",
        )
    return True, f"on the hub at {str(info.sha)[:12]}, downloaded on first use"


def resolve(
    sources: Sequence[Source],
    *,
    hf_home: str | os.PathLike | None = None,
    offline: bool | None = None,
    progress: bool = False,
) -> list[Resolution]:
    """Find each source in the local HF cache, else (online) on the hub.

    ``hf_home``: the cache root to look in (default: the configured ``HF_HOME`` /
    ``HF_HUB_CACHE`` / ``HF_DATASETS_CACHE``); ``offline``: default from ``HF_HUB_OFFLINE`` /
    ``HF_DATASETS_OFFLINE`` (then only the local cache counts).
    """
    from tqdm.auto import tqdm

    hub_cache, datasets_cache = _caches(hf_home)
    offline = _offline() if offline is None else offline
    out = []
    for s in tqdm(sources, desc="resolve", unit="source", disable=not progress):
        if s.repo_type == "model":
            ok, detail = _resolve_model(s, hub_cache)
        else:
            ok, detail = _resolve_dataset(s, datasets_cache)
        if ok:
            out.append(Resolution(s, "local", detail))
            continue
        if offline:
            out.append(Resolution(s, "missing", detail + "; offline, so the hub was not asked"))
            continue
        on_hub, hub_detail = _on_hub(s)
        out.append(Resolution(s, "hub" if on_hub else "missing", f"{detail}; {hub_detail}"))
    return out


def download_command(source: Source) -> str:
    """The command that puts ``source`` where the notebooks look for it (run it online)."""
    if source.repo_type == "model":
        rev = f" --revision {source.revision}" if source.revision else ""
        return f"hf download {source.repo_id}{rev}"
    rev = f", revision='{source.revision}'" if source.revision else ""
    # load_dataset, not `hf download --repo-type dataset`: offline, datasets reads its own
    # prepared cache (HF_DATASETS_CACHE), which only a load fills. Hub ids and shas hold no
    # quotes, so single quotes inside double ones are safe in any POSIX shell.
    return f"python -c \"import datasets; datasets.load_dataset('{source.repo_id}'{rev})\""


# -- GPU -------------------------------------------------------------------------------------------
@dataclass
class GpuCheck:
    """The visible GPU against each notebook's estimated need."""

    ok: bool
    device: str
    total_gib: float
    lines: list[str]


def check_gpu(plan_: Plan, *, allow_cpu: bool = False) -> GpuCheck:
    """Compare each notebook's ``gpu_gib`` with the memory of CUDA device 0.

    No CUDA device: not ok unless ``allow_cpu`` (then the lines say what that means).
    """
    import torch

    lines = []
    if not torch.cuda.is_available():
        if allow_cpu:
            lines.append(
                "no CUDA device visible; accepted (--allow-cpu): the paper profile will run on "
                "the CPU, orders of magnitude slower than the estimates below"
            )
        else:
            lines.append(
                "no CUDA device visible (torch.cuda.is_available() is False): the paper profile "
                "needs a GPU. Run on a GPU machine, or pass --allow-cpu to accept a CPU run"
            )
        return GpuCheck(allow_cpu, "cpu", 0.0, lines)
    props = torch.cuda.get_device_properties(0)
    total = props.total_memory / 2**30
    ok = True
    for nb in plan_.notebooks:
        if math.isnan(nb.gpu_gib):
            lines.append(f"{nb.notebook}: memory need unknown ({nb.gpu_basis})")
            continue
        fits = nb.gpu_gib <= total
        ok &= fits
        verdict = "fits" if fits else 'DOES NOT FIT (try variant: "1b" or "410m" for TL;DR)'
        lines.append(f"{nb.notebook}: needs ~{nb.gpu_gib:.1f} GiB of {total:.0f} GiB: {verdict}")
    return GpuCheck(ok, props.name, total, lines)


# -- time -----------------------------------------------------------------------------------------
def default_gpu_check_path() -> Path:
    """Where ``benchmarks/gpu_check.py`` writes its figures by default."""
    return paths.runs_dir("paper") / "gpu_check.json"


def load_gpu_check(path: str | os.PathLike | None = None) -> dict[str, Any] | None:
    """The gpu_check JSON at ``path`` (default: :func:`default_gpu_check_path`), or None."""
    path = Path(path) if path is not None else default_gpu_check_path()
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    return data if isinstance(data.get("rates"), dict) else None


def estimate_seconds(nb: NotebookPlan, rates: dict[str, dict[str, float]]) -> float | None:
    """Projected wall seconds of ``nb`` from gpu_check's measured rates, or None without them.

    Generated samples (reference caches, BoN pools, evaluations) at the measured reference
    sampling rate, RL phases at the measured PPO phase time (scaled by each run's rollouts per
    phase), BoN-SFT steps at one PPO minibatch's backward time; all scaled by the policy's
    size over the measured model's (``params_M``: the 1B measurement stands for the 2.8B
    variant at 2.75 times its time). Scoring by the task's reward model, loading and
    checkpoints are not in the measurement: read it as a lower bound.
    """
    r = rates.get(nb.measured_as)
    if not r or not r.get("sample_s") or not r.get("phase_s"):
        return None
    seconds = nb.generated * r["sample_s"] + nb.phases * r["phase_s"]
    seconds += nb.sft_steps * r.get("sft_step_s", 0.0)
    scale = 1.0
    if nb.policy_params_b and r.get("params_M"):
        scale = nb.policy_params_b * 1e3 / r["params_M"]
    return seconds * scale


def _hms(seconds: float) -> str:
    h, rest = divmod(int(round(seconds)), 3600)
    return f"{h}h{rest // 60:02d}m" if h else f"{rest // 60}m{rest % 60:02d}s"


def format_plan(plan_: Plan, rates: dict[str, dict[str, float]] | None = None) -> str:
    """The plan as text: per notebook its runs, samples, memory and (with rates) time."""
    lines = [f"plan of the {plan_.profile} profile:"]
    total = 0.0
    for nb in plan_.notebooks:
        lines.append(f"  {nb.notebook}")
        loaded = [g for g in nb.runs if not g.trained_here]
        if loaded:
            methods = sorted({g.method for g in loaded})
            lines.append(
                f"    loads {sum(g.seeds for g in loaded)} runs an earlier notebook trained "
                f"({', '.join(methods)}; {len(loaded)} settings)"
            )
        for g in nb.runs:
            if not g.trained_here:
                continue
            where = "trains"
            what = (
                f"{g.algorithm} {g.steps} phases x {g.rows_per_phase} rollouts"
                if g.algorithm
                else f"{g.steps} steps x {g.rows_per_phase} examples"
            )
            lines.append(
                f"    {where} {g.method:10s} {g.setting:14s} x {g.seeds} seed(s): {what}, "
                f"{g.evaluations} evaluations ({g.eval_samples:,} samples) each"
            )
        lines.append(
            f"    samples: reference {nb.reference_samples:,}, rollouts {nb.rollouts:,}, "
            f"evaluation {nb.eval_samples:,}, BoN pools {nb.bon_pool_samples:,}, other "
            f"{nb.other_samples:,}"
        )
        for note in nb.notes:
            lines.append(f"    ({note})")
        lines.append(f"    GPU memory: ~{nb.gpu_gib:.1f} GiB ({nb.gpu_basis})")
        if rates is not None:
            sec = estimate_seconds(nb, rates)
            if sec is None:
                lines.append("    time: no gpu_check rate for this task")
            else:
                total += sec
                lines.append(f"    time: ~{_hms(sec)} (from gpu_check's rates)")
        for err in nb.errors:
            lines.append(f"    ERROR: {err}")
    t = plan_.totals()
    lines.append(
        f"  total: {t['runs']} runs trained, {t['rollouts']:,} rollouts, "
        f"{t['reference_samples']:,} reference samples, {t['eval_samples']:,} evaluation "
        f"samples, {t['bon_pool_samples']:,} BoN pool samples, {t['other_samples']:,} other"
    )
    if rates is not None:
        lines.append(f"  projected wall time: ~{_hms(total)} (a lower bound; see gpu_check.py)")
    return "\n".join(lines)


def check_configs(plan_: Plan) -> list[str]:
    """The configuration errors the notebooks would stop at, as ``"<notebook>: <error>"``."""
    return [f"{nb.notebook}: {e}" for nb in plan_.notebooks for e in nb.errors]


# -- the whole dry run ------------------------------------------------------------------------------
def dry_run(
    profile: str = "paper",
    *,
    allow_cpu: bool = False,
    gpu_check: str | os.PathLike | None = None,
    hf_home: str | os.PathLike | None = None,
    offline: bool | None = None,
    echo: Callable[[str], Any] = print,
) -> int:
    """Resolve, check the GPU, print the plan; 0 when the run can start, 1 otherwise.

    ``gpu_check``: the measurement to project times from (default
    ``runs/paper/gpu_check.json``); ``hf_home`` / ``offline``: see :func:`resolve`.
    """
    p = plan(profile)
    offline = _offline() if offline is None else offline
    failures: list[str] = []

    echo(
        f"[vbon] dry run of the {profile} profile ({'offline: local cache only' if offline else 'online'})"
    )
    echo("1. hub sources (models and datasets the notebooks load):")
    resolutions = resolve(p.sources(), hf_home=hf_home, offline=offline)
    for r in resolutions:
        mark = {"local": "ok     ", "hub": "online ", "missing": "MISSING"}[r.status]
        users = ",".join(p.users(r.source))
        echo(f"   {mark} {r.source.label} [{r.source.role}; notebooks {users}]: {r.detail}")
        if r.source.revision is None:
            echo("           (unpinned: loads the hub's current main; results can change with it)")
    missing = [r for r in resolutions if r.status == "missing"]
    for r in missing:
        failures.append(
            f"missing {r.source.repo_type} {r.source.repo_id} (revision "
            f"{r.source.revision or 'main'}): {download_command(r.source)}"
        )

    echo("2. GPU:")
    gpu = check_gpu(p, allow_cpu=allow_cpu)
    echo(f"   device: {gpu.device}" + (f", {gpu.total_gib:.0f} GiB" if gpu.total_gib else ""))
    for line in gpu.lines:
        echo(f"   {line}")
    if not gpu.ok:
        failures.append(gpu.lines[0] if gpu.device == "cpu" else "a notebook does not fit the GPU")

    echo("3. plan:")
    measurement = load_gpu_check(gpu_check)
    where = Path(gpu_check) if gpu_check is not None else default_gpu_check_path()
    if measurement is None:
        echo(
            f"   no gpu_check measurement at {paths.shown(where)}: no time estimate. Measure on "
            f"the GPU machine with `python benchmarks/gpu_check.py` (about 4 minutes, under 8; it writes "
            f"{paths.shown(default_gpu_check_path())})"
        )
    else:
        echo(
            f"   times from {paths.shown(where)} (measured on {measurement.get('device', '?')}, "
            f"tiny={measurement.get('tiny')})"
        )
        if measurement.get("tiny"):
            echo("   (tiny models: these times mean nothing; run gpu_check.py on the GPU machine)")
    echo(format_plan(p, measurement["rates"] if measurement else None))
    failures += [f"configuration: {e}" for e in check_configs(p)]

    if failures:
        echo(f"[vbon] dry run FAILED ({len(failures)} problem(s)):")
        for f in failures:
            echo(f"  - {f}")
        return 1
    echo("[vbon] dry run passed: every source resolves and the plan is above")
    return 0
