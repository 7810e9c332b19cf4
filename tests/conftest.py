"""Fixtures of the unit tests (the shared configuration is the repository's ``conftest.py``)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def toy_worlds():
    """Both toy worlds, built once into the cache ($VBON_CACHE or the user cache) and reused by
    every later session; tests only read them."""
    from vbon.toy import build_toy_worlds

    return build_toy_worlds()
