"""Bad inputs: each gets a ValueError whose message starts with the parameter's name, raised
before any model, tokenizer, world or dataset is loaded (where one would be)."""

from __future__ import annotations

import math
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vbon import bon, cdf, evaluate, objectives
from vbon.generation import sample
from vbon.params import check_parameters
from vbon.reference import ReferenceSpec, build_task_reference
from vbon.tasks import DatasetNotFoundError, SamplingConfig, get_task
from vbon.train import TrainConfig, train
from vbon.train.sweep import grid, run_sweep

_OUT = tempfile.mkdtemp(prefix="vbon-bad-inputs-")  # run directories of the train() cases


class NoModels:
    """A task whose models must not be loaded: every argument is checked first."""

    name, profile = "imdb", "smoke"
    train_prompts, test_prompts = ["a b", "b c", "c d"], ["d e"]
    sampling = SamplingConfig(max_new_tokens=4)
    reward_id = reference_id = "tiny"
    reward_kwargs: dict = {}
    revisions: dict = {}
    cpu_threads = None

    def load_reference(self, **kwargs: Any) -> Any:
        raise AssertionError("a model was loaded before the arguments were checked")

    load_reward_model = load_reference


@pytest.fixture
def no_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    """Worlds, datasets and tokenizers raise AssertionError if get_task reaches them."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("get_task loaded something before checking its overrides")

    import vbon.toy
    from vbon.tasks import base, imdb, tldr

    monkeypatch.setattr(vbon.toy, "build_world", refuse)
    monkeypatch.setattr(base, "load_dataset_dict", refuse)
    for module in (imdb, tldr):
        monkeypatch.setattr(module, "load_dataset_dict", refuse)
        monkeypatch.setattr(module, "load_tokenizer", refuse)


def _ref(**kw: Any) -> Callable[[], Any]:
    return lambda: build_task_reference(NoModels(), **{"split": "train", "m": 4, **kw})


P, R = np.array([0.5, 0.5]), np.array([1.0, 2.0])
SPEC = dict(task="t", split="train", policy="p", reward="r", m=4, max_new_tokens=4)

# id -> (call, parameter named at the start of the message)
CASES: dict[str, tuple[Callable[[], Any], str]] = {
    # --- the reference cache (before any sampling) ---
    "build_task_reference(m=2.5)": (_ref(m=2.5), "m"),
    "build_task_reference(m=0)": (_ref(m=0), "m"),
    "build_task_reference(m='32')": (_ref(m="32"), "m"),
    "build_task_reference(max_prompts=-1)": (_ref(max_prompts=-1), "max_prompts"),
    "build_task_reference(max_prompts=0)": (_ref(max_prompts=0), "max_prompts"),
    "build_task_reference(max_prompts=2.0)": (_ref(max_prompts=2.0), "max_prompts"),
    "build_task_reference(seed=-1)": (_ref(seed=-1), "seed"),
    "build_task_reference(seed=True)": (_ref(seed=True), "seed"),
    "build_task_reference(split='valid')": (_ref(split="valid"), "split"),
    "build_task_reference(batch_size=0)": (_ref(batch_size=0), "batch_size"),
    "ReferenceSpec(m=2.5)": (lambda: ReferenceSpec(**{**SPEC, "m": 2.5}), "m"),
    "ReferenceSpec(shard_size=0)": (
        lambda: ReferenceSpec(**{**SPEC, "shard_size": 0}),
        "shard_size",
    ),
    "ReferenceSpec(policy='')": (lambda: ReferenceSpec(**{**SPEC, "policy": ""}), "policy"),
    "ReferenceSpec(temperature='1')": (
        lambda: ReferenceSpec(**{**SPEC, "temperature": "1"}),
        "temperature",
    ),
    # --- the sampler ---
    "sample(num_samples=2.5)": (
        lambda: sample(None, None, ["a"], 2.5, max_new_tokens=4),
        "num_samples",
    ),
    "sample(num_samples=0)": (
        lambda: sample(None, None, ["a"], 0, max_new_tokens=4),
        "num_samples",
    ),
    "sample(temperature=inf)": (
        lambda: sample(None, None, ["a"], 1, max_new_tokens=4, temperature=math.inf),
        "temperature",
    ),
    "sample(temperature='0.7')": (
        lambda: sample(None, None, ["a"], 1, max_new_tokens=4, temperature="0.7"),
        "temperature",
    ),
    "sample(top_p='1')": (
        lambda: sample(None, None, ["a"], 1, max_new_tokens=4, top_p="1"),
        "top_p",
    ),
    "sample(max_new_tokens=2.0)": (
        lambda: sample(None, None, ["a"], 1, max_new_tokens=2.0),
        "max_new_tokens",
    ),
    "sample(seed=-3)": (lambda: sample(None, None, ["a"], 1, max_new_tokens=4, seed=-3), "seed"),
    "sample(batch_size=1.5)": (
        lambda: sample(None, None, ["a"], 1, max_new_tokens=4, batch_size=1.5),
        "batch_size",
    ),
    "sample(prompts='a')": (lambda: sample(None, None, "a", 1, max_new_tokens=4), "prompts"),
    # --- the training config ---
    "TrainConfig(seed=-1)": (lambda: TrainConfig(seed=-1), "seed"),
    "TrainConfig(kl_estimator='k2')": (lambda: TrainConfig(kl_estimator="k2"), "kl_estimator"),
    "TrainConfig(bon_sft, kl_estimator='rb')": (
        lambda: TrainConfig(method="bon_sft", kl_estimator="rb"),
        "kl_estimator",
    ),
    "TrainConfig(seed=1.0)": (lambda: TrainConfig(seed=1.0), "seed"),
    "TrainConfig(ref_seed=-2)": (lambda: TrainConfig(ref_seed=-2), "ref_seed"),
    "TrainConfig(n='8')": (lambda: TrainConfig(method="vbon", n="8"), "n"),
    "TrainConfig(n=2.5)": (lambda: TrainConfig(method="vbon", n=2.5), "n"),
    "TrainConfig(beta='0.1')": (lambda: TrainConfig(method="kl_rl", beta="0.1"), "beta"),
    "TrainConfig(lr='3e-4')": (lambda: TrainConfig(lr="3e-4"), "lr"),
    "TrainConfig(lr=inf)": (lambda: TrainConfig(lr=math.inf), "lr"),
    "TrainConfig(m='32')": (lambda: TrainConfig(m="32"), "m"),
    "TrainConfig(steps=1.5)": (lambda: TrainConfig(steps=1.5), "steps"),
    "TrainConfig(temperature='0.7')": (lambda: TrainConfig(temperature="0.7"), "temperature"),
    "TrainConfig(top_p='1')": (lambda: TrainConfig(top_p="1"), "top_p"),
    "TrainConfig(top_p=0)": (lambda: TrainConfig(top_p=0.0), "top_p"),
    "TrainConfig(eos_score='-20')": (lambda: TrainConfig(eos_score="-20"), "eos_score"),
    "TrainConfig(eos_score=nan)": (lambda: TrainConfig(eos_score=math.nan), "eos_score"),
    "TrainConfig(adam_betas=('a', 0.9))": (
        lambda: TrainConfig(adam_betas=("a", 0.9)),
        "adam_betas",
    ),
    "TrainConfig(num_layers_unfrozen=True)": (
        lambda: TrainConfig(num_layers_unfrozen=True),
        "num_layers_unfrozen",
    ),
    "TrainConfig(task='')": (lambda: TrainConfig(task=""), "task"),
    "train(task='chess')": (lambda: train(TrainConfig(task="chess", output_dir=_OUT)), "task"),
    "TrainConfig(keep_checkpoints=0)": (
        lambda: TrainConfig(keep_checkpoints=0),
        "keep_checkpoints",
    ),
    "TrainConfig(run_name='')": (lambda: TrainConfig(run_name=""), "run_name"),
    "TrainConfig(run_name='../x')": (lambda: TrainConfig(run_name="../x"), "run_name"),
    "TrainConfig(run_name='/abs')": (lambda: TrainConfig(run_name="/abs"), "run_name"),
    "TrainConfig(run_name='a/b')": (lambda: TrainConfig(run_name="a/b"), "run_name"),
    "TrainConfig(run_name='..')": (lambda: TrainConfig(run_name=".."), "run_name"),
    "TrainConfig(task_overrides=[])": (lambda: TrainConfig(task_overrides=[1]), "task_overrides"),
    "grid(n=4)": (lambda: grid(TrainConfig(), n=4), "n"),
    "run_sweep(workers=0)": (lambda: run_sweep([TrainConfig()], workers=0), "workers"),
    # --- tasks (before any world, dataset or tokenizer) ---
    "get_task('chess')": (lambda: get_task("chess"), "name"),
    "get_task(profile='laptop')": (lambda: get_task("imdb", profile="laptop"), "profile"),
    "get_task(seed=2.7)": (lambda: get_task("imdb", seed=2.7), "seed"),
    "get_task(seed=-1)": (lambda: get_task("tldr", seed=-1), "seed"),
    "get_task(seed='0')": (lambda: get_task("imdb", seed="0"), "seed"),
    "get_task(temperature=inf)": (lambda: get_task("imdb", temperature=math.inf), "temperature"),
    "get_task(temperature=0)": (lambda: get_task("tldr", temperature=0.0), "temperature"),
    "get_task(temperature='0.7')": (lambda: get_task("tldr", temperature="0.7"), "temperature"),
    "get_task(top_k=2.0)": (lambda: get_task("imdb", top_k=2.0), "top_k"),
    "get_task(top_p=1.5)": (lambda: get_task("imdb", top_p=1.5), "top_p"),
    "get_task(max_new_tokens='40')": (
        lambda: get_task("imdb", max_new_tokens="40"),
        "max_new_tokens",
    ),
    "get_task(eos_penalty='-1')": (lambda: get_task("tldr", eos_penalty="-1"), "eos_penalty"),
    "get_task(n_train=0)": (lambda: get_task("imdb", n_train=0), "n_train"),
    "get_task(n_train='100')": (lambda: get_task("imdb", n_train="100"), "n_train"),
    "get_task(n_test=2.5)": (lambda: get_task("tldr", n_test=2.5), "n_test"),
    "get_task(min_prompt_tokens=0)": (
        lambda: get_task("imdb", min_prompt_tokens=0),
        "min_prompt_tokens",
    ),
    "get_task(min > max prompt tokens)": (
        lambda: get_task("imdb", min_prompt_tokens=9, max_prompt_tokens=3),
        "min_prompt_tokens",
    ),
    "get_task(max_prompt_tokens=4)": (
        lambda: get_task("tldr", max_prompt_tokens=4),
        "max_prompt_tokens",
    ),
    "get_task(output='score')": (lambda: get_task("imdb", output="score"), "output"),
    "get_task(policy_id='')": (lambda: get_task("imdb", policy_id=""), "policy_id"),
    "get_task(reward_id=None)": (lambda: get_task("tldr", reward_id=None), "reward_id"),
    "get_task(reference_id='  ')": (lambda: get_task("imdb", reference_id="  "), "reference_id"),
    "get_task(temprature=0.5)": (lambda: get_task("imdb", temprature=0.5), "temprature"),
    "get_task(smoke, variant='1b')": (lambda: get_task("tldr", variant="1b"), "variant"),
    "get_task(paper, variant='7b')": (lambda: get_task("tldr", "paper", variant="7b"), "variant"),
    "get_task(smoke, policy_revision)": (
        lambda: get_task("imdb", policy_revision="abc"),
        "policy_revision",
    ),
    "get_task(reward_revision=3)": (
        lambda: get_task("imdb", "paper", reward_revision=3),
        "reward_revision",
    ),
    # --- the maths ---
    "bon_pmf(n=0)": (lambda: bon.bon_pmf(P, R, 0), "n"),
    "bon_pmf(n=2.5)": (lambda: bon.bon_pmf(P, R, 2.5), "n"),
    "bon_pmf(n='4')": (lambda: bon.bon_pmf(P, R, "4"), "n"),
    "bon_pmf(ref_probs sum 0.9)": (lambda: bon.bon_pmf([0.5, 0.4], R, 2), "ref_probs"),
    "bon_pmf(ref_probs < 0)": (lambda: bon.bon_pmf([1.5, -0.5], R, 2), "ref_probs"),
    "bon_pmf(rewards NaN)": (lambda: bon.bon_pmf(P, [1.0, math.nan], 2), "rewards"),
    "bon_pmf(rewards shape)": (lambda: bon.bon_pmf(P, [1.0, 2.0, 3.0], 2), "rewards"),
    "bon_pmf(rewards strings)": (lambda: bon.bon_pmf(P, ["a", "b"], 2), "rewards"),
    "sample_bon(size=0)": (lambda: bon.sample_bon(P, R, 2, 0), "size"),
    "empirical_log_cdf(NaN ref)": (
        lambda: cdf.empirical_log_cdf([1.0, math.nan], [1.0]),
        "ref_rewards",
    ),
    "empirical_log_cdf(no refs)": (lambda: cdf.empirical_log_cdf([], [1.0]), "ref_rewards"),
    "empirical_log_cdf(smoothing)": (
        lambda: cdf.empirical_log_cdf([1.0], [1.0], smoothing="laplace"),
        "smoothing",
    ),
    "RewardCDF.log_cdf(prompt_index 1.0)": (
        lambda: cdf.RewardCDF([[1.0], [2.0]]).log_cdf([1.0], [1.0]),
        "prompt_index",
    ),
    "RewardCDF.log_cdf(prompt_index out of range)": (
        lambda: cdf.RewardCDF([[1.0], [2.0]]).log_cdf([1.0], [2]),
        "prompt_index",
    ),
    "RewardCDF(max_m=0)": (lambda: cdf.RewardCDF([[1.0]], max_m=0), "max_m"),
    "n_from_beta(0)": (lambda: objectives.n_from_beta(0.0), "beta"),
    "n_from_beta('0.1')": (lambda: objectives.n_from_beta("0.1"), "beta"),
    "n_from_beta(0.3)": (lambda: objectives.n_from_beta(0.3), "beta"),
    "beta_from_n(1)": (lambda: objectives.beta_from_n(1), "n"),
    "vbon_reward(log_cdf > 0)": (lambda: objectives.vbon_reward([0.5], 4), "log_cdf"),
    "vbon_reward(bound='U')": (lambda: objectives.vbon_reward([-0.5], 4, "U"), "bound"),
    "vbon_reward(exact, no ref_logprob)": (
        lambda: objectives.vbon_reward([-0.5], 4, "exact"),
        "ref_logprob",
    ),
    "kl_rl_optimum_pmf(beta=-1)": (lambda: objectives.kl_rl_optimum_pmf(P, R, -1.0), "beta"),
    "win_rates(method='some')": (
        lambda: evaluate.win_rates([[1.0]], [[1.0]], method="some"),
        "method",
    ),
    "bon_evaluate(n_grid=[0])": (
        lambda: evaluate.bon_evaluate(np.ones((1, 2)), np.full((1, 2), -1.0), [[1.0]], [0]),
        "n_grid",
    ),
    "bon_evaluate(N above the pool)": (
        lambda: evaluate.bon_evaluate(np.ones((1, 2)), np.full((1, 2), -1.0), [[1.0]], [4]),
        "n_grid",
    ),
    "mean_se(empty)": (lambda: evaluate.mean_se([]), "values"),
    "kl_estimates(mask shape)": (
        lambda: evaluate.kl_estimates([[0.0, 0.0]], [[0.0, 0.0]], mask=[[True]]),
        "mask",
    ),
    "pareto_frontier(shapes)": (lambda: evaluate.pareto_frontier([1.0, 2.0], [1.0]), "y"),
    # --- notebook parameters ---
    "check_parameters(n_grid='[0,4]')": (
        lambda: check_parameters({"__annotations__": {"n_grid": list}, "n_grid": "[0,4]"}),
        "parameter n_grid",
    ),
    "check_parameters(seed=-1)": (
        lambda: check_parameters({"__annotations__": {"seed": int}, "seed": -1}),
        "parameter seed",
    ),
    "check_parameters(lr='fast')": (
        lambda: check_parameters({"__annotations__": {"lr": float}, "lr": "fast"}),
        "parameter lr",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_names_its_parameter(case: str, no_loading: None) -> None:
    call, name = CASES[case]
    with pytest.raises(ValueError) as info:
        call()
    assert str(info.value).startswith(f"{name}: "), str(info.value)


def test_the_cases_cover_the_issue() -> None:
    named = [
        "build_task_reference(m=2.5)",
        "build_task_reference(max_prompts=-1)",
        "TrainConfig(seed=-1)",
        "sample(num_samples=2.5)",
        "get_task(seed=2.7)",
        "get_task(temperature=inf)",
        "get_task(policy_id='')",
        "TrainConfig(lr='3e-4')",
        "get_task(temperature='0.7')",
    ]
    assert all(c in CASES for c in named)
    print(
        f"\n[bad inputs] {len(CASES)} in-process cases + 2 dataset paths + 4 CLI calls + 1 CLI "
        f"process = {len(CASES) + 7} bad inputs, each a ValueError naming its parameter"
    )


def test_mistyped_local_dataset_is_a_missing_path(
    toy_worlds, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(DatasetNotFoundError, match="^dataset: no dataset directory at") as info:
        get_task("imdb", dataset=str(tmp_path / "my-data" / "imbd"))
    assert "offline" not in str(info.value)
    # A relative path with one slash reads like a hub id; its existing parent gives it away.
    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DatasetNotFoundError, match="^dataset: no dataset directory at") as info:
        get_task("tldr", dataset="data/tldrr")
    assert "mistyped" in str(info.value)


@pytest.mark.parametrize(
    ("argv", "name"),
    [
        (["train", "--seed", "-1"], "seed"),
        (["train", "--run-name", "../up"], "run_name"),
        (["train", "--config", "/no/such/config.json"], "--config"),
        (["reproduce", "--profile", "laptop"], "profile"),
    ],
)
def test_cli_prints_a_usage_error(argv: list[str], name: str, capsys) -> None:
    from vbon.cli import main

    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"error: {name}: " in err and "usage: vbon" in err and "Traceback" not in err


@pytest.mark.slow
def test_cli_usage_error_in_a_real_process(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "vbon.train",
            "--task",
            "imdb",
            "--lr",
            "-1",
            "--output-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "error: lr: must be a finite number > 0, got -1.0" in done.stderr
    assert "Traceback" not in done.stderr
