"""Offline toy worlds: small, real versions of the paper's two experiments, built from a seed.

- ``toy-sentiment``: a synthetic movie-review language (:mod:`vbon.toy.reviews`), a byte-level BPE
  tokenizer, a GPT-2-architecture reference LM and a DistilBERT-architecture NEGATIVE/POSITIVE
  classifier (the IMDB task's reward).
- ``toy-tldr``: Reddit-style posts with key facts and a grammar of varied summaries
  (:mod:`vbon.toy.posts`), a GPTNeoX SFT policy and a GPTNeoX Bradley-Terry reward model that
  ranks summaries by coverage, faithfulness and brevity (the TL;DR task); what makes it behave
  like summarisation is measured by :mod:`vbon.toy.quality`.

``build_toy_worlds()`` (or ``vbon toy build``) builds both into the cache, once.
"""

from vbon.toy.build import (
    SENTIMENT,
    TLDR,
    WORLDS,
    SentimentSettings,
    TldrSettings,
    ToyWorld,
    build_toy_worlds,
    build_world,
    format_quality,
    world_dir,
    world_key,
)

__all__ = [
    "SENTIMENT",
    "TLDR",
    "WORLDS",
    "SentimentSettings",
    "TldrSettings",
    "ToyWorld",
    "build_toy_worlds",
    "build_world",
    "format_quality",
    "world_dir",
    "world_key",
]
