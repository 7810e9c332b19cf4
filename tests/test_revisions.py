"""Pinned hub revisions: resolved per role, passed to from_pretrained / load_dataset, part of
every reference-cache key and of every paper-profile run config."""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import asdict, replace
from typing import Any

import pytest

from vbon.reference import ReferenceSpec, task_reference_spec
from vbon.tasks import SamplingConfig, Task, UnpinnedRevisionWarning, hub_revisions, imdb, tldr
from vbon.train import TrainConfig

SHA = "0123456789abcdef0123456789abcdef01234567"


def test_imdb_paper_sources_are_pinned() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every IMDB source has a pin: no warning
        pins = hub_revisions("imdb", "paper")
    assert pins == {
        "policy_revision": imdb.HUB_REVISIONS["lvwerra/gpt2-imdb"],
        "reference_revision": imdb.HUB_REVISIONS["lvwerra/gpt2-imdb"],
        "reward_revision": imdb.HUB_REVISIONS["lvwerra/distilbert-imdb"],
        "dataset_revision": imdb.HUB_REVISIONS["stanfordnlp/imdb"],
    }
    for sha in imdb.HUB_REVISIONS.values():
        assert len(sha) == 40 and int(sha, 16) >= 0


def test_overrides_win_and_unpinned_sources_warn() -> None:
    assert hub_revisions("imdb", "paper", policy_revision=SHA)["reference_revision"] == SHA
    assert (
        hub_revisions("imdb", "paper", policy_revision="")["policy_revision"]
        == (imdb.HUB_REVISIONS["lvwerra/gpt2-imdb"])
    )  # "" is the default pin, as a notebook parameter left empty
    assert hub_revisions("imdb", "paper", reward_revision="main")["reward_revision"] == "main"
    with pytest.warns(UnpinnedRevisionWarning, match="CarperAI/openai_summarize_tldr"):
        pins = hub_revisions("tldr", "paper", variant="1b")
    assert pins["policy_revision"] == tldr.HUB_REVISIONS[tldr.VARIANTS["1b"][0]]
    assert pins["reward_revision"] == tldr.HUB_REVISIONS[tldr.VARIANTS["1b"][1]]
    assert "dataset_revision" not in pins
    with pytest.warns(UnpinnedRevisionWarning, match="not pinned"):
        assert "policy_revision" not in hub_revisions("imdb", "paper", policy_id="someone/else")
    # The toy worlds have no revision; asking for one is a mistake, named.
    assert hub_revisions("imdb", "smoke") == {}
    with pytest.raises(ValueError, match="^policy_revision: the policy is the toy world's"):
        hub_revisions("imdb", "smoke", policy_revision=SHA)
    with pytest.raises(ValueError, match="^reward_revision: must be a hub commit"):
        hub_revisions("imdb", "paper", reward_revision=3)


def test_paper_run_configs_record_the_revisions() -> None:
    config = TrainConfig(profile="paper", task="imdb", method="vbon", n=8)
    assert config.task_overrides == hub_revisions("imdb", "paper")
    moved = config.replace(task_overrides={"reward_revision": SHA})
    assert moved.task_overrides["reward_revision"] == SHA
    assert moved.fingerprint() != config.fingerprint()  # another revision is another run
    assert TrainConfig.from_dict(json.loads(config.to_json())).identity() == config.identity()
    assert TrainConfig(profile="smoke", task="imdb").task_overrides == {}


def _task(**revisions: str) -> Task:
    return Task(
        name="imdb",
        profile="paper",
        policy_id="lvwerra/gpt2-imdb",
        reward_id="lvwerra/distilbert-imdb",
        dataset_id="stanfordnlp/imdb",
        train_prompts=["a", "b"],
        test_prompts=["c"],
        sampling=SamplingConfig(max_new_tokens=4),
        revisions=revisions,
    )


def test_revisions_are_part_of_the_cache_key() -> None:
    unpinned = task_reference_spec(_task(), "train", 8)
    pinned = task_reference_spec(_task(reference=SHA, reward=SHA, dataset=SHA), "train", 8)
    other = task_reference_spec(_task(reference=SHA[::-1], reward=SHA, dataset=SHA), "train", 8)
    assert pinned.revisions == {"reference": SHA, "reward": SHA, "dataset": SHA}
    assert len({unpinned.key(), pinned.key(), other.key()}) == 3
    # Without revisions (and at fp32) the key is the one caches were built under before
    # revisions and precisions were recorded.
    old = {k: v for k, v in asdict(unpinned).items() if k not in ("revisions", "precision")}
    blob = json.dumps({"v": 1, **old}, sort_keys=True, default=str)
    assert unpinned.key() == hashlib.sha256(blob.encode()).hexdigest()[:16]
    assert "revisions" not in unpinned.record() and pinned.record()["revisions"]["dataset"] == SHA
    assert replace(pinned, revisions={}).key() == unpinned.key()
    assert ReferenceSpec(**pinned.record()).key() == pinned.key()


def test_the_task_layer_passes_each_revision_on(toy_worlds, monkeypatch) -> None:
    """Paper-profile hub ids go to the loaders with their pins (the loaders are stand-ins
    here: the hub is offline)."""
    from datasets import load_from_disk

    from vbon.tasks import base, get_task
    from vbon.toy import SENTIMENT, build_world

    world = build_world(SENTIMENT)
    seen: dict[str, Any] = {}

    def fake_dataset(source, **kwargs):
        seen["dataset"] = (source, kwargs.get("revision"))
        return load_from_disk(str(world.data_path))

    def fake_tokenizer(name, **kwargs):
        seen["tokenizer"] = (name, kwargs.get("revision"))
        return real(world.policy_path)

    real = imdb.load_tokenizer
    monkeypatch.setattr("datasets.load_dataset", fake_dataset)
    monkeypatch.setattr(imdb, "load_tokenizer", fake_tokenizer)
    task = get_task("imdb", "paper", n_train=4, n_test=2, reward_revision=SHA)
    assert seen["dataset"] == ("stanfordnlp/imdb", imdb.HUB_REVISIONS["stanfordnlp/imdb"])
    assert seen["tokenizer"] == ("lvwerra/gpt2-imdb", imdb.HUB_REVISIONS["lvwerra/gpt2-imdb"])
    assert task.revisions["reward"] == SHA and task.describe()["revisions"] == task.revisions

    calls: list[tuple[str, Any]] = []
    monkeypatch.setattr(base, "load_causal_lm", lambda n, **kw: calls.append((n, kw["revision"])))
    monkeypatch.setattr(
        base, "load_reward_model", lambda n, **kw: calls.append((n, kw["revision"]))
    )
    task.load_policy()
    task.load_reference()
    task.load_reward_model()
    pin = imdb.HUB_REVISIONS["lvwerra/gpt2-imdb"]
    assert calls == [
        ("lvwerra/gpt2-imdb", pin),
        ("lvwerra/gpt2-imdb", pin),
        ("lvwerra/distilbert-imdb", SHA),
    ]


def test_a_revision_for_a_local_directory_is_refused(toy_worlds) -> None:
    from vbon.models import load_causal_lm, load_tokenizer
    from vbon.toy import SENTIMENT, build_world

    world = build_world(SENTIMENT)
    with pytest.raises(ValueError, match="^revision: .* is a local directory"):
        load_causal_lm(world.policy_path, revision=SHA)
    with pytest.raises(ValueError, match="^revision: must be a hub commit"):
        load_tokenizer("lvwerra/gpt2-imdb", revision="")
