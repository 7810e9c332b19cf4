"""The reference cache (vbon.reference): keys, resume after a kill, loading, authors' formats."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from vbon.reference import (
    ReferenceCache,
    ReferenceSpec,
    build_reference_cache,
    export_authors_jsonl,
    import_authors_jsonl,
)

BUILD_SCRIPT = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast
    from vbon.reference import ReferenceSpec, build_reference_cache

    root, delay = sys.argv[1], float(sys.argv[2])
    words = {"<eos>": 0, "x": 1, "y": 2, "z": 3, "w": 4}
    backend = Tokenizer(models.WordLevel(words, unk_token="<eos>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<eos>", pad_token="<eos>")
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=5, n_embd=16, n_layer=1, n_head=2, n_positions=64,
                        bos_token_id=0, eos_token_id=0)
    model = GPT2LMHeadModel(config).eval()

    def reward(prompts, completions, eos=None):
        time.sleep(delay)  # a slow reward model, so the test can kill the build mid-way
        return np.array([c.count("y") - 0.1 * len(c.split()) for c in completions], dtype=float)

    prompts = [" ".join("xyzw"[(i * j) % 4] for j in range(1 + i % 3)) for i in range(24)]
    spec = ReferenceSpec(task="toy", split="train", policy="tiny", reward="count-y", m=6,
                         max_new_tokens=8, seed=3, shard_size=2, keep_texts=True)
    build_reference_cache(prompts, spec, model=model, tokenizer=tok, reward_fn=reward,
                          root=root, batch_size=8, progress=False)
    print("done")
    """
)


def run_build(script: Path, root: Path, delay: float) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(
        [sys.executable, str(script), str(root), str(delay)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_killed_build_resumes_to_the_uninterrupted_cache(tmp_path: Path) -> None:
    script = tmp_path / "build.py"
    script.write_text(BUILD_SCRIPT)
    killed_root, clean_root = tmp_path / "killed", tmp_path / "clean"

    proc = run_build(script, killed_root, delay=0.3)
    deadline = time.time() + 120
    while time.time() < deadline:
        if len(list(killed_root.glob("*/shard-*.parquet"))) >= 3:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = len(list(killed_root.glob("*/shard-*.parquet")))
    assert 3 <= partial < 12, f"the kill should land mid-build, found {partial} of 12 shards"
    with pytest.raises(ValueError, match="incomplete"):
        ReferenceCache(next(killed_root.iterdir()))

    resumed = run_build(script, killed_root, delay=0.0)
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    clean = run_build(script, clean_root, delay=0.0)
    assert clean.wait(timeout=300) == 0, clean.stderr.read()

    a = ReferenceCache(next(killed_root.iterdir()))
    b = ReferenceCache(next(clean_root.iterdir()))
    assert a.directory.name == b.directory.name  # same key
    assert len(a) == 24 and a.table.column("prompt_index").to_pylist() == list(range(24))
    assert a.prompts == b.prompts
    np.testing.assert_array_equal(a.rewards(), b.rewards())
    assert a.column("texts") == b.column("texts")
    print(f"killed after {partial}/12 shards; resumed cache equals the uninterrupted one")


def test_spec_key_changes_with_every_setting() -> None:
    base = ReferenceSpec(task="imdb", split="train", policy="p", reward="r", m=8, max_new_tokens=40)
    keys = {base.key()}
    for change in [
        {"m": 9},
        {"temperature": 0.7},
        {"seed": 1},
        {"policy": "q"},
        {"reward": "s"},
        {"max_new_tokens": 41},
        {"top_k": 5},
        {"split": "test"},
        {"prompts_sha": "x"},
        {"sampler": "multinomial"},
    ]:
        keys.add(ReferenceSpec(**{**base.__dict__, **change}).key())
    assert len(keys) == 11
    with pytest.raises(ValueError, match="temperature"):
        ReferenceSpec(
            task="imdb",
            split="train",
            policy="p",
            reward="r",
            m=8,
            max_new_tokens=4,
            temperature=0.0,
        )
    with pytest.raises(ValueError, match="m"):
        ReferenceSpec(task="imdb", split="train", policy="p", reward="r", m=0, max_new_tokens=4)


def test_load_cdf_truncation_and_authors_formats(tmp_path: Path) -> None:
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    words = {"<eos>": 0, "x": 1, "y": 2}
    backend = Tokenizer(models.WordLevel(words, unk_token="<eos>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<eos>", pad_token="<eos>")
    torch.manual_seed(0)
    model = GPT2LMHeadModel(
        GPT2Config(
            vocab_size=3,
            n_embd=8,
            n_layer=1,
            n_head=2,
            n_positions=32,
            bos_token_id=0,
            eos_token_id=0,
        )
    ).eval()

    def reward(prompts, completions, eos=None):
        return np.array([c.count("y") + 0.01 * i for i, c in enumerate(completions)])

    spec = ReferenceSpec(
        task="toy",
        split="test",
        policy="tiny",
        reward="y",
        m=5,
        max_new_tokens=4,
        shard_size=3,
        keep_texts=True,
        with_logprobs=True,
    )
    cache = build_reference_cache(
        ["x", "y x", "x x y", "y"],
        spec,
        model=model,
        tokenizer=tok,
        reward_fn=reward,
        root=tmp_path / "ref",
        progress=False,
    )
    assert cache.rewards().shape == (4, 5)
    assert cache.column("ref_logprobs").shape == (4, 5)
    assert (cache.column("ref_logprobs") <= 0).all()
    full, first2 = cache.cdf(), cache.cdf(max_m=2)
    assert full.counts.tolist() == [5] * 4 and first2.counts.tolist() == [2] * 4
    np.testing.assert_array_equal(first2.sorted_rewards(1), np.sort(cache.rewards()[1, :2]))
    # A second build with the same spec is a no-op returning the same cache.
    again = build_reference_cache(
        ["x", "y x", "x x y", "y"],
        spec,
        model=None,
        tokenizer=None,
        reward_fn=None,
        root=tmp_path / "ref",
        progress=False,
    )
    assert again.directory == cache.directory

    for layout in ("imdb", "tldr"):
        path = export_authors_jsonl(cache, tmp_path / f"{layout}.jsonl", layout=layout)
        back = import_authors_jsonl(path, tmp_path / f"imported-{layout}", task="toy")
        assert back.prompts == cache.prompts
        np.testing.assert_array_equal(back.rewards(), cache.rewards())
        assert back.column("texts") == cache.column("texts")
    with pytest.raises(ValueError, match="layout"):
        export_authors_jsonl(cache, tmp_path / "x.jsonl", layout="csv")


def test_build_under_accelerate_two_processes_equals_one(tmp_path: Path) -> None:
    script = tmp_path / "build.py"
    script.write_text(BUILD_SCRIPT)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    launch = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--num_processes",
        "2",
        "--cpu",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
    ]
    done = subprocess.run(
        [*launch, str(script), str(tmp_path / "two"), "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    single = run_build(script, tmp_path / "one", delay=0.0)
    assert single.wait(timeout=300) == 0, single.stderr.read()
    a = ReferenceCache(next((tmp_path / "two").iterdir()))
    b = ReferenceCache(next((tmp_path / "one").iterdir()))
    np.testing.assert_array_equal(a.rewards(), b.rewards())
    assert a.prompts == b.prompts
