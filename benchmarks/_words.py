"""The word-level world the GPU check and the throughput benchmark share: no hub tokenizer needed.

Tokens are "w0".."w<vocab-1>" (the last one is EOS and pad); the reward is cheap but real, so
the benchmarks time scoring too.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def word_tokenizer(vocab: int) -> Any:
    """A word-level tokenizer over "w0".."w<vocab-1>", left padding, EOS = pad = the last word."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.WordLevel({f"w{i}": i for i in range(vocab)}, unk_token="w0"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    eos = f"w{vocab - 1}"
    return PreTrainedTokenizerFast(
        tokenizer_object=tk, eos_token=eos, pad_token=eos, padding_side="left"
    )


def word_reward(prompts: list[str], completions: list[str], **_: Any) -> np.ndarray:
    """r(y) = share of completion words whose id is a multiple of 5."""
    out = np.empty(len(completions))
    for j, text in enumerate(completions):
        ids = [int(w[1:]) for w in text.split()]
        out[j] = np.mean([i % 5 == 0 for i in ids]) if ids else 0.0
    return out
