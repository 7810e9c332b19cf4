"""Loaders and the reward interface, on tiny random models saved like hub checkpoints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import (
    DistilBertConfig,
    DistilBertForSequenceClassification,
    GPT2Config,
    GPT2ForSequenceClassification,
    GPT2LMHeadModel,
    GPTNeoXConfig,
    GPTNeoXForSequenceClassification,
    PreTrainedTokenizerFast,
)

from vbon.models import (
    ClassifierReward,
    ModelNotFoundError,
    OfflineModelError,
    SequenceReward,
    eos_flags,
    load_causal_lm,
    load_reward_model,
    load_tokenizer,
    resolve_dtype,
)
from vbon.toy.train import EOS, train_bpe

TEXTS = [
    "the film was good and the acting was great",
    "a dull and lifeless movie with a bad plot",
    "I loved every minute of this wonderful picture",
    "the story was awful but the music was fine",
] * 20


def _tokenizer(tmp: Path, *, pad: bool, cls: bool = False) -> PreTrainedTokenizerFast:
    """A GPT-2-like tokenizer: byte-level BPE, <|endoftext|> as BOS/EOS, no pad unless asked."""
    backend = train_bpe(TEXTS, 300, [EOS, "<|pad|>", "<|cls|>"])
    extra = {"pad_token": "<|pad|>"} if pad else {}
    if cls:
        extra["cls_token"] = "<|cls|>"
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token=EOS, eos_token=EOS, model_max_length=64, **extra
    )


@pytest.fixture(scope="module")
def hub_like(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Local save_pretrained copies of tiny random GPT-2 / DistilBERT / GPTNeoX / GPT-2 RM models."""
    root = tmp_path_factory.mktemp("hub")
    torch.manual_seed(0)
    out = {}
    tok = _tokenizer(root, pad=False)  # GPT-2 on the hub has no pad token
    lm = GPT2LMHeadModel(
        GPT2Config(
            vocab_size=len(tok),
            n_positions=64,
            n_embd=32,
            n_layer=2,
            n_head=2,
            bos_token_id=0,
            eos_token_id=0,
        )
    )
    out["gpt2"] = root / "gpt2"
    lm.save_pretrained(out["gpt2"])
    tok.save_pretrained(out["gpt2"])

    ctok = _tokenizer(root, pad=True, cls=True)
    for name, id2label in {
        "clf": {0: "NEGATIVE", 1: "POSITIVE"},
        "clf_swapped": {0: "POSITIVE", 1: "NEGATIVE"},
    }.items():
        torch.manual_seed(1)
        clf = DistilBertForSequenceClassification(
            DistilBertConfig(
                vocab_size=len(ctok),
                max_position_embeddings=64,
                n_layers=1,
                n_heads=2,
                dim=32,
                hidden_dim=64,
                pad_token_id=ctok.pad_token_id,
                id2label=id2label,
                label2id={v: k for k, v in id2label.items()},
            )
        )
        out[name] = root / name
        clf.save_pretrained(out[name])
        ctok.save_pretrained(out[name])

    ntok = _tokenizer(root, pad=True)
    torch.manual_seed(2)
    rm = GPTNeoXForSequenceClassification(
        GPTNeoXConfig(
            vocab_size=len(ntok),
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=64,
            num_labels=1,
            pad_token_id=ntok.pad_token_id,
            eos_token_id=ntok.eos_token_id,
        )
    )
    out["neox_rm"] = root / "neox_rm"
    rm.save_pretrained(out["neox_rm"])
    ntok.save_pretrained(out["neox_rm"])

    # A GPT-2 RM whose tokenizer pads with EOS (as hub GPT-2 does): absolute positions and a pad id
    # that also ends every finished completion.
    torch.manual_seed(3)
    grm = GPT2ForSequenceClassification(
        GPT2Config(
            vocab_size=len(tok),
            n_positions=64,
            n_embd=32,
            n_layer=2,
            n_head=2,
            num_labels=1,
            pad_token_id=0,
        )
    )
    out["gpt2_rm"] = root / "gpt2_rm"
    grm.save_pretrained(out["gpt2_rm"])
    tok.save_pretrained(out["gpt2_rm"])
    return out


def test_causal_lm_round_trip(hub_like: dict[str, Path]) -> None:
    model, tok = load_causal_lm(hub_like["gpt2"], device="cpu")
    original = GPT2LMHeadModel.from_pretrained(hub_like["gpt2"]).eval()
    ids = tok(["the film was good"], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.equal(model(ids).logits, original(ids).logits)
    assert not model.training and model.dtype == torch.float32
    # No pad on the hub tokenizer: EOS pads, the vocabulary does not grow, generation pads left.
    assert tok.pad_token == tok.eos_token and len(tok) == model.config.vocab_size
    assert tok.padding_side == "left"
    assert model.generation_config.pad_token_id == tok.eos_token_id


def test_left_padded_generation_matches_unpadded(hub_like: dict[str, Path]) -> None:
    model, tok = load_causal_lm(hub_like["gpt2"], device="cpu")
    prompts = ["the film", "a dull and lifeless movie with"]
    batch = tok(prompts, return_tensors="pt", padding=True)
    out = model.generate(**batch, do_sample=False, max_new_tokens=5)
    alone = model.generate(
        **tok(prompts[:1], return_tensors="pt"), do_sample=False, max_new_tokens=5
    )
    assert torch.equal(out[0, -5:], alone[0, -5:])


def test_dtype_option(hub_like: dict[str, Path]) -> None:
    model, _ = load_causal_lm(hub_like["gpt2"], device="cpu", dtype="bfloat16")
    assert model.dtype == torch.bfloat16
    with pytest.raises(ValueError, match="dtype"):
        resolve_dtype("float33", torch.device("cpu"))


def test_classifier_reward_reads_the_positive_logit_by_name(hub_like: dict[str, Path]) -> None:
    prompts, completions = ["the film was", "a dull"], [" good and great", " and lifeless movie"]
    texts = [p + c for p, c in zip(prompts, completions, strict=True)]
    for name, index in (("clf", 1), ("clf_swapped", 0)):
        rm = load_reward_model(hub_like[name], device="cpu")
        assert isinstance(rm, ClassifierReward) and rm.label_index == index
        model = DistilBertForSequenceClassification.from_pretrained(hub_like[name]).eval()
        enc = rm.tokenizer(texts, return_tensors="pt", padding=True)
        with torch.no_grad():
            logits = model(**enc).logits
        np.testing.assert_allclose(
            rm(prompts, completions), logits[:, index].numpy(), rtol=1e-5, atol=1e-6
        )
        probs = load_reward_model(hub_like[name], device="cpu", output="prob")(prompts, completions)
        np.testing.assert_allclose(
            probs, logits.softmax(-1)[:, index].numpy(), rtol=1e-5, atol=1e-6
        )
    # The same weights with the labels swapped score the same class.
    a = load_reward_model(hub_like["clf"], device="cpu", label="POS")(prompts, completions)
    b = load_reward_model(hub_like["clf_swapped"], device="cpu", label_index=0)(
        prompts, completions
    )
    assert a.shape == b.shape == (2,) and a.dtype == np.float64


def test_classifier_reward_errors(hub_like: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="label"):
        load_reward_model(hub_like["clf"], device="cpu", label="NEUTRAL")
    with pytest.raises(ValueError, match="output"):
        load_reward_model(hub_like["clf"], device="cpu", output="odds")
    rm = load_reward_model(hub_like["clf"], device="cpu")
    with pytest.raises(ValueError, match="same length"):
        rm(["a", "b"], ["c"])
    with pytest.raises(ValueError, match="sequences"):
        rm("a", "b")
    with pytest.raises(ValueError, match="kind"):
        load_reward_model(hub_like["clf"], kind="ranker")


@pytest.mark.parametrize("name", ["neox_rm", "gpt2_rm"])
def test_sequence_reward_scores_the_last_token_whatever_the_padding(
    hub_like: dict[str, Path], name: str
) -> None:
    rm = load_reward_model(hub_like[name], device="cpu", batch_size=8)
    assert isinstance(rm, SequenceReward)
    prompts = ["the film was", "a dull and lifeless movie with a bad", "I"]
    completions = [" good", " plot and the story was awful", " loved it"]
    ended = [True, False, True]
    batched = rm(prompts, completions, eos=ended)
    alone = np.concatenate(
        [rm([p], [c], eos=[e]) for p, c, e in zip(prompts, completions, ended, strict=True)]
    )
    np.testing.assert_allclose(batched, alone, rtol=1e-4, atol=1e-5)
    # Direct check: the model's own pooled output on the unpadded sequence (+ EOS when ended).
    model = type(rm.model).from_pretrained(hub_like[name]).eval()
    ids = rm.tokenizer(prompts[0] + completions[0], add_special_tokens=False)["input_ids"] + [
        rm.tokenizer.eos_token_id
    ]
    with torch.no_grad():
        direct = model(
            inputs_embeds=model.get_input_embeddings()(torch.tensor([ids]))
        ).logits.item()
    assert batched[0] == pytest.approx(direct, rel=1e-4, abs=1e-5)


def test_sequence_reward_eos_penalty(hub_like: dict[str, Path]) -> None:
    rm = load_reward_model(hub_like["neox_rm"], device="cpu", eos_penalty=-20.0)
    prompts, completions = ["the film was", "a dull"], [" good", " and"]
    r = rm(prompts, completions, eos=[True, False])
    assert r[1] == -20.0 and r[0] != -20.0
    eos = rm.tokenizer.eos_token_id
    pad = rm.tokenizer.pad_token_id
    by_ids = rm(prompts, completions, completion_ids=[[5, 6, eos], [5, 6]])
    by_tensor = rm(prompts, completions, completion_ids=torch.tensor([[5, eos, pad], [5, 6, 7]]))
    np.testing.assert_array_equal(r, by_ids)
    np.testing.assert_array_equal(r, by_tensor)
    with pytest.raises(ValueError, match="eos"):
        rm(prompts, completions)
    with pytest.raises(ValueError, match="eos"):
        rm(prompts, completions, eos=[True])
    # Without a penalty, raw text can be scored as given.
    assert load_reward_model(hub_like["neox_rm"], device="cpu")(prompts, completions).shape == (2,)


def test_eos_flags() -> None:
    assert eos_flags(2, 0) is None
    np.testing.assert_array_equal(eos_flags(2, 0, completion_ids=[[1, 0], [1, 2]]), [True, False])
    np.testing.assert_array_equal(
        eos_flags(2, [0, 9], completion_ids=[[1, 9], [1, 2]]), [True, False]
    )
    np.testing.assert_array_equal(eos_flags(2, 0, eos=torch.tensor([False, True])), [False, True])
    with pytest.raises(ValueError, match="completion_ids"):
        eos_flags(3, 0, completion_ids=torch.zeros(2, 4, dtype=torch.long))


def test_offline_hub_id_and_missing_models(tmp_path: Path) -> None:
    with pytest.raises(OfflineModelError, match="vbon-tests/no-such-model") as info:
        load_causal_lm("vbon-tests/no-such-model")
    assert "smoke" in str(info.value)
    with pytest.raises(OfflineModelError, match="lvwerra/distilbert-imdb"):
        load_reward_model("lvwerra/distilbert-imdb")
    with pytest.raises(ModelNotFoundError, match="no model directory"):
        load_causal_lm(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match="config.json"):
        load_tokenizer(tmp_path / "empty")
    with pytest.raises(ValueError, match="padding_side"):
        load_tokenizer(tmp_path / "empty", padding_side="middle")
    assert issubclass(OfflineModelError, ValueError) and issubclass(ModelNotFoundError, ValueError)
