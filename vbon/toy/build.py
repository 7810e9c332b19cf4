"""Build the toy worlds into the cache: corpora, tokenizers, models, and a quality report.

Each world lives in ``<cache>/toy/<world>-<key>/`` where ``key`` hashes the builder's version, its
source code and settings, so a changed setting or builder never reuses a stale world. A build writes into a temporary
directory beside the final one and renames it into place (atomic), under a file lock (two
processes asking at once build once). A second call finds the directory and returns at once.

Layout of a world directory::

    policy/        causal LM + tokenizer (save_pretrained, safetensors): the reference policy
    reward/        reward model + tokenizer
    data/          datasets.DatasetDict with the hub dataset's schema (imdb: text, label; train,
                   test. tldr: prompt, label; train, valid, test)
    comparisons/   toy-tldr only: the preference pairs (prompt, chosen, rejected, *_eos)
    quality.json   the quality report (also printed by the build)
    settings.json  what built it
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from filelock import FileLock

from vbon.paths import cache_dir
from vbon.toy import posts as P
from vbon.toy import reviews as R
from vbon.toy import train as T
from vbon.toy.quality import summary_statistics

BUILDER_VERSION = 1
SENTIMENT = "toy-sentiment"
TLDR = "toy-tldr"
WORLDS = (SENTIMENT, TLDR)


@dataclass(frozen=True)
class SentimentSettings:
    """What the toy-sentiment world is built from; every field enters the cache key."""

    seed: int = 0
    n_train: int = 20000
    n_test: int = 2000
    vocab_size: int = 4096
    lm_layers: int = 2
    lm_dim: int = 128
    lm_heads: int = 4
    lm_positions: int = 128
    lm_steps: int = 500
    lm_batch: int = 48
    lm_lr: float = 3e-3
    n_short: int = 10000
    clf_layers: int = 2
    clf_heads: int = 4
    clf_steps: int = 600
    clf_batch: int = 32
    clf_lr: float = 1e-3
    n_quality: int = 256


@dataclass(frozen=True)
class TldrSettings:
    """What the toy-tldr world is built from; every field enters the cache key."""

    seed: int = 0
    n_sft: int = 12000
    n_groups: int = 4000
    n_valid: int = 500
    n_test: int = 1000
    n_pairs_test: int = 1000
    vocab_size: int = 4096
    layers: int = 2
    dim: int = 128
    heads: int = 4
    positions: int = 256
    sft_steps: int = 450
    sft_batch: int = 32
    sft_lr: float = 3e-3
    rm_steps: int = 800
    rm_batch: int = 5
    rm_lr: float = 1e-3
    n_quality: int = 32
    quality_m: int = 32


Settings = SentimentSettings | TldrSettings
DEFAULT_SETTINGS: dict[str, Settings] = {SENTIMENT: SentimentSettings(), TLDR: TldrSettings()}


@dataclass(frozen=True)
class ToyWorld:
    """A built toy world on disk: paths to hand to the loaders, and its quality report."""

    name: str
    path: Path
    quality: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def policy_path(self) -> Path:
        """The reference policy (GPT-2 LM for toy-sentiment, GPTNeoX SFT for toy-tldr)."""
        return self.path / "policy"

    @property
    def reward_path(self) -> Path:
        """The reward model (DistilBERT classifier / GPTNeoX sequence reward model)."""
        return self.path / "reward"

    @property
    def data_path(self) -> Path:
        """The corpus, a ``save_to_disk`` ``DatasetDict`` with the hub dataset's schema."""
        return self.path / "data"

    @property
    def comparisons_path(self) -> Path:
        """toy-tldr's preference pairs (train: the reward model's, test: held out)."""
        return self.path / "comparisons"

    def load_data(self) -> Any:
        """The world's corpus as a ``datasets.DatasetDict`` with the hub dataset's schema."""
        from datasets import load_from_disk

        return load_from_disk(str(self.data_path))


def _settings_for(name: str, settings: Settings | None) -> Settings:
    if name not in WORLDS:
        raise ValueError(f"world must be one of {WORLDS}, got {name!r}")
    settings = DEFAULT_SETTINGS[name] if settings is None else settings
    if not isinstance(settings, type(DEFAULT_SETTINGS[name])):
        raise ValueError(f"settings for {name} must be {type(DEFAULT_SETTINGS[name]).__name__}")
    return settings


def _source_digest() -> str:
    # The builder's own code enters the key too: an edited grammar or training loop must not
    # reuse a world built by the previous code, even when nobody remembered to bump the version.
    h = hashlib.sha256()
    for module in ("reviews.py", "posts.py", "train.py", "build.py"):
        h.update((Path(__file__).parent / module).read_bytes())
    return h.hexdigest()[:16]


def world_key(name: str, settings: Settings | None = None) -> str:
    """Hash of the builder version, its source and the settings: names the cache directory."""
    settings = _settings_for(name, settings)
    blob = json.dumps(
        {
            "world": name,
            "version": BUILDER_VERSION,
            "source": _source_digest(),
            "settings": dataclasses.asdict(settings),
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def world_dir(
    name: str, settings: Settings | None = None, cache: str | os.PathLike[str] | None = None
) -> Path:
    """Where the world built with these settings lives (whether or not it is built yet)."""
    root = Path(cache).expanduser() if cache is not None else cache_dir()
    return root / "toy" / f"{name}-{world_key(name, settings)}"


def _complete(path: Path) -> bool:
    return (path / "quality.json").is_file()


def _load(name: str, path: Path) -> ToyWorld:
    return ToyWorld(name, path, json.loads((path / "quality.json").read_text()))


@contextmanager
def _one_thread() -> Iterator[None]:
    # Tiny models gain little from intra-op threads, and with two builds (or any other job) on
    # two cores, OpenMP threads spinning against each other slow training tenfold. One thread
    # also makes the weights independent of the machine's core count.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def _ensure(
    name: str, settings: Settings, final: Path, *, force: bool, verbose: bool, position: int | None
) -> bool:
    """Build ``final`` unless complete (or ``force``); True when this call built it."""
    if _complete(final) and not force:
        return False
    final.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(final) + ".lock"):
        if _complete(final) and not force:  # another process built it while we waited
            return False
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
        try:
            builder = _build_sentiment if name == SENTIMENT else _build_tldr
            with _one_thread():
                quality = builder(tmp, settings, verbose=verbose, position=position)
            (tmp / "settings.json").write_text(
                json.dumps(
                    {
                        "world": name,
                        "version": BUILDER_VERSION,
                        "settings": dataclasses.asdict(settings),
                    },
                    indent=2,
                )
            )
            # quality.json is written last: its presence marks a complete world.
            (tmp / "quality.json").write_text(json.dumps(quality, indent=2))
            if final.exists():
                trash = final.with_name(f".{final.name}.old-{os.getpid()}")
                os.replace(final, trash)
                shutil.rmtree(trash, ignore_errors=True)
            os.replace(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return True


def _report(world: ToyWorld, verbose: bool) -> None:
    if verbose:
        print(format_quality(world), flush=True)
    failed = [k for k, ok in world.quality.get("passed", {}).items() if not ok]
    if failed:
        warnings.warn(f"{world.name}: quality bars missed: {', '.join(failed)}", stacklevel=3)


def build_world(
    name: str,
    *,
    settings: Settings | None = None,
    cache: str | os.PathLike[str] | None = None,
    force: bool = False,
    verbose: bool = True,
) -> ToyWorld:
    """Build one toy world, or return it when already built (a no-op then).

    ``name`` is ``"toy-sentiment"`` or ``"toy-tldr"``; ``cache`` defaults to
    :func:`vbon.paths.cache_dir` (``$VBON_CACHE``); ``force`` rebuilds. A fresh build prints its
    quality report (``verbose``) and warns when a quality bar is missed.
    """
    settings = _settings_for(name, settings)
    final = world_dir(name, settings, cache)
    built = _ensure(name, settings, final, force=force, verbose=verbose, position=None)
    world = _load(name, final)
    if built:
        _report(world, verbose)
    return world


def build_toy_worlds(
    *,
    names: Sequence[str] = WORLDS,
    cache: str | os.PathLike[str] | None = None,
    force: bool = False,
    verbose: bool = True,
    parallel: bool = True,
) -> dict[str, ToyWorld]:
    """Build (or load) the toy worlds with their default settings; returns ``{name: ToyWorld}``.

    With ``parallel`` (and more than one core), worlds that need building are built at the same
    time in child processes, one thread each: the same weights as a sequential build.
    """
    names = list(dict.fromkeys(names))
    for n in names:
        _settings_for(n, None)
    root = Path(cache).expanduser() if cache is not None else cache_dir()
    todo = [n for n in names if force or not _complete(world_dir(n, cache=root))]
    if parallel and len(todo) > 1 and (os.cpu_count() or 1) > 1:
        # The children must import this very package, installed or not.
        src = str(Path(__file__).resolve().parents[2])
        path = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH", "")) if p)
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
        procs = []
        for i, n in enumerate(todo):
            cmd = [sys.executable, "-m", "vbon.toy", n, "--cache", str(root), "--position", str(i)]
            cmd += ["--force"] if force else []
            cmd += [] if verbose else ["--quiet"]
            procs.append((n, subprocess.Popen(cmd, env=env)))
        failed = [(n, p.wait()) for n, p in procs]
        failed = [(n, rc) for n, rc in failed if rc != 0]
        if failed:
            raise RuntimeError(f"building {failed} failed (world, exit code); see the output above")
        for n in todo:
            _report(_load(n, world_dir(n, cache=root)), verbose)
    else:
        for n in todo:
            build_world(n, cache=root, force=force, verbose=verbose)
    return {n: _load(n, world_dir(n, cache=root)) for n in names}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m vbon.toy WORLD [--cache DIR] [--force] [--quiet]``: build one world (no report)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m vbon.toy")
    parser.add_argument("world", choices=WORLDS)
    parser.add_argument("--cache", default=None)
    parser.add_argument("--force", action="store_true")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--position", type=int, default=None, help="progress bar line")
    args = parser.parse_args(argv)
    settings = _settings_for(args.world, None)
    final = world_dir(args.world, settings, args.cache)
    _ensure(
        args.world,
        settings,
        final,
        force=args.force,
        verbose=not args.quiet,
        position=args.position,
    )
    return 0


def format_quality(world: ToyWorld) -> str:
    """The quality report as printed by the build."""
    q = world.quality
    lines = [f"{world.name}: {world.path}"]
    for k, v in q.get("metrics", {}).items():
        ok = q.get("passed", {}).get(k)
        mark = "" if ok is None else (" [ok]" if ok else " [MISSED]")
        bar = q.get("bars", {}).get(k)
        lines.append(f"  {k:32s} {v:.4g}" + (f"  (bar {bar})" if bar else "") + mark)
    lines.append(f"  build time {q.get('build_seconds', float('nan')):.0f}s")
    return "\n".join(lines)


def _check(metrics: dict[str, float], bars: dict[str, str]) -> dict[str, bool]:
    out = {}
    for k, bar in bars.items():
        v = metrics[k]
        lo, hi = bar.split("..") if ".." in bar else (bar.lstrip(">="), None)
        out[k] = bool(v >= float(lo) and (hi is None or v <= float(hi)))
    return out


SENTIMENT_BARS = {
    "classifier_heldout_accuracy": ">=0.95",
    "reference_positive_fraction": "0.2..0.8",
    "sample_parse_rate": ">=0.6",
}
# The toy-tldr bars: what makes the world behave like summarisation (vbon.toy.quality). The
# reward model must order pi_ref's own summaries as the hidden judgement does where that
# judgement differs by a fact (rm_sample_pair_accuracy); Spearman's rho is reported, not
# barred: the judgement ties many summaries (all facts, a few words apart) that the RM orders.
TLDR_BARS = {
    # Measured 0.90 on 1000 held-out pairs (SE 0.01) and 0.88 on pi_ref's samples: the bars
    # sit about five standard errors below, so a rebuild elsewhere passes them as it should.
    "rm_heldout_pair_accuracy": ">=0.85",
    "rm_sample_pair_accuracy": ">=0.8",
    "sft_distinct_share": ">=0.75",
    "sft_mode_reward_share": "0..0.1",
    "sft_eos_rate": "0.7..0.95",
    "rm_min_finished_minus_penalty": ">=0.5",
}


@torch.no_grad()
def sample(
    model: torch.nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    max_new_tokens: int,
    temperature: float,
    seed: int,
    batch_size: int = 64,
) -> tuple[list[str], np.ndarray]:
    """Sample one completion per prompt (ancestral, top_k 0, top_p 1); returns texts, ended-with-EOS."""
    torch.manual_seed(seed)
    texts: list[str] = []
    eos: list[bool] = []
    for i in range(0, len(prompts), batch_size):
        batch = list(prompts[i : i + batch_size])
        enc = tokenizer(batch, return_tensors="pt", padding=True, add_special_tokens=False)
        out = model.generate(
            **enc,
            do_sample=True,
            temperature=temperature,
            top_k=0,
            top_p=1.0,
            max_new_tokens=max_new_tokens,
            pad_token_id=tokenizer.pad_token_id,
        )
        new = out[:, enc["input_ids"].shape[1] :]
        eos += (new == tokenizer.eos_token_id).any(dim=1).tolist()
        texts += tokenizer.batch_decode(new, skip_special_tokens=True)
    return texts, np.array(eos, dtype=bool)


def _build_sentiment(
    out: Path, s: SentimentSettings, *, verbose: bool, position: int | None
) -> dict[str, Any]:
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value
    from transformers import (
        DistilBertConfig,
        DistilBertForSequenceClassification,
        GPT2Config,
        GPT2LMHeadModel,
    )

    from vbon.models import load_causal_lm, load_reward_model
    from vbon.tasks.imdb import prefix_prompts

    t0 = time.perf_counter()
    timings: dict[str, float] = {}

    def lap(stage: str) -> None:
        timings[stage] = round(time.perf_counter() - t0 - sum(timings.values()), 2)

    train_texts, train_y = R.generate_reviews(s.n_train, (s.seed, 1))
    test_texts, test_y = R.generate_reviews(s.n_test, (s.seed, 2))
    lap("corpus")

    bpe = T.train_bpe(train_texts, s.vocab_size, [T.EOS, "<|pad|>", "<|cls|>"])
    lm_tok = T.wrap_tokenizer(
        bpe, pad_token="<|pad|>", model_max_length=s.lm_positions, padding_side="left"
    )
    clf_tok = T.wrap_tokenizer(
        bpe,
        pad_token="<|pad|>",
        model_max_length=s.lm_positions,
        padding_side="right",
        cls_token="<|cls|>",
    )
    eos, pad_id = lm_tok.eos_token_id, lm_tok.pad_token_id
    ids = lm_tok(train_texts, add_special_tokens=False)["input_ids"]
    lap("tokenizer")

    # Half the documents start with BOS (unconditional sampling starts from it), half without
    # (task prompts are bare text prefixes, as with GPT-2 on IMDB).
    rng = np.random.default_rng((s.seed, 3))
    with_bos = rng.random(len(ids)) < 0.5
    seqs = [
        ([eos] if b else []) + x[: s.lm_positions - 2] + [eos]
        for x, b in zip(ids, with_bos, strict=True)
    ]
    torch.manual_seed(s.seed)
    lm = GPT2LMHeadModel(
        GPT2Config(
            vocab_size=len(lm_tok),
            n_positions=s.lm_positions,
            n_embd=s.lm_dim,
            n_layer=s.lm_layers,
            n_head=s.lm_heads,
            bos_token_id=eos,
            eos_token_id=eos,
            pad_token_id=pad_id,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
        )
    )
    lm_losses = T.run_steps(
        lm,
        T.lm_loss_fn(lm, seqs, [0] * len(seqs), pad_id),
        len(seqs),
        steps=s.lm_steps,
        batch_size=s.lm_batch,
        lr=s.lm_lr,
        seed=s.seed,
        desc="toy-sentiment LM",
        progress=verbose,
        position=position,
    )
    lm.generation_config.pad_token_id = pad_id
    lm.save_pretrained(out / "policy")
    lm_tok.save_pretrained(out / "policy")
    lap("lm")

    # The classifier also sees one-sentence reviews (sentence-level labels, as in SST), which is
    # what teaches it negation within the build's budget; it starts from the LM's token and
    # position embeddings, as encoders start from pretrained weights.
    rng = np.random.default_rng((s.seed, 4))
    short_pol = np.where(rng.random(s.n_short) < 0.5, 1, -1)
    short = [R.sentence(rng, int(p)) for p in short_pol]
    clf_texts = train_texts + short
    clf_y = np.concatenate([train_y, (short_pol > 0).astype(np.int64)])
    clf_ids = clf_tok(clf_texts, truncation=True, max_length=s.lm_positions)["input_ids"]
    torch.manual_seed(s.seed)
    clf = DistilBertForSequenceClassification(
        DistilBertConfig(
            vocab_size=len(clf_tok),
            max_position_embeddings=s.lm_positions,
            n_layers=s.clf_layers,
            n_heads=s.clf_heads,
            dim=s.lm_dim,
            hidden_dim=4 * s.lm_dim,
            dropout=0.0,
            attention_dropout=0.0,
            seq_classif_dropout=0.0,
            pad_token_id=pad_id,
            id2label={0: "NEGATIVE", 1: "POSITIVE"},
            label2id={"NEGATIVE": 0, "POSITIVE": 1},
        )
    )
    with torch.no_grad():
        clf.distilbert.embeddings.word_embeddings.weight.copy_(lm.transformer.wte.weight)
        clf.distilbert.embeddings.position_embeddings.weight.copy_(lm.transformer.wpe.weight)
    clf_losses = T.run_steps(
        clf,
        T.classifier_loss_fn(clf, clf_ids, clf_y, pad_id),
        len(clf_ids),
        steps=s.clf_steps,
        batch_size=s.clf_batch,
        lr=s.clf_lr,
        seed=s.seed + 1,
        desc="toy-sentiment classifier",
        progress=verbose,
        position=position,
    )
    clf.save_pretrained(out / "reward")
    clf_tok.save_pretrained(out / "reward")
    lap("classifier")

    features = Features({"text": Value("string"), "label": ClassLabel(names=["neg", "pos"])})
    DatasetDict(
        {
            "train": Dataset.from_dict(
                {"text": train_texts, "label": train_y.tolist()}, features=features
            ),
            "test": Dataset.from_dict(
                {"text": test_texts, "label": test_y.tolist()}, features=features
            ),
        }
    ).save_to_disk(str(out / "data"))
    lap("save")

    # Quality, measured through the public loaders so the saved files are what is checked.
    policy, tok = load_causal_lm(out / "policy", device="cpu")
    prob = load_reward_model(out / "reward", device="cpu", output="prob", batch_size=128)
    test_pred = prob([""] * len(test_texts), test_texts) > 0.5
    n = s.n_quality
    free, free_eos = sample(
        policy, tok, [tok.bos_token] * n, max_new_tokens=96, temperature=1.0, seed=s.seed
    )
    parses = [R.parse_review(t) for t in free]
    labelled = [(t, p.label) for t, p in zip(free, parses, strict=True) if p.label is not None]
    agree = prob([""] * len(labelled), [t for t, _ in labelled]) > 0.5 if labelled else np.array([])
    prompts = prefix_prompts(test_texts, tok, n, seed=s.seed)
    compl, _ = sample(policy, tok, prompts, max_new_tokens=40, temperature=1.0, seed=s.seed + 1)
    pos = prob(prompts, compl) > 0.5
    lap("quality")

    metrics = {
        "distinct_words": float(len(R.vocabulary())),
        "tokenizer_vocab_size": float(len(lm_tok)),
        "lm_final_loss": float(np.mean(lm_losses[-50:])),
        "classifier_heldout_accuracy": float(np.mean(test_pred == test_y.astype(bool))),
        "sample_parse_rate": float(np.mean([p.ok for p in parses])),
        "sample_eos_rate_96": float(free_eos.mean()),
        "sample_grammar_positive_fraction": float(np.mean([y for _, y in labelled]))
        if labelled
        else float("nan"),
        "classifier_accuracy_on_samples": float(
            np.mean(agree == np.array([y for _, y in labelled], dtype=bool))
        )
        if labelled
        else float("nan"),
        "reference_positive_fraction": float(pos.mean()),
        "classifier_final_loss": float(np.mean(clf_losses[-50:])),
    }
    curves = {"lm": _curve(lm_losses), "classifier": _curve(clf_losses)}
    return {
        "world": SENTIMENT,
        "metrics": metrics,
        "bars": SENTIMENT_BARS,
        "passed": _check(metrics, SENTIMENT_BARS),
        "timings": timings,
        "loss_curves": curves,
        "build_seconds": round(time.perf_counter() - t0, 1),
        "examples": {
            "free_samples": free[:5],
            "prompted": [p + c for p, c in zip(prompts[:5], compl[:5], strict=True)],
        },
    }


def _build_tldr(
    out: Path, s: TldrSettings, *, verbose: bool, position: int | None
) -> dict[str, Any]:
    from datasets import Dataset, DatasetDict
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM, GPTNeoXForSequenceClassification

    from vbon.models import load_causal_lm, load_reward_model

    t0 = time.perf_counter()
    timings: dict[str, float] = {}

    def lap(stage: str) -> None:
        timings[stage] = round(time.perf_counter() - t0 - sum(timings.values()), 2)

    sft_posts = P.generate_posts(s.n_sft, (s.seed, 1))
    sft_refs = P.sft_summaries(sft_posts, (s.seed, 2))
    groups = P.preference_groups(P.generate_posts(s.n_groups, (s.seed, 3)), (s.seed, 4))
    groups = [g for g in groups if g.pairs()]
    pairs = [
        P.Pair(g.post, g.summaries[i], g.summaries[j], g.eos[i], g.eos[j])
        for g in groups
        for i, j in g.pairs()
    ]
    valid_posts = P.generate_posts(s.n_valid, (s.seed, 5))
    test_posts = P.generate_posts(s.n_test, (s.seed, 6))
    test_pairs = P.preference_pairs(P.generate_posts(s.n_pairs_test, (s.seed, 7)), (s.seed, 8))
    lap("corpus")

    corpus = [p.prompt() + r.text for p, r in zip(sft_posts, sft_refs, strict=True)]
    corpus += [g.post.prompt() + "\n".join(x.text for x in g.summaries) for g in groups]
    bpe = T.train_bpe(corpus, s.vocab_size, [T.EOS, "<|padding|>"])
    tok = T.wrap_tokenizer(
        bpe, pad_token="<|padding|>", model_max_length=s.positions, padding_side="left"
    )
    eos, pad_id = tok.eos_token_id, tok.pad_token_id

    def encode(
        prompts: list[str], summaries: list[str], ends: Sequence[bool]
    ) -> tuple[list[list[int]], list[int]]:
        p_ids = tok(prompts, add_special_tokens=False)["input_ids"]
        s_ids = tok(summaries, add_special_tokens=False)["input_ids"]
        seqs = [
            (a + b + ([eos] if e else []))[-s.positions :]
            for a, b, e in zip(p_ids, s_ids, ends, strict=True)
        ]
        return seqs, [len(a) for a in p_ids]

    sft_seqs, sft_from = encode(
        [p.prompt() for p in sft_posts], [r.text for r in sft_refs], [True] * len(sft_posts)
    )
    lap("tokenizer")

    config = GPTNeoXConfig(
        vocab_size=len(tok),
        hidden_size=s.dim,
        num_hidden_layers=s.layers,
        num_attention_heads=s.heads,
        intermediate_size=4 * s.dim,
        max_position_embeddings=s.positions,
        bos_token_id=eos,
        eos_token_id=eos,
        pad_token_id=pad_id,
        tie_word_embeddings=False,
        hidden_dropout=0.0,
        attention_dropout=0.0,
    )
    torch.manual_seed(s.seed)
    sft = GPTNeoXForCausalLM(config)
    sft_losses = T.run_steps(
        sft,
        T.lm_loss_fn(sft, sft_seqs, sft_from, pad_id),
        len(sft_seqs),
        steps=s.sft_steps,
        batch_size=s.sft_batch,
        lr=s.sft_lr,
        seed=s.seed,
        desc="toy-tldr SFT",
        progress=verbose,
        position=position,
    )
    sft.generation_config.pad_token_id = pad_id
    sft.save_pretrained(out / "policy")
    tok.save_pretrained(out / "policy")
    lap("sft")

    # The reward model starts from the SFT model, as in Huang et al.'s TL;DR pipeline.
    torch.manual_seed(s.seed + 1)
    rm = GPTNeoXForSequenceClassification(_rm_config(config))
    rm.gpt_neox.load_state_dict(sft.gpt_neox.state_dict())
    # Each post comes with several summaries, ranked, and the loss uses every ranked pair
    # (as InstructGPT did with K ranked responses): several times the signal of one pair per post
    # for the same forward passes.
    group_seqs = [
        encode([g.post.prompt()] * len(g.summaries), [x.text for x in g.summaries], g.eos)[0]
        for g in groups
    ]
    rm_losses = T.run_steps(
        rm,
        T.bradley_terry_group_loss_fn(rm, group_seqs, [g.pairs() for g in groups], pad_id),
        len(groups),
        steps=s.rm_steps,
        batch_size=s.rm_batch,
        lr=s.rm_lr,
        seed=s.seed + 1,
        desc="toy-tldr reward model",
        progress=verbose,
        position=position,
    )
    # Bradley-Terry fixes the scores only up to a constant: like Huang et al.'s reward models,
    # the saved one is normalised so that reference summaries of held-out posts score mean 0,
    # standard deviation 1.
    valid_refs = P.sft_summaries(valid_posts, (s.seed, 9))
    valid_seqs = encode(
        [p.prompt() for p in valid_posts], [r.text for r in valid_refs], [True] * len(valid_posts)
    )[0]
    _normalise_reward_model(rm, valid_seqs, pad_id)
    rm.save_pretrained(out / "reward")
    tok.save_pretrained(out / "reward")
    lap("rm")

    refs = {
        "train": (sft_posts, sft_refs),
        "valid": (valid_posts, valid_refs),
        "test": (test_posts, P.sft_summaries(test_posts, (s.seed, 10))),
    }
    DatasetDict(
        {
            k: Dataset.from_dict(
                {"prompt": [p.prompt() for p in ps], "label": [r.text for r in rs]}
            )
            for k, (ps, rs) in refs.items()
        }
    ).save_to_disk(str(out / "data"))

    def comparisons(xs: list[P.Pair]) -> Dataset:
        return Dataset.from_dict(
            {
                "prompt": [x.post.prompt() for x in xs],
                "chosen": [x.chosen.text for x in xs],
                "rejected": [x.rejected.text for x in xs],
                "chosen_eos": [x.chosen_eos for x in xs],
                "rejected_eos": [x.rejected_eos for x in xs],
            }
        )

    DatasetDict({"train": comparisons(pairs), "test": comparisons(test_pairs)}).save_to_disk(
        str(out / "comparisons")
    )
    lap("save")

    # Quality, through the public loaders, at the task's sampling settings (vbon.tasks.tldr).
    policy, ptok = load_causal_lm(out / "policy", device="cpu")
    reward = load_reward_model(out / "reward", device="cpu", batch_size=64)
    tp = [x.post.prompt() for x in test_pairs]
    r_c = reward(tp, [x.chosen.text for x in test_pairs], eos=[x.chosen_eos for x in test_pairs])
    r_r = reward(
        tp, [x.rejected.text for x in test_pairs], eos=[x.rejected_eos for x in test_pairs]
    )
    stats = summary_statistics(
        policy,
        ptok,
        reward,
        test_posts[: s.n_quality],
        m=s.quality_m,
        seed=s.seed,
        eos_penalty=TLDR_EOS_PENALTY,
    )
    lap("quality")

    metrics = {
        "tokenizer_vocab_size": float(len(tok)),
        "sft_final_loss": float(np.mean(sft_losses[-50:])),
        "rm_final_loss": float(np.mean(rm_losses[-50:])),
        "rm_heldout_pair_accuracy": float(np.mean(r_c > r_r)),
        **{k: v for k, v in stats.items() if k != "examples"},
    }
    curves = {"sft": _curve(sft_losses), "rm": _curve(rm_losses)}
    return {
        "world": TLDR,
        "metrics": metrics,
        "bars": TLDR_BARS,
        "passed": _check(metrics, TLDR_BARS),
        "timings": timings,
        "loss_curves": curves,
        "build_seconds": round(time.perf_counter() - t0, 1),
        "examples": {"sft_samples": stats["examples"]},
    }


# The reward a summary that never ends gets on the toy world (the task's r_EOS on the smoke
# profile): below every finished summary's score, as the authors' -20 was on their reward
# model's scale. The normalised reward model scores finished summaries within about 5 standard
# deviations of the reference summaries' mean (quality bar ``rm_min_finished_minus_penalty``).
TLDR_EOS_PENALTY = -8.0


@torch.no_grad()
def _normalise_reward_model(rm: Any, seqs: list[list[int]], pad_id: int) -> tuple[float, float]:
    """Rescale ``rm`` in place so that its scores of ``seqs`` have mean 0 and SD 1; returns the
    (mean, SD) before. The score head has no bias, so the shift goes into the final layer norm's
    bias along the head's direction (the head reads the norm's output linearly)."""
    scores = []
    for i in range(0, len(seqs), 64):
        ids, mask = T.pad(seqs[i : i + 64], pad_id, side="left")
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = rm(input_ids=ids, attention_mask=mask, position_ids=positions).logits[:, 0]
        scores.append(out)
    s = torch.cat(scores)
    mu, sd = float(s.mean()), float(s.std())
    w = rm.score.weight  # (1, hidden)
    w.div_(sd)
    norm = rm.gpt_neox.final_layer_norm
    norm.bias.sub_((mu / sd) * w[0] / w[0].pow(2).sum())
    return mu, sd


def _curve(losses: list[float], points: int = 10) -> list[float]:
    """The loss curve in ``points`` block means (kept in quality.json for diagnosis)."""
    return [
        round(float(np.mean(b)), 4) for b in np.array_split(np.asarray(losses), points) if len(b)
    ]


def _rm_config(config: Any) -> Any:
    from transformers import GPTNeoXConfig

    d = config.to_dict()
    d["num_labels"] = 1
    d.pop("id2label", None)
    d.pop("label2id", None)
    return GPTNeoXConfig(**d)
