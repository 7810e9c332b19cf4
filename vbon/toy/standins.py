"""A stand-in Hugging Face cache: the paper profile's hub ids, offline, in seconds.

``build_hub_standins(hf_home)`` writes tiny random-weight models of the real classes, with
tokenizers of the real classes and datasets with the hub schemas, into a Hugging Face cache
rooted at ``hf_home``, under the real hub ids and at the revisions the tasks pin
(``vbon.tasks.imdb.HUB_REVISIONS``, ``vbon.tasks.tldr.HUB_REVISIONS``). With
``HF_HOME=hf_home`` and ``HF_HUB_OFFLINE=1``, the paper profile then runs end to end through
exactly the code a GPU user runs: ``from_pretrained(id, revision=sha)`` and
``datasets.load_dataset(id, revision=sha)``. Its numbers mean nothing (the weights are random);
what it rehearses is the code path: hub loaders, revisions, the datasets' schemas, PPO, the
TL;DR prompts.

Layout (what an online run leaves in a cache):

- models: ``hub/models--<owner>--<name>/snapshots/<sha>/`` (config, weights, tokenizer files)
  and ``refs/main`` holding ``<sha>``, so a pinned ``revision=<sha>`` and an unpinned ``main``
  both resolve (``huggingface_hub.try_to_load_from_cache``);
- datasets: the hub repository's files (``hub/datasets--<owner>--<name>/snapshots/<sha>/``:
  parquet shards and a README whose ``configs`` name the splits, plus ``refs/main``), and the
  prepared Arrow cache ``datasets/<owner>___<name>/<config>/0.0.0/<sha>/`` that
  ``load_dataset`` writes when it first loads the repository at commit ``<sha>``. Offline,
  ``datasets`` (5.x) never reads the hub snapshot: it falls back to that prepared cache, and
  it takes the latest prepared version whatever ``revision`` asks for.

A hub id without a pin gets a stand-in sha (``standin_sha``) as its ``main``. Deterministic:
the same ``hf_home`` contents for the same vbon source.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = ["StandIns", "build_hub_standins", "hub_ids", "standin_sha"]

EOS = "<|endoftext|>"
NEOX_PAD = "[PAD]"  # the pad token the TL;DR SFT tokenizers of Huang et al. add
BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
IMDB_ROWS = {"train": 6000, "test": 1000, "unsupervised": 200}  # >= the task's 5000 / 512
TLDR_ROWS = {"train": 1200, "valid": 100, "test": 600}
_MARKER = ".vbon-standins.json"


@dataclass(frozen=True)
class StandIns:
    """What ``build_hub_standins`` wrote: the cache root and the revision of each hub id."""

    hf_home: Path
    models: dict[str, str]
    datasets: dict[str, str]

    def env(self) -> dict[str, str]:
        """Environment variables that make a process read this cache offline."""
        return {
            "HF_HOME": str(self.hf_home),
            "HF_HUB_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
        }


def standin_sha(repo_id: str) -> str:
    """The stand-in commit of a hub id that vbon does not pin (its ``main``)."""
    return hashlib.sha1(f"vbon-standin:{repo_id}".encode()).hexdigest()


def hub_ids() -> dict[str, dict[str, str]]:
    """``{"models": {id: sha}, "datasets": {id: sha}}``: every hub source the paper profile
    loads (both tasks, every TL;DR variant, the gold reward models), at its pinned commit or
    at a stand-in ``main``."""
    from vbon.tasks import imdb, tldr

    pins = {**imdb.HUB_REVISIONS, **tldr.HUB_REVISIONS}
    models = [imdb.HUB_POLICY, imdb.HUB_REWARD]
    models += [m for pair in tldr.VARIANTS.values() for m in pair]
    models += [m for m in tldr.HUB_REVISIONS if m not in models]  # the 6.9B pair
    data = [imdb.HUB_DATASET, tldr.HUB_DATASET]
    return {
        "models": {m: pins.get(m, standin_sha(m)) for m in models},
        "datasets": {d: pins.get(d, standin_sha(d)) for d in data},
    }


def _source_key() -> str:
    text = Path(__file__).read_text() + json.dumps(hub_ids(), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _repo_dir(hf_home: Path, kind: str, repo_id: str) -> Path:
    return hf_home / "hub" / f"{kind}s--{repo_id.replace('/', '--')}"


def _snapshot(hf_home: Path, kind: str, repo_id: str, sha: str) -> Path:
    repo = _repo_dir(hf_home, kind, repo_id)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(sha)
    snap = repo / "snapshots" / sha
    snap.mkdir(parents=True, exist_ok=True)
    return snap


# -- corpora ---------------------------------------------------------------------------------
def _reviews() -> tuple[list[str], list[int]]:
    """Toy movie reviews in IMDB's shape: several sentences joined by HTML line breaks."""
    import numpy as np

    from vbon.toy import reviews as R

    texts, labels = R.generate_reviews(240, seed=(7, 0))
    rng = np.random.default_rng(7)
    n = sum(IMDB_ROWS.values())
    out_t, out_l = [], []
    for _ in range(n):
        a, b = (int(i) for i in rng.integers(0, len(texts), 2))
        out_t.append(texts[a] + "<br /><br />" + texts[b])
        out_l.append(int(labels[a]))
    return out_t, out_l


def _posts() -> tuple[list[str], list[str]]:
    from vbon.toy import posts as P

    posts = P.generate_posts(sum(TLDR_ROWS.values()), seed=(7, 1))
    summaries = P.sft_summaries(posts, seed=(7, 2))
    return [p.prompt() for p in posts], [s.text for s in summaries]


# -- tokenizers ------------------------------------------------------------------------------
def _bpe(texts: Iterable[str], vocab_size: int) -> tuple[dict[str, int], list[tuple[str, str]]]:
    from vbon.toy.train import train_bpe

    model = json.loads(train_bpe(list(texts), vocab_size, [EOS]).to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return model["vocab"], merges


def _gpt2_tokenizer(vocab: dict[str, int], merges: list[tuple[str, str]]):
    from transformers import GPT2TokenizerFast

    return GPT2TokenizerFast(vocab=dict(vocab), merges=list(merges), model_max_length=1024)


def _neox_tokenizer(vocab: dict[str, int], merges: list[tuple[str, str]]):
    from transformers import GPTNeoXTokenizerFast

    tok = GPTNeoXTokenizerFast(
        vocab=dict(vocab), merges=list(merges), pad_token=EOS, model_max_length=2048
    )
    tok.add_special_tokens({"pad_token": NEOX_PAD})
    return tok


def _bert_tokenizer(texts: Iterable[str], vocab_size: int):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import DistilBertTokenizerFast

    backend = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size, special_tokens=BERT_SPECIALS, show_progress=False
    )
    backend.train_from_iterator(list(texts), trainer=trainer)
    vocab = backend.get_vocab()
    return DistilBertTokenizerFast(vocab=vocab, do_lower_case=True, model_max_length=512)


# -- models ----------------------------------------------------------------------------------
def _favour_eos(model, eos_id: int, strength: float = 3.5) -> None:
    """Make a random causal LM end about 3% of its tokens with EOS (a random head spreads its
    mass over the whole vocabulary, so summaries would almost never end): the final norm's
    bias points along a direction that only the EOS row of the output embedding reads."""
    import torch

    with torch.no_grad():
        norm = model.get_decoder().final_layer_norm if hasattr(model, "gpt_neox") else None
        if norm is None:
            return
        v = torch.randn(norm.bias.shape, generator=torch.Generator().manual_seed(eos_id))
        v = v / v.norm()
        norm.bias.copy_(v)
        model.get_output_embeddings().weight[eos_id] = strength * v


def _neox_config(tok, **changes):
    from transformers import GPTNeoXConfig

    return GPTNeoXConfig(
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=9,  # the TL;DR PPO trains the top 8 blocks (Pythia has 16 to 32)
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=2048,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=False,
        **changes,
    )


def _write_model(model, tok, snap: Path, *, safetensors: bool = True) -> None:
    """``save_pretrained`` into the snapshot; ``safetensors=False``: the weights as a pickled
    ``pytorch_model.bin`` instead, as repositories last changed before 2023 hold them (the
    IMDB models' pinned commits), so the rehearsal loads them the way a GPU user does."""
    import torch

    model.save_pretrained(snap)
    if not safetensors:
        (snap / "model.safetensors").unlink()
        torch.save(model.state_dict(), snap / "pytorch_model.bin")
    tok.save_pretrained(snap)


def _write_dataset(
    hf_home: Path,
    repo_id: str,
    sha: str,
    splits: dict[str, dict[str, list]],
    *,
    config: str,
    data_dir: str,
) -> None:
    """The hub repository's parquet shards and README, and the prepared Arrow cache that
    ``load_dataset(repo_id, revision=sha)`` leaves (built by ``datasets``' own builder)."""
    import pandas as pd
    from datasets.load import LocalDatasetModuleFactory, get_dataset_builder_class

    snap = _snapshot(hf_home, "dataset", repo_id, sha)
    lines = ["---", "configs:", f"- config_name: {config}", "  data_files:"]
    for split, columns in splits.items():
        (snap / data_dir).mkdir(parents=True, exist_ok=True)
        pd.DataFrame(columns).to_parquet(
            snap / data_dir / f"{split}-00000-of-00001.parquet", index=False
        )
        lines += [f"  - split: {split}", f"    path: {data_dir}/{split}-*"]
    lines += ["  default: true", "---", f"# Stand-in of {repo_id} (vbon.toy.standins)", ""]
    (snap / "README.md").write_text("\n".join(lines))
    module = LocalDatasetModuleFactory(str(snap)).get_module()
    builder_cls = get_dataset_builder_class(module, dataset_name=repo_id.split("/")[-1])
    kwargs = {k: v for k, v in module.builder_kwargs.items() if k != "dataset_name"}
    from datasets.naming import camelcase_to_snakecase

    builder = builder_cls(
        cache_dir=str(hf_home / "datasets"),
        dataset_name=camelcase_to_snakecase(repo_id.split("/")[-1]),
        config_name=config,
        hash=sha,
        **kwargs,
    )
    # The builder refuses local data files for a hub repo_id; set it after construction so
    # that the cache directory is named as a hub load names it (<owner>___<name>).
    builder.repo_id = repo_id
    builder._cache_dir = builder._build_cache_dir()
    builder.download_and_prepare()


def build_hub_standins(hf_home: str | Path, *, force: bool = False) -> StandIns:
    """Write the stand-in cache into ``hf_home`` (once: a later call with the same vbon
    source returns at once); returns its ids and revisions. Takes a few seconds on one core."""
    hf_home = Path(hf_home).expanduser().resolve()
    ids = hub_ids()
    out = StandIns(hf_home, ids["models"], ids["datasets"])
    marker = hf_home / _MARKER
    key = _source_key()
    if not force and marker.is_file() and json.loads(marker.read_text()).get("key") == key:
        return out
    hf_home.mkdir(parents=True, exist_ok=True)
    with _quiet():
        _build(hf_home, ids)
    marker.write_text(json.dumps({"key": key, **ids}, indent=2, sort_keys=True) + "\n")
    return out


@contextmanager
def _quiet():
    """No progress bars of transformers and datasets while building (restored after)."""
    import datasets
    import transformers

    log = transformers.utils.logging
    bars = (datasets.is_progress_bar_enabled(), log.is_progress_bar_enabled())
    datasets.disable_progress_bars()
    log.disable_progress_bar()
    try:
        yield
    finally:
        if bars[0]:
            datasets.enable_progress_bars()
        if bars[1]:
            log.enable_progress_bar()


def _build(hf_home: Path, ids: dict[str, dict[str, str]]) -> None:
    import torch
    from transformers import (
        DistilBertConfig,
        DistilBertForSequenceClassification,
        GPT2Config,
        GPT2LMHeadModel,
        GPTNeoXForCausalLM,
        GPTNeoXForSequenceClassification,
    )

    from vbon.tasks import imdb, tldr

    torch.manual_seed(0)

    texts, labels = _reviews()
    prompts, summaries = _posts()
    vocab, merges = _bpe(texts[:2000] + prompts + summaries, 1000)

    # IMDB: GPT-2 policy (pickled weights, as at the pinned commit), DistilBERT classifier.
    gpt2_tok = _gpt2_tokenizer(vocab, merges)
    gpt2 = GPT2LMHeadModel(
        GPT2Config(
            vocab_size=len(gpt2_tok), n_positions=1024, n_embd=32, n_layer=2, n_head=2,
            bos_token_id=gpt2_tok.bos_token_id, eos_token_id=gpt2_tok.eos_token_id,
        )
    )  # fmt: skip
    pol = imdb.HUB_POLICY
    snap = _snapshot(hf_home, "model", pol, ids["models"][pol])
    _write_model(gpt2, gpt2_tok, snap, safetensors=False)
    bert_tok = _bert_tokenizer(texts[:2000], 600)
    bert = DistilBertForSequenceClassification(
        DistilBertConfig(
            vocab_size=len(bert_tok), n_layers=2, n_heads=2, dim=32, hidden_dim=64,
            max_position_embeddings=512, pad_token_id=bert_tok.pad_token_id,
            id2label={0: "NEGATIVE", 1: "POSITIVE"}, label2id={"NEGATIVE": 0, "POSITIVE": 1},
        )
    )  # fmt: skip
    rm = imdb.HUB_REWARD
    snap = _snapshot(hf_home, "model", rm, ids["models"][rm])
    _write_model(bert, bert_tok, snap, safetensors=False)

    # TL;DR: a GPTNeoX SFT policy and a scalar GPTNeoX reward model per repository.
    neox_tok = _neox_tokenizer(vocab, merges)
    rm_ids = {r for _, r in tldr.VARIANTS.values()} | {
        m for m in tldr.HUB_REVISIONS if "reward" in m
    }
    for repo_id, sha in ids["models"].items():
        if repo_id in (imdb.HUB_POLICY, imdb.HUB_REWARD):
            continue
        if repo_id in rm_ids:
            model = GPTNeoXForSequenceClassification(_neox_config(neox_tok, num_labels=1))
        else:
            model = GPTNeoXForCausalLM(_neox_config(neox_tok))
            _favour_eos(model, neox_tok.eos_token_id)
        _write_model(model, neox_tok, _snapshot(hf_home, "model", repo_id, sha))

    # Datasets with the hub schemas and split names.
    bounds, start = {}, 0
    for split, n in IMDB_ROWS.items():
        bounds[split] = (start, start + n)
        start += n
    imdb_splits = {
        s: {"text": texts[a:b], "label": labels[a:b] if s != "unsupervised" else [-1] * (b - a)}
        for s, (a, b) in bounds.items()
    }
    _write_dataset(
        hf_home, imdb.HUB_DATASET, ids["datasets"][imdb.HUB_DATASET], imdb_splits,
        config="plain_text", data_dir="plain_text",
    )  # fmt: skip
    tldr_splits, start = {}, 0
    for split, n in TLDR_ROWS.items():
        tldr_splits[split] = {
            "prompt": prompts[start : start + n],
            "label": summaries[start : start + n],
        }
        start += n
    _write_dataset(
        hf_home, tldr.HUB_DATASET, ids["datasets"][tldr.HUB_DATASET], tldr_splits,
        config="default", data_dir="data",
    )  # fmt: skip
