"""The paper's two experiments as task objects: ``get_task("imdb" | "tldr", profile, **overrides)``.

A profile picks the world: ``smoke`` and ``converged`` build (once) and use the offline toy
worlds (``converged`` differs in the budgets of the experiment spec only), ``paper`` the hub
models and datasets. Everything after :func:`get_task` is the same code path for both.
"""

from __future__ import annotations

from typing import Any

from vbon.tasks import imdb, tldr
from vbon.tasks.base import (
    PROFILES,
    DatasetNotFoundError,
    OfflineDatasetError,
    SamplingConfig,
    Task,
    UnpinnedRevisionWarning,
)

TASKS = {imdb.NAME: imdb.make_task, tldr.NAME: tldr.make_task}
_REVISIONS = {imdb.NAME: imdb.revisions, tldr.NAME: tldr.revisions}

__all__ = [
    "PROFILES",
    "TASKS",
    "DatasetNotFoundError",
    "OfflineDatasetError",
    "SamplingConfig",
    "Task",
    "UnpinnedRevisionWarning",
    "get_task",
    "hub_revisions",
]


def get_task(name: str, profile: str = "smoke", **overrides: Any) -> Task:
    """Build the task ``name`` (``"imdb"`` or ``"tldr"``) for ``profile`` (``"smoke"``,
    ``"converged"`` or ``"paper"``).

    ``overrides`` replace defaults: ``policy_id``, ``reference_id``, ``reward_id``, ``dataset``
    (an in-memory ``DatasetDict`` with the hub schema, a ``save_to_disk`` directory or a hub id),
    ``n_train``, ``n_test``, ``seed``, the sampling fields (``max_new_tokens``, ``temperature``,
    ``top_k``, ``top_p``, and for tldr ``eos_penalty``), ``cache`` (toy-world cache directory);
    imdb: ``min_prompt_tokens``, ``max_prompt_tokens``, ``output`` ('logit' or 'prob');
    tldr: ``max_prompt_tokens``, ``variant`` ('2.8b', '1b', '410m'); both: ``policy_revision``,
    ``reference_revision``, ``reward_revision``, ``dataset_revision`` (hub commits; the paper
    profile pins each hub source by default, see ``vbon.tasks.base``).

    Every override is checked before anything is loaded; a bad one raises ValueError naming it.
    """
    if name not in TASKS:
        raise ValueError(f"name: expected a task among {sorted(TASKS)}, got {name!r}")
    return TASKS[name](profile, **overrides)


def hub_revisions(name: str, profile: str, **overrides: Any) -> dict[str, str]:
    """``{"<role>_revision": sha}`` for the hub sources ``get_task(name, profile, **overrides)``
    loads, without loading anything (empty for the toy worlds)."""
    if name not in TASKS:
        raise ValueError(f"name: expected a task among {sorted(TASKS)}, got {name!r}")
    return _REVISIONS[name](profile, **overrides)
