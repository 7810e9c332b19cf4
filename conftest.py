"""pytest configuration shared by the unit tests (``tests/``) and the notebooks (``notebooks/``).

Notebooks are collected by nbval (``--nbval-lax``): only cells marked ``# NBVAL_CHECK_OUTPUT`` are
compared. Progress bars and warnings go to stderr and vary between runs, and HTML renderings of
tables carry incidental markup, so neither is part of the comparison. This file sits at the
repository root so that it applies when the notebooks are collected on their own (``make test``
runs ``pytest tests`` and ``pytest notebooks`` side by side).
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")


def pytest_collectstart(collector) -> None:
    if getattr(collector, "path", None) is not None and collector.path.suffix == ".ipynb":
        collector.skip_compare = (*collector.skip_compare, "stderr", "text/html")
