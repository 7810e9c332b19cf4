"""Load policies, reference models and reward models from a hub id or a local directory.

The toy worlds (:mod:`vbon.toy`) are saved with ``save_pretrained`` and loaded through exactly these
functions, so the smoke profile exercises the code path of the paper's hub models.

Reward models share one interface, :class:`RewardModel`: ``rm(prompts, completions)`` returns one
float per completion, computed in batches without gradients.

- :class:`ClassifierReward`: a sentiment classifier's POSITIVE logit (the authors' code) or
  p(POSITIVE) (the paper's text). The class is found by name in ``config.label2id``, never by
  position, so a checkpoint with the labels in another order still scores the right class.
- :class:`SequenceReward`: the scalar head of a sequence-level reward model (TL;DR). A completion
  that did not end with EOS gets a fixed penalty reward; whether it ended is told by the caller
  (``eos=`` or ``completion_ids=``), from the generated tokens, never guessed from text.
"""

from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from huggingface_hub import is_offline_mode
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

__all__ = [
    "ClassifierReward",
    "ModelNotFoundError",
    "OfflineError",
    "OfflineModelError",
    "RewardModel",
    "SequenceReward",
    "eos_flags",
    "load_causal_lm",
    "load_reward_model",
    "load_tokenizer",
    "cpu_threads",
    "resolve_device",
    "resolve_dtype",
]

SMOKE_HINT = (
    "The smoke profile runs offline on the built-in toy worlds (vbon.tasks.get_task(name, "
    "profile='smoke'), or `vbon toy build`); for the paper profile, download the model once with "
    "network access (it is then read from the Hugging Face cache) or pass a local directory."
)


class OfflineError(ValueError):
    """A hub model or dataset was asked for, but the hub cannot be reached and no copy is local."""


class OfflineModelError(OfflineError):
    """A hub model id was asked for offline and is neither a local directory nor in the HF cache."""


class ModelNotFoundError(ValueError):
    """A local model path does not exist or does not hold a model."""


def _looks_like_path(name: str) -> bool:
    # Hub ids are "name" or "owner/name"; anything with more parts, or anchored, is a path.
    return (
        name.startswith(("/", ".", "~")) or name.count("/") > 1 or os.sep != "/" and os.sep in name
    )


def _check_source(
    name_or_path: str | os.PathLike[str], what: str, revision: str | None = None
) -> str:
    if not isinstance(name_or_path, str | os.PathLike) or not str(name_or_path).strip():
        raise ValueError(f"{what} must be a hub id or a local directory, got {name_or_path!r}")
    if revision is not None and (not isinstance(revision, str) or not revision.strip()):
        raise ValueError(f"revision: must be a hub commit, branch or tag, got {revision!r}")
    name = str(name_or_path)
    path = Path(name).expanduser()
    if path.is_dir() and revision is not None:
        raise ValueError(
            f"revision: {what} {name!r} is a local directory; a revision pins hub ids only"
        )
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(
                f"{what} {name!r} is a directory without config.json: not a saved model "
                "(save one with model.save_pretrained(path))"
            )
        return str(path)
    if _looks_like_path(name) or path.exists():
        raise ModelNotFoundError(f"{what} {name!r}: no model directory at {path}")
    return name


@contextmanager
def _explain_load_errors(name: str, what: str):
    try:
        yield
    except OSError as e:
        local = Path(name).expanduser().is_dir()
        if not local and (
            is_offline_mode() or "connect" in str(e).lower() or "offline" in str(e).lower()
        ):
            raise OfflineModelError(
                f"{what} {name!r} is a hub id, but the hub is offline (HF_HUB_OFFLINE=1 or no network) "
                f"and it is not in the local Hugging Face cache. {SMOKE_HINT}"
            ) from e
        raise ModelNotFoundError(f"could not load {what} {name!r}: {e}") from e


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype | str:
    """``None`` -> float32 on CPU (half precision is slow there) and the checkpoint's dtype elsewhere."""
    if dtype is None:
        return torch.float32 if device.type == "cpu" else "auto"
    if isinstance(dtype, torch.dtype) or dtype == "auto":
        return dtype
    value = getattr(torch, str(dtype), None)
    if not isinstance(value, torch.dtype):
        raise ValueError(f"dtype must be a torch dtype, its name or 'auto', got {dtype!r}")
    return value


@contextmanager
def cpu_threads(threads: int | None):
    """Run the block with ``threads`` torch intra-op threads on a CPU (None: leave as is).

    The toy worlds' models are too small for intra-op parallelism to pay, and when another
    process shares the cores, OpenMP threads that spin-wait for each other are preempted:
    sampling measured 20x slower with 2 threads than with 1 beside one busy process. The smoke
    profile therefore samples and trains with one thread; GPUs are unaffected.
    """
    if threads is None or torch.cuda.is_available():
        yield
        return
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads: must be an integer >= 1 or None, got {threads!r}")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` -> the first CUDA device when there is one, else the CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _revision_kwargs(revision: str | None) -> dict[str, str]:
    return {} if revision is None else {"revision": revision}


def load_tokenizer(
    name_or_path: str | os.PathLike[str],
    *,
    padding_side: Literal["left", "right"] = "left",
    revision: str | None = None,
) -> PreTrainedTokenizerBase:
    """Load a tokenizer, with a pad token and the given padding side.

    ``revision`` (a hub commit sha, branch or tag; hub ids only) pins the files loaded.

    A tokenizer without a pad token (GPT-2) pads with its EOS token. Adding a new string such as
    ``"[PAD]"`` instead would grow the vocabulary past the model's embedding matrix, or, if not
    registered as special, re-tokenise into ordinary tokens. Attention masks keep pads out of the
    computation, so reusing EOS is safe. Left padding is what batched generation needs.
    """
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
    source = _check_source(name_or_path, "tokenizer", revision)
    with _explain_load_errors(source, "tokenizer"):
        tok = AutoTokenizer.from_pretrained(source, **_revision_kwargs(revision))
    if tok.pad_token is None:
        if tok.eos_token is None:
            raise ValueError(f"tokenizer {source!r} has neither a pad nor an EOS token to pad with")
        tok.pad_token = tok.eos_token
    tok.padding_side = padding_side
    return tok


def _finish(
    model: PreTrainedModel, tok: PreTrainedTokenizerBase, device: torch.device
) -> PreTrainedModel:
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tok.pad_token_id
    gen = getattr(model, "generation_config", None)
    if gen is not None and gen.pad_token_id is None:
        gen.pad_token_id = tok.pad_token_id
    return model.to(device).eval()


@contextmanager
def weights_quietly() -> Iterator[None]:
    """Without transformers' per-call "Loading weights" / "Writing model shards" bars.

    They print one bar per model load, dozens per sweep (from every worker process), into the
    notebooks' outputs; vbon's own bars (tqdm.auto) say what the long jobs do. Hub downloads
    keep huggingface_hub's bars.
    """
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


def load_causal_lm(
    name_or_path: str | os.PathLike[str],
    *,
    dtype: str | torch.dtype | None = None,
    device: str | torch.device | None = None,
    revision: str | None = None,
    **kwargs: Any,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a policy / reference LM and its left-padding tokenizer, in eval mode.

    ``revision`` pins a hub id's commit (model and tokenizer alike). ``kwargs`` go to
    ``AutoModelForCausalLM.from_pretrained`` (e.g. ``attn_implementation``).
    Raises :class:`OfflineModelError` for a hub id that cannot be fetched offline.
    """
    source = _check_source(name_or_path, "model", revision)
    dev = resolve_device(device)
    tok = load_tokenizer(source, padding_side="left", revision=revision)
    with _explain_load_errors(source, "model"), weights_quietly():
        model = AutoModelForCausalLM.from_pretrained(
            source, dtype=resolve_dtype(dtype, dev), **_revision_kwargs(revision), **kwargs
        )
    return _finish(model, tok, dev), tok


def eos_flags(
    n: int,
    eos_token_id: int | Sequence[int] | None,
    *,
    eos: Sequence[bool] | np.ndarray | torch.Tensor | None = None,
    completion_ids: Sequence[Sequence[int]] | torch.Tensor | None = None,
) -> np.ndarray | None:
    """Whether each of ``n`` completions ended with EOS, from ``eos`` or from the generated ids.

    A completion ended iff its ids contain an EOS id: generation stops at the first EOS and pads
    after it, so a row with no EOS ran out of tokens. (When the pad token is EOS, a padded row
    is one that stopped.) Returns None when neither is given.
    """
    if eos is not None:
        flags = np.asarray(eos.cpu() if isinstance(eos, torch.Tensor) else eos, dtype=bool)
        if flags.shape != (n,):
            raise ValueError(
                f"eos must hold one flag per completion ({n}), got shape {flags.shape}"
            )
        return flags
    if completion_ids is None:
        return None
    if eos_token_id is None:
        raise ValueError("completion_ids were given but the tokenizer has no EOS token id")
    ids_set = {eos_token_id} if isinstance(eos_token_id, int) else set(eos_token_id)
    if isinstance(completion_ids, torch.Tensor):
        if completion_ids.ndim != 2 or completion_ids.shape[0] != n:
            raise ValueError(
                f"completion_ids must be ({n}, length), got {tuple(completion_ids.shape)}"
            )
        hit = torch.zeros(completion_ids.shape, dtype=torch.bool, device=completion_ids.device)
        for e in ids_set:
            hit |= completion_ids == e
        return hit.any(dim=1).cpu().numpy()
    if len(completion_ids) != n:
        raise ValueError(
            f"completion_ids must hold one id list per completion ({n}), got {len(completion_ids)}"
        )
    return np.array([any(int(t) in ids_set for t in ids) for ids in completion_ids], dtype=bool)


REWARD_DIGITS = 6  # significant digits kept of every reward


def settle(scores: np.ndarray) -> np.ndarray:
    """Rewards rounded to ``REWARD_DIGITS`` significant digits: the same text, the same reward.

    A reward model's output for one text moves in its 7th digit with the batch it is scored in
    (padding changes the kernels' summation order). F_hat counts reference rewards strictly
    below r and win rates count ties as 1/2, so that noise would turn ties between identical
    completions (common when pi_ref repeats itself, as on toy-tldr) into arbitrary wins and
    losses. Significant digits, not decimals: p(POS) or an untrained head can be 1e-5.
    """
    x = np.asarray(scores, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        exponent = np.floor(np.log10(np.abs(x)))
    scale = 10.0 ** (REWARD_DIGITS - 1 - np.where(np.isfinite(exponent), exponent, 0.0))
    return np.round(x * scale) / scale


class RewardModel(ABC):
    """``rm(prompts, completions) -> np.ndarray``: one float per completion, batched, no grad."""

    def __init__(
        self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, *, batch_size: int = 32
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.batch_size = batch_size

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def max_length(self) -> int:
        """Longest input the model takes (the tokenizer's limit, capped by the position table)."""
        limits = [self.tokenizer.model_max_length]
        limits += [
            getattr(self.model.config, k)
            for k in ("max_position_embeddings", "n_positions")
            if isinstance(getattr(self.model.config, k, None), int)
        ]
        return int(min(x for x in limits if x and x > 0))

    @staticmethod
    def _check(prompts: Sequence[str], completions: Sequence[str]) -> None:
        if isinstance(prompts, str) or isinstance(completions, str):
            raise ValueError("prompts and completions must be sequences of strings, not one string")
        if len(prompts) != len(completions):
            raise ValueError(
                f"prompts and completions must have the same length, got {len(prompts)} and {len(completions)}"
            )

    @abstractmethod
    def __call__(
        self,
        prompts: Sequence[str],
        completions: Sequence[str],
        *,
        eos: Sequence[bool] | np.ndarray | torch.Tensor | None = None,
        completion_ids: Sequence[Sequence[int]] | torch.Tensor | None = None,
    ) -> np.ndarray:
        """Rewards of ``prompt + completion``, shape ``(len(prompts),)``, float64."""

    def score_with_extras(
        self,
        prompts: Sequence[str],
        completions: Sequence[str],
        *,
        eos: Sequence[bool] | np.ndarray | torch.Tensor | None = None,
        completion_ids: Sequence[Sequence[int]] | torch.Tensor | None = None,
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The rewards and, for evaluation, other per-completion metrics from the same forward
        pass (a classifier adds its class probability, e.g. ``p_pos``); none by default."""
        return self(prompts, completions, eos=eos, completion_ids=completion_ids), {}


def find_label(config: Any, label: str) -> int:
    """Index of class ``label`` in ``config.label2id`` (case-insensitive; POSITIVE also matches POS)."""
    aliases = {label.upper()}
    for group in ({"POSITIVE", "POS"}, {"NEGATIVE", "NEG"}):
        if label.upper() in group:
            aliases |= group
    label2id = {
        str(k).upper(): int(v) for k, v in (getattr(config, "label2id", None) or {}).items()
    }
    hits = {label2id[a] for a in aliases if a in label2id}
    if len(hits) != 1:
        raise ValueError(
            f"label {label!r} not found (or ambiguous) in the model's label2id {config.label2id}; "
            "pass label_index= to pick the class by position"
        )
    return hits.pop()


class ClassifierReward(RewardModel):
    """A sequence classifier's logit (``output='logit'``) or probability (``'prob'``) of one class.

    The text scored is ``prompt + completion`` (as in the paper's IMDB setup, where the reward
    model sees the whole review), or the completion alone with ``include_prompt=False``.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        label: str = "POSITIVE",
        label_index: int | None = None,
        output: Literal["logit", "prob"] = "logit",
        include_prompt: bool = True,
        batch_size: int = 32,
    ) -> None:
        super().__init__(model, tokenizer, batch_size=batch_size)
        if output not in ("logit", "prob"):
            raise ValueError(f"output must be 'logit' or 'prob', got {output!r}")
        n_labels = int(model.config.num_labels)
        if n_labels < 2:
            raise ValueError(f"a classifier reward needs num_labels >= 2, the model has {n_labels}")
        if label_index is None:
            label_index = find_label(model.config, label)
        if not 0 <= label_index < n_labels:
            raise ValueError(f"label_index must be in [0, {n_labels}), got {label_index}")
        self.label_index = label_index
        self.output = output
        self.include_prompt = include_prompt
        # The name of the class probability score_with_extras reports (p(POS): "p_pos").
        positive = label.upper() in ("POSITIVE", "POS")
        self.prob_name = "p_pos" if positive else f"p_{label.lower()}"
        # Encoders with absolute positions read left-padded inputs at shifted positions.
        tokenizer.padding_side = "right"

    @torch.no_grad()
    def __call__(
        self,
        prompts: Sequence[str],
        completions: Sequence[str],
        *,
        eos: Sequence[bool] | np.ndarray | torch.Tensor | None = None,
        completion_ids: Sequence[Sequence[int]] | torch.Tensor | None = None,
    ) -> np.ndarray:
        """Score ``prompt + completion``; ``eos``/``completion_ids`` are accepted and unused."""
        return self.score_with_extras(prompts, completions)[0]

    @torch.no_grad()
    def score_with_extras(
        self,
        prompts: Sequence[str],
        completions: Sequence[str],
        *,
        eos: Sequence[bool] | np.ndarray | torch.Tensor | None = None,
        completion_ids: Sequence[Sequence[int]] | torch.Tensor | None = None,
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The reward (logit or probability, as ``output``) and the class probability under
        ``prob_name`` (p(POS) for IMDB's POSITIVE class), both from one forward pass."""
        self._check(prompts, completions)
        texts = [
            (p + c) if self.include_prompt else c for p, c in zip(prompts, completions, strict=True)
        ]
        out = np.empty(len(texts), dtype=np.float64)
        prob = np.empty(len(texts), dtype=np.float64)
        for i in range(0, len(texts), self.batch_size):
            enc = self.tokenizer(
                texts[i : i + self.batch_size],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            ).to(self.device)
            logits = self.model(
                input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]
            ).logits.float()
            probs = logits.softmax(-1)
            rows = slice(i, i + len(enc["input_ids"]))
            prob[rows] = probs[:, self.label_index].cpu().numpy()
            out[rows] = (
                (probs if self.output == "prob" else logits)[:, self.label_index].cpu().numpy()
            )
        return settle(out), {self.prob_name: settle(prob)}


@contextmanager
def _quiet(model: PreTrainedModel):
    # Sequence classifiers warn that padding cannot be detected from inputs_embeds; we left-pad
    # precisely so that the last position is the last real token, so the warning does not apply.
    logger = logging.getLogger(type(model).__module__)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


class SequenceReward(RewardModel):
    """A reward model with a scalar head read at the last token (the TL;DR reward models).

    Inputs are ``prompt + completion`` token ids, with the EOS token appended to completions that
    ended with one (the reward models of Huang et al. and the toy one were trained on sequences
    ending in EOS). A completion that did not end with EOS gets ``eos_penalty`` instead of its
    score, when ``eos_penalty`` is not None. Sequences longer than the model's limit lose their
    beginning, never the completion.

    ``eos_rule="authors"`` scores as the authors' TL;DR code: EOS is appended to *every*
    completion (their decode adds it unconditionally), the sequence is cut on the right to
    ``authors_max_tokens`` (their seq_length, 600), and ``eos_penalty`` replaces the score only
    where that cut removed the EOS (a long prompt with a full-length completion); a completion
    that ran out of tokens is otherwise scored as if it had ended.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        eos_penalty: float | None = None,
        eos_rule: Literal["penalty", "authors"] = "penalty",
        authors_max_tokens: int = 600,
        batch_size: int = 32,
    ) -> None:
        super().__init__(model, tokenizer, batch_size=batch_size)
        if int(model.config.num_labels) != 1:
            raise ValueError(
                f"a sequence reward model has num_labels == 1, the model has {model.config.num_labels}"
            )
        if eos_penalty is not None and not np.isfinite(eos_penalty):
            raise ValueError(f"eos_penalty must be finite or None, got {eos_penalty}")
        if eos_rule not in ("penalty", "authors"):
            raise ValueError(f"eos_rule must be 'penalty' or 'authors', got {eos_rule!r}")
        if isinstance(authors_max_tokens, bool) or not (
            isinstance(authors_max_tokens, int) and authors_max_tokens >= 2
        ):
            raise ValueError(
                f"authors_max_tokens must be an integer >= 2, got {authors_max_tokens!r}"
            )
        self.eos_penalty = eos_penalty
        self.eos_rule = eos_rule
        self.authors_max_tokens = authors_max_tokens

    @torch.no_grad()
    def score_ids(self, seqs: Sequence[Sequence[int]]) -> np.ndarray:
        """Scalar head output at the last token of each id sequence."""
        out = np.empty(len(seqs), dtype=np.float64)
        embed = self.model.get_input_embeddings()
        limit = self.max_length
        for i in range(0, len(seqs), self.batch_size):
            chunk = [list(s)[-limit:] for s in seqs[i : i + self.batch_size]]
            if any(len(s) == 0 for s in chunk):
                raise ValueError("cannot score an empty sequence")
            width = max(len(s) for s in chunk)
            ids = torch.zeros((len(chunk), width), dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for j, s in enumerate(chunk):
                ids[j, width - len(s) :] = torch.as_tensor(s)
                mask[j, width - len(s) :] = 1
            ids, mask = ids.to(self.device), mask.to(self.device)
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            # inputs_embeds, not input_ids: the model then reads the last position, which left
            # padding makes the last real token, instead of searching for the pad id (which
            # misfires when pad == EOS and the sequence ends with EOS).
            with _quiet(self.model):
                logits = self.model(
                    inputs_embeds=embed(ids), attention_mask=mask, position_ids=positions
                ).logits
            out[i : i + len(chunk)] = logits.float().squeeze(-1).cpu().numpy()
        return out

    def __call__(
        self,
        prompts: Sequence[str],
        completions: Sequence[str],
        *,
        eos: Sequence[bool] | np.ndarray | torch.Tensor | None = None,
        completion_ids: Sequence[Sequence[int]] | torch.Tensor | None = None,
    ) -> np.ndarray:
        """Score ``prompt + completion (+ EOS)``; needs ``eos`` or ``completion_ids`` when penalising."""
        self._check(prompts, completions)
        if self.eos_rule == "authors":
            return self._authors_scores(prompts, completions)
        flags = eos_flags(
            len(prompts), self.tokenizer.eos_token_id, eos=eos, completion_ids=completion_ids
        )
        if flags is None and self.eos_penalty is not None:
            raise ValueError(
                "eos (or completion_ids) is required: this reward gives eos_penalty to completions "
                "that did not end with EOS, and that is decided from the generated tokens"
            )
        enc = self.tokenizer(
            [p + c for p, c in zip(prompts, completions, strict=True)], add_special_tokens=False
        )["input_ids"]
        eos_id = self.tokenizer.eos_token_id
        if flags is not None:
            enc = [ids + [eos_id] if f else ids for ids, f in zip(enc, flags, strict=True)]
        scores = self.score_ids(enc)
        if self.eos_penalty is not None:
            scores = np.where(flags, scores, self.eos_penalty)
        return settle(scores)

    def _authors_scores(self, prompts: Sequence[str], completions: Sequence[str]) -> np.ndarray:
        """``eos_rule="authors"``: EOS after every completion, right cut, penalty where it was cut."""
        eos_id = self.tokenizer.eos_token_id
        if eos_id is None:
            raise ValueError("eos_rule='authors' needs a tokenizer with an EOS token")
        enc = self.tokenizer(
            [p + c for p, c in zip(prompts, completions, strict=True)], add_special_tokens=False
        )["input_ids"]
        enc = [(ids + [eos_id])[: self.authors_max_tokens] for ids in enc]
        scores = self.score_ids(enc)
        if self.eos_penalty is not None:
            kept = np.array([eos_id in ids for ids in enc], dtype=bool)
            scores = np.where(kept, scores, self.eos_penalty)
        return settle(scores)


def load_reward_model(
    name_or_path: str | os.PathLike[str],
    *,
    kind: Literal["auto", "classifier", "sequence"] = "auto",
    dtype: str | torch.dtype | None = None,
    device: str | torch.device | None = None,
    batch_size: int = 32,
    label: str = "POSITIVE",
    label_index: int | None = None,
    output: Literal["logit", "prob"] = "logit",
    include_prompt: bool = True,
    eos_penalty: float | None = None,
    eos_rule: Literal["penalty", "authors"] = "penalty",
    revision: str | None = None,
    **kwargs: Any,
) -> RewardModel:
    """Load a reward model: a classifier (num_labels >= 2) or a scalar sequence RM (num_labels == 1).

    ``kind='auto'`` decides from ``config.num_labels``. Classifier options: ``label`` /
    ``label_index``, ``output``, ``include_prompt``; sequence options: ``eos_penalty``,
    ``eos_rule`` ("authors": the authors' TL;DR scoring, see ``SequenceReward``).
    ``revision`` pins a hub id's commit. ``kwargs`` go to ``from_pretrained`` (e.g.
    ``quantization_config``).
    """
    if kind not in ("auto", "classifier", "sequence"):
        raise ValueError(f"kind must be 'auto', 'classifier' or 'sequence', got {kind!r}")
    source = _check_source(name_or_path, "reward model", revision)
    pin = _revision_kwargs(revision)
    dev = resolve_device(device)
    with _explain_load_errors(source, "reward model"):
        config = AutoConfig.from_pretrained(source, **pin)
    if kind == "auto":
        kind = "sequence" if int(config.num_labels) == 1 else "classifier"
    tok = load_tokenizer(
        source, padding_side="right" if kind == "classifier" else "left", revision=revision
    )
    with _explain_load_errors(source, "reward model"), weights_quietly():
        model = AutoModelForSequenceClassification.from_pretrained(
            source, dtype=resolve_dtype(dtype, dev), **pin, **kwargs
        )
    model = _finish(model, tok, dev)
    if kind == "classifier":
        return ClassifierReward(
            model,
            tok,
            label=label,
            label_index=label_index,
            output=output,
            include_prompt=include_prompt,
            batch_size=batch_size,
        )
    return SequenceReward(
        model, tok, eos_penalty=eos_penalty, eos_rule=eos_rule, batch_size=batch_size
    )
