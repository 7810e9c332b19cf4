"""Shared pytest configuration.

Notebooks are collected by nbval (``--nbval-lax``): only cells marked ``# NBVAL_CHECK_OUTPUT`` are
compared. Progress bars and warnings go to stderr and vary between runs, and HTML renderings of
tables carry incidental markup, so neither is part of the comparison.
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")


def pytest_collectstart(collector) -> None:
    if getattr(collector, "path", None) is not None and collector.path.suffix == ".ipynb":
        collector.skip_compare = (*collector.skip_compare, "stderr", "text/html")


@pytest.fixture(scope="session")
def toy_worlds():
    """Both toy worlds, built once into the cache ($VBON_CACHE or the user cache) and reused by
    every later session; tests only read them."""
    from vbon.toy import build_toy_worlds

    return build_toy_worlds()
