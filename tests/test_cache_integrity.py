"""Integrity of the reference cache: every damage is named on load and repaired by the builders,
which sample again only the shards at fault, identical to an undamaged build."""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vbon.reference import (
    CacheIntegrityError,
    ReferenceCache,
    ReferenceSpec,
    build_reference_cache,
)

PROMPTS = ["x", "y", "z", "w", "x y", "y z", "z w x"]  # distinct: resampled() maps them back
SPEC = ReferenceSpec(
    task="toy", split="train", policy="tiny", reward="count-y", m=5, max_new_tokens=6, seed=2,
    shard_size=3, keep_texts=True,
)  # fmt: skip
SHARDS = ["shard-00000.parquet", "shard-00001.parquet", "shard-00002.parquet"]  # 3 + 3 + 1 rows


class Sampler:
    """A one-layer GPT-2 over five words and a reward that counts "y"; counts its calls."""

    def __init__(self) -> None:
        import torch
        from tokenizers import Tokenizer, models, pre_tokenizers
        from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

        words = {"<eos>": 0, "x": 1, "y": 2, "z": 3, "w": 4}
        backend = Tokenizer(models.WordLevel(words, unk_token="<eos>"))
        backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        self.tokenizer = PreTrainedTokenizerFast(
            tokenizer_object=backend, eos_token="<eos>", pad_token="<eos>"
        )
        torch.manual_seed(0)
        config = GPT2Config(
            vocab_size=5, n_embd=16, n_layer=1, n_head=2, n_positions=64, bos_token_id=0,
            eos_token_id=0,
        )  # fmt: skip
        self.model = GPT2LMHeadModel(config).eval()
        self.scored_prompts: list[str] = []

    def reward(self, prompts, completions, eos=None) -> np.ndarray:
        self.scored_prompts += list(prompts)
        return np.array([c.count("y") - 0.1 * len(c.split()) for c in completions], dtype=float)

    def build(self, root: Path) -> ReferenceCache:
        return build_reference_cache(
            PROMPTS,
            SPEC,
            model=self.model,
            tokenizer=self.tokenizer,
            reward_fn=self.reward,
            root=root,
            batch_size=8,
            progress=False,
        )

    def resampled(self) -> set[int]:
        """The first prompt index of every shard sampled since the last call."""
        firsts = {
            PROMPTS.index(p) // SPEC.shard_size * SPEC.shard_size for p in self.scored_prompts
        }
        self.scored_prompts = []
        return firsts


@pytest.fixture(scope="module")
def sampler() -> Sampler:
    return Sampler()


@pytest.fixture(scope="module")
def pristine(sampler: Sampler, tmp_path_factory: pytest.TempPathFactory) -> ReferenceCache:
    cache = sampler.build(tmp_path_factory.mktemp("pristine"))
    sampler.resampled()
    return cache


@pytest.fixture
def copy(pristine: ReferenceCache, tmp_path: Path) -> Path:
    """A fresh copy of the pristine cache's root (the cache is root/<key>)."""
    shutil.copytree(pristine.directory, tmp_path / pristine.directory.name)
    return tmp_path


def _bytes(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.glob("shard-*.parquet"))}


def test_manifest_records_every_shard(pristine: ReferenceCache) -> None:
    manifest = json.loads((pristine.directory / "manifest.json").read_text())
    assert manifest["manifest_version"] == 2 and manifest["complete"]
    records = manifest["shards"]
    assert [r["file"] for r in records] == SHARDS
    assert [(r["first_prompt"], r["rows"]) for r in records] == [(0, 3), (3, 3), (6, 1)]
    for r in records:
        data = (pristine.directory / r["file"]).read_bytes()
        assert r["sha256"] == hashlib.sha256(data).hexdigest()
    assert pristine.table.column("prompt_index").to_pylist() == list(range(len(PROMPTS)))


def _flip_byte(d: Path) -> None:
    path = d / SHARDS[1]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(d: Path) -> None:
    path = d / SHARDS[2]
    path.write_bytes(path.read_bytes()[:100])


def _delete(d: Path) -> None:
    (d / SHARDS[0]).unlink()


def _swap(d: Path) -> None:
    shutil.copyfile(d / SHARDS[0], d / SHARDS[1])  # shard 0's rows under shard 1's name


def _rewrite_rewards(d: Path) -> None:
    # A valid parquet file with a consistent sorted copy: only the hash can tell.
    table = pq.read_table(d / SHARDS[1])
    rewards = np.stack(table.column("rewards").to_numpy(zero_copy_only=False)) + 1.0
    table = table.set_column(2, "rewards", pa.array(list(rewards)))
    table = table.set_column(3, "rewards_sorted", pa.array(list(np.sort(rewards, axis=1))))
    pq.write_table(table, d / SHARDS[1])


# name -> (damage, file the loader must name, shards the builder must sample again)
DAMAGES: dict[str, tuple[Callable[[Path], None], str, set[int]]] = {
    "one byte flipped": (_flip_byte, SHARDS[1], {3}),
    "truncated": (_truncate, SHARDS[2], {6}),
    "deleted": (_delete, SHARDS[0], {0}),
    "another shard's file": (_swap, SHARDS[1], {3}),
    "rewards rewritten consistently": (_rewrite_rewards, SHARDS[1], {3}),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_damage_is_named_then_repaired_identically(
    damage: str, copy: Path, pristine: ReferenceCache, sampler: Sampler
) -> None:
    hurt, culprit, expected = DAMAGES[damage]
    directory = copy / pristine.directory.name
    before = _bytes(directory)
    hurt(directory)
    with pytest.raises(CacheIntegrityError) as info:
        ReferenceCache(directory)
    message = str(info.value)
    assert message.startswith("directory: ") and culprit in message
    assert "build_task_reference" in message and "build_reference_cache" in message
    assert info.value.path == directory / culprit

    with pytest.warns(UserWarning, match=culprit):
        repaired = sampler.build(copy)
    assert sampler.resampled() == expected
    assert repaired.rewards().tobytes() == pristine.rewards().tobytes()
    assert repaired.column("texts") == pristine.column("texts")
    after = _bytes(directory)
    for name, data in before.items():  # the untouched shards were not rewritten
        if name != culprit:
            assert after[name] == data
    assert after == _bytes(pristine.directory)  # the repaired shard is the original, byte for byte
    assert json.loads((directory / "manifest.json").read_text()) == json.loads(
        (pristine.directory / "manifest.json").read_text()
    )
    ReferenceCache(directory)


def test_foreign_and_duplicate_files_are_rejected_then_removed(
    copy: Path, pristine: ReferenceCache, sampler: Sampler
) -> None:
    directory = copy / pristine.directory.name
    for extra in ("shard-00007.parquet", "shard-00001 (copy).parquet"):
        shutil.copyfile(directory / SHARDS[1], directory / extra)
        with pytest.raises(
            CacheIntegrityError,
            match=rf"unexpected file {extra.replace('(', '.').replace(')', '.')}",
        ):
            ReferenceCache(directory)
        with pytest.warns(UserWarning, match="removing"):
            sampler.build(copy)
        assert sampler.resampled() == set()
        assert not (directory / extra).exists()
        ReferenceCache(directory)


def test_unreadable_manifest_is_named_and_the_shards_adopted(
    copy: Path, pristine: ReferenceCache, sampler: Sampler
) -> None:
    directory = copy / pristine.directory.name
    (directory / "manifest.json").write_text('{"spec": ')
    with pytest.raises(CacheIntegrityError, match="manifest.json is unreadable"):
        ReferenceCache(directory)
    sampler.build(copy)
    assert sampler.resampled() == set()  # every shard passed its checks: nothing was sampled
    assert json.loads((directory / "manifest.json").read_text()) == json.loads(
        (pristine.directory / "manifest.json").read_text()
    )


def _old_manifest(directory: Path) -> None:
    """What a cache built before the shard records looked like."""
    path = directory / "manifest.json"
    manifest = json.loads(path.read_text())
    del manifest["shards"], manifest["manifest_version"]
    path.write_text(json.dumps(manifest))


def test_old_manifest_loads_with_a_warning_and_gets_its_hashes(
    copy: Path, pristine: ReferenceCache
) -> None:
    directory = copy / pristine.directory.name
    _old_manifest(directory)
    with pytest.warns(UserWarning, match="before shard hashes were recorded"):
        old = ReferenceCache(directory)
    assert old.rewards().tobytes() == pristine.rewards().tobytes()
    # No model is needed to adopt intact shards.
    build_reference_cache(
        PROMPTS, SPEC, model=None, tokenizer=None, reward_fn=None, root=copy, progress=False
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ReferenceCache(directory)
    assert json.loads((directory / "manifest.json").read_text()) == json.loads(
        (pristine.directory / "manifest.json").read_text()
    )


def _unsorted_copy(directory: Path) -> None:
    table = pq.read_table(directory / SHARDS[2])
    flipped = [row[::-1] for row in table.column("rewards_sorted").to_pylist()]
    pq.write_table(table.set_column(3, "rewards_sorted", pa.array(flipped)), directory / SHARDS[2])


def _other_prompt(directory: Path) -> None:
    table = pq.read_table(directory / SHARDS[1])
    prompts = table.column("prompt").to_pylist()
    prompts[0] += " x"
    pq.write_table(table.set_column(1, "prompt", pa.array(prompts)), directory / SHARDS[1])


def _extra_row(directory: Path) -> None:
    table = pq.read_table(directory / SHARDS[2])
    pq.write_table(pa.concat_tables([table, table]), directory / SHARDS[2])


# Without hashes (old manifests) the contents themselves are checked.
OLD_DAMAGES: dict[str, tuple[Callable[[Path], None], str, str, set[int]]] = {
    "sorted copy inconsistent": (_unsorted_copy, SHARDS[2], "sorted rewards", {6}),
    "a prompt changed": (_other_prompt, "its shards", "prompts_sha", {3}),
    "a prompt index twice": (_extra_row, SHARDS[2], "holds 2 rows", {6}),
}


@pytest.mark.parametrize("damage", list(OLD_DAMAGES))
def test_old_manifest_damage_is_found_without_hashes(
    damage: str, copy: Path, pristine: ReferenceCache, sampler: Sampler
) -> None:
    hurt, culprit, what, expected = OLD_DAMAGES[damage]
    directory = copy / pristine.directory.name
    _old_manifest(directory)
    hurt(directory)
    with pytest.raises(CacheIntegrityError, match=what) as info:
        ReferenceCache(directory)
    assert culprit in str(info.value)
    with pytest.warns(UserWarning, match="sampling it again"):
        repaired = sampler.build(copy)
    assert sampler.resampled() == expected
    assert repaired.rewards().tobytes() == pristine.rewards().tobytes()
    assert _bytes(directory) == _bytes(pristine.directory)


def test_incomplete_cache_is_refused_with_the_resuming_call(
    copy: Path, pristine: ReferenceCache, sampler: Sampler
) -> None:
    directory = copy / pristine.directory.name
    manifest = json.loads((directory / "manifest.json").read_text())
    (directory / "manifest.json").write_text(json.dumps({**manifest, "complete": False}))
    (directory / SHARDS[2]).unlink()
    with pytest.raises(CacheIntegrityError, match="incomplete.*build_task_reference"):
        ReferenceCache(directory)
    sampler.build(copy)
    assert sampler.resampled() == {6}


@pytest.mark.slow
def test_task_reference_repairs_only_the_damaged_shard(
    toy_worlds, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vbon.reference import build_task_reference
    from vbon.tasks import Task, get_task

    task = get_task("imdb", "smoke", n_train=6, n_test=2)
    kwargs = {"m": 4, "root": tmp_path, "max_prompts": 5, "progress": False, "shard_size": 2}
    cache = build_task_reference(task, "train", **kwargs)
    rewards, files = cache.rewards().tobytes(), _bytes(cache.directory)
    assert len(files) == 3

    damaged = cache.directory / "shard-00001.parquet"
    damaged.write_bytes(damaged.read_bytes()[:-40])
    with pytest.raises(CacheIntegrityError, match="shard-00001.parquet is damaged.*build_task_ref"):
        ReferenceCache(cache.directory)
    with pytest.warns(UserWarning, match="shard-00001.parquet"):
        repaired = build_task_reference(task, "train", **kwargs)
    assert repaired.rewards().tobytes() == rewards
    assert _bytes(cache.directory) == files

    # An intact cache is loaded without the models.
    def no_models(*args, **kw):
        raise AssertionError("the models were loaded for an intact cache")

    monkeypatch.setattr(Task, "load_reference", no_models)
    assert build_task_reference(task, "train", **kwargs).rewards().tobytes() == rewards
