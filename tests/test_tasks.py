"""Tasks: the smoke profile on the toy worlds, the paper profile's code path on hub-schema stand-ins."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset, DatasetDict
from transformers import (
    DistilBertConfig,
    DistilBertForSequenceClassification,
    GPT2Config,
    GPT2LMHeadModel,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    GPTNeoXForSequenceClassification,
    PreTrainedTokenizerFast,
)

from vbon.models import OfflineModelError, load_tokenizer
from vbon.tasks import OfflineDatasetError, SamplingConfig, Task, get_task
from vbon.tasks.imdb import prefix_prompts
from vbon.tasks.tldr import truncate_prompt
from vbon.toy import posts as P
from vbon.toy import reviews as R
from vbon.toy.train import EOS, train_bpe


def test_unknown_task_profile_and_override() -> None:
    with pytest.raises(ValueError, match=r"^name: expected a task among \['imdb', 'tldr'\]"):
        get_task("chess")
    with pytest.raises(ValueError, match="profile"):
        get_task("imdb", profile="laptop")
    with pytest.raises(ValueError, match="temprature"):
        get_task("imdb", temprature=0.5)
    with pytest.raises(ValueError, match="variant"):
        get_task("tldr", variant="1b")  # hub variants need the paper profile


def test_sampling_config_validation() -> None:
    s = SamplingConfig(max_new_tokens=40)
    assert s.generate_kwargs() == {
        "do_sample": True, "max_new_tokens": 40, "temperature": 1.0, "top_k": 0, "top_p": 1.0,
    }  # fmt: skip
    for bad, name in (
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"temperature": 0.0}, "temperature"),
        ({"top_k": -1}, "top_k"),
        ({"top_p": 1.5}, "top_p"),
        ({"eos_penalty": float("nan")}, "eos_penalty"),
    ):
        with pytest.raises(ValueError, match=name):
            SamplingConfig(**{"max_new_tokens": 40, **bad})


# -- smoke profile: the toy worlds -----------------------------------------------------------------


def test_smoke_imdb(toy_worlds) -> None:
    world = toy_worlds["toy-sentiment"]
    task = get_task("imdb")
    assert isinstance(task, Task) and (task.name, task.profile) == ("imdb", "smoke")
    assert task.policy_id == str(world.policy_path) == task.reference_id
    assert task.reward_id == str(world.reward_path)
    assert (len(task.train_prompts), len(task.test_prompts)) == (5000, 512)
    assert task.sampling == SamplingConfig(max_new_tokens=40, temperature=1.0, top_k=0, top_p=1.0)
    tok = load_tokenizer(task.policy_id)
    lengths = [len(tok(p, add_special_tokens=False)["input_ids"]) for p in task.test_prompts]
    assert min(lengths) >= 2 and max(lengths) <= 8 and len(set(lengths)) == 7
    reviews = world.load_data()["test"]["text"]
    assert all(any(r.startswith(p) for r in reviews) for p in task.test_prompts[:20])
    # Seeded: the same seed gives the same prompts, another seed others.
    assert get_task("imdb").train_prompts == task.train_prompts
    assert get_task("imdb", seed=1, n_train=10, n_test=10).train_prompts != task.train_prompts[:10]

    texts, labels = R.generate_reviews(64, seed=77)
    rewards = task.reward_fn([""] * 64, texts)
    assert rewards.shape == (64,) and rewards.dtype == np.float64
    assert rewards[labels == 1].mean() > rewards[labels == 0].mean() + 2
    # TRL passes extra keyword arguments; they are ignored.
    assert task.reward_fn(
        ["The acting was"], [" great."], trainer_state=None, completion_ids=[[1]]
    ).shape == (1,)
    assert task.describe()["n_train"] == 5000 and len(task.fingerprint()) == 12


def test_smoke_tldr(toy_worlds) -> None:
    task = get_task("tldr", n_test=64)
    assert task.policy_id == str(toy_worlds["toy-tldr"].policy_path)
    from vbon.toy.build import TLDR_EOS_PENALTY

    assert task.sampling == SamplingConfig(
        max_new_tokens=50, temperature=0.7, top_k=0, top_p=1.0, eos_penalty=TLDR_EOS_PENALTY
    )
    assert len(task.test_prompts) == 64 and len(task.train_prompts) == len(
        toy_worlds["toy-tldr"].load_data()["train"]
    )
    assert all(p.startswith("SUBREDDIT: r/") and p.endswith("\nTL;DR:") for p in task.test_prompts)

    post = P.generate_posts(1, seed=5)[0]
    good, vague = (
        P.summarize(post, "best", np.random.default_rng(0)),
        P.summarize(post, "vague", np.random.default_rng(0)),
    )
    prompts = [post.prompt()] * 3
    r = task.reward_fn(prompts, [good.text, vague.text, good.text], eos=[True, True, False])
    assert r[0] > r[1] and r[2] == TLDR_EOS_PENALTY
    model, tok = task.load_policy(device="cpu")
    ids = torch.tensor(
        [[5, tok.eos_token_id, tok.pad_token_id], [5, 6, 7], [5, 6, tok.eos_token_id]]
    )
    np.testing.assert_array_equal(
        task.reward_fn(prompts, [good.text, good.text, good.text], completion_ids=ids)[1:2],
        [TLDR_EOS_PENALTY],
    )
    with pytest.raises(ValueError, match="eos"):
        task.reward_fn(prompts, [good.text] * 3)
    assert (
        get_task("tldr", eos_penalty=-20.0, n_test=4).load_reward_model(device="cpu").eos_penalty
        == -20.0
    )
    assert model.config.model_type == "gpt_neox"


# -- paper profile: the hub code path on local stand-ins --------------------------------------------


def _tok(pad: bool) -> PreTrainedTokenizerFast:
    texts = R.generate_reviews(300, seed=0)[0] + [p.prompt() for p in P.generate_posts(200, seed=0)]
    backend = train_bpe(texts, 800, [EOS, "<|pad|>", "<|cls|>"])
    extra = {"pad_token": "<|pad|>", "cls_token": "<|cls|>"} if pad else {}
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=EOS, eos_token=EOS, **extra)


@pytest.fixture(scope="module")
def hub_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hub-tasks")
    torch.manual_seed(0)
    tok, ptok = _tok(pad=False), _tok(pad=True)
    GPT2LMHeadModel(
        GPT2Config(vocab_size=len(tok), n_positions=128, n_embd=32, n_layer=1, n_head=2)
    ).save_pretrained(root / "gpt2")
    tok.save_pretrained(root / "gpt2")
    DistilBertForSequenceClassification(
        DistilBertConfig(
            vocab_size=len(ptok), n_layers=1, n_heads=2, dim=32, hidden_dim=64, pad_token_id=ptok.pad_token_id,
            id2label={0: "NEGATIVE", 1: "POSITIVE"}, label2id={"NEGATIVE": 0, "POSITIVE": 1},
        )
    ).save_pretrained(root / "distilbert")  # fmt: skip
    ptok.save_pretrained(root / "distilbert")
    neox = GPTNeoXConfig(
        vocab_size=len(ptok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=512, pad_token_id=ptok.pad_token_id,
    )  # fmt: skip
    GPTNeoXForCausalLM(neox).save_pretrained(root / "sft")
    ptok.save_pretrained(root / "sft")
    neox.num_labels = 1
    GPTNeoXForSequenceClassification(neox).save_pretrained(root / "rm")
    ptok.save_pretrained(root / "rm")
    return root


def _imdb_like() -> DatasetDict:
    texts, labels = R.generate_reviews(120, seed=4)
    texts = [t.replace(". ", ".<br /><br />", 1) for t in texts]
    half = {"text": texts[:60], "label": labels[:60].tolist()}
    return DatasetDict(
        {
            "train": Dataset.from_dict(half),
            "test": Dataset.from_dict({"text": texts[60:], "label": labels[60:].tolist()}),
        }
    )


def _tldr_like() -> DatasetDict:
    posts = P.generate_posts(90, seed=8)
    rows = {
        "prompt": [p.prompt().replace("POST: ", "POST: " + "blah " * 300) for p in posts],
        "label": [" x"] * 90,
    }
    return DatasetDict(
        {
            k: Dataset.from_dict({c: v[i::3] for c, v in rows.items()})
            for i, k in enumerate(["train", "valid", "test"])
        }
    )


def test_paper_imdb_on_hub_schema(hub_dir: Path) -> None:
    kwargs = {
        "dataset": _imdb_like(),
        "policy_id": str(hub_dir / "gpt2"),
        "reward_id": str(hub_dir / "distilbert"),
    }
    task = get_task("imdb", profile="paper", n_train=50, n_test=20, **kwargs)
    assert task.profile == "paper" and task.dataset_id == "<in-memory>"
    assert (len(task.train_prompts), len(task.test_prompts)) == (50, 20)
    assert len(set(task.train_prompts)) > 40 and not any("<br" in p for p in task.train_prompts)
    r = task.reward_fn(task.test_prompts[:4], [" good."] * 4)
    assert r.shape == (4,) and np.isfinite(r).all()
    model, tok = task.load_policy(device="cpu")
    assert tok.pad_token == tok.eos_token and tok.padding_side == "left"
    with pytest.raises(ValueError, match="n_train"):
        get_task("imdb", profile="paper", n_train=61, **kwargs)  # not enough reviews: only 60
    with pytest.raises(ValueError, match="split"):
        get_task(
            "imdb",
            profile="paper",
            dataset=DatasetDict({"train": _imdb_like()["train"]}),
            policy_id=kwargs["policy_id"],
        )
    with pytest.raises(ValueError, match="output"):
        get_task("imdb", profile="paper", output="odds", n_train=5, n_test=5, **kwargs)
    # Hub defaults name the paper's ids.
    with pytest.raises(OfflineModelError, match="lvwerra/gpt2-imdb"):
        get_task("imdb", profile="paper", dataset=_imdb_like())


def test_paper_tldr_on_hub_schema(hub_dir: Path) -> None:
    kwargs = {
        "dataset": _tldr_like(),
        "policy_id": str(hub_dir / "sft"),
        "reward_id": str(hub_dir / "rm"),
    }
    task = get_task("tldr", profile="paper", n_test=10, max_prompt_tokens=100, **kwargs)
    tok = load_tokenizer(task.policy_id)
    assert len(task.train_prompts) == 30 and len(task.test_prompts) == 10
    for p in task.train_prompts:
        assert p.endswith("\nTL;DR:") and p.startswith("SUBREDDIT: r/")
        assert len(tok(p, add_special_tokens=False)["input_ids"]) <= 100
    assert task.sampling.max_new_tokens == 50 and task.sampling.temperature == 0.7
    r = task.reward_fn(task.test_prompts[:2], [" a", " b"], eos=[True, False])
    assert r[1] == -1.0 and np.isfinite(r[0])
    # The one-GPU variants pick other hub ids (here offline: the error names them).
    with pytest.raises(OfflineModelError, match="cleanrl/EleutherAI_pythia-1b-deduped__sft__tldr"):
        get_task("tldr", profile="paper", variant="1b", dataset=_tldr_like())
    with pytest.raises(OfflineModelError, match="mnoukhov/pythia410m-sft-tldr"):
        get_task("tldr", profile="paper", variant="410m", dataset=_tldr_like())
    with pytest.raises(ValueError, match="variant"):
        get_task("tldr", profile="paper", variant="7b", dataset=_tldr_like())


def test_paper_datasets_offline() -> None:
    with pytest.raises(OfflineDatasetError, match="stanfordnlp/imdb") as info:
        get_task("imdb", profile="paper")
    assert "smoke" in str(info.value)
    with pytest.raises(OfflineDatasetError, match="CarperAI/openai_summarize_tldr"):
        get_task("tldr", profile="paper")


def test_prompt_helpers(hub_dir: Path) -> None:
    tok = load_tokenizer(hub_dir / "sft")
    texts = R.generate_reviews(40, seed=2)[0]
    a = prefix_prompts(texts, tok, 30, seed=3, min_tokens=3, max_tokens=5)
    assert a == prefix_prompts(texts, tok, 30, seed=3, min_tokens=3, max_tokens=5)
    assert a != prefix_prompts(texts, tok, 30, seed=4, min_tokens=3, max_tokens=5)
    assert all(3 <= len(tok(p, add_special_tokens=False)["input_ids"]) <= 5 for p in a)
    with pytest.raises(ValueError, match="min_tokens"):
        prefix_prompts(texts, tok, 3, seed=0, min_tokens=5, max_tokens=3)

    prompt = (
        "SUBREDDIT: r/test\nTITLE: a title\nPOST: "
        + " ".join(f"word{i}" for i in range(200))
        + "\nTL;DR:"
    )
    short = truncate_prompt(prompt, tok, 40)
    assert short.endswith("\nTL;DR:") and short.startswith("SUBREDDIT: r/test")
    assert len(tok(short, add_special_tokens=False)["input_ids"]) <= 40
    body = short[: -len("\nTL;DR:")]
    assert prompt.startswith(body) and prompt[len(body)] == " "  # cut at a word boundary
    assert truncate_prompt("short\nTL;DR:", tok, 40) == "short\nTL;DR:"
    with pytest.raises(ValueError, match="TL;DR"):
        truncate_prompt("x " * 100, tok, 10)
