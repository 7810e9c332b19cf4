"""The paper's two experiments as task objects: ``get_task("imdb" | "tldr", profile, **overrides)``.

A profile picks the world: ``smoke`` and ``converged`` build (once) and use the offline toy
worlds (``converged`` differs in the budgets of the experiment spec only), ``paper`` the hub
models and datasets. Everything after :func:`get_task` is the same code path for both.
"""

from __future__ import annotations

from typing import Any

from vbon.tasks import imdb, tldr
from vbon.tasks.base import PROFILES, OfflineDatasetError, SamplingConfig, Task

TASKS = {imdb.NAME: imdb.make_task, tldr.NAME: tldr.make_task}

__all__ = ["PROFILES", "TASKS", "OfflineDatasetError", "SamplingConfig", "Task", "get_task"]


def get_task(name: str, profile: str = "smoke", **overrides: Any) -> Task:
    """Build the task ``name`` (``"imdb"`` or ``"tldr"``) for ``profile`` (``"smoke"``,
    ``"converged"`` or ``"paper"``).

    ``overrides`` replace defaults: ``policy_id``, ``reference_id``, ``reward_id``, ``dataset``
    (an in-memory ``DatasetDict`` with the hub schema, a ``save_to_disk`` directory or a hub id),
    ``n_train``, ``n_test``, ``seed``, the sampling fields (``max_new_tokens``, ``temperature``,
    ``top_k``, ``top_p``, and for tldr ``eos_penalty``), ``cache`` (toy-world cache directory);
    imdb: ``min_prompt_tokens``, ``max_prompt_tokens``, ``output`` ('logit' or 'prob');
    tldr: ``max_prompt_tokens``, ``variant`` ('2.8b', '1b', '410m').
    """
    if name not in TASKS:
        raise ValueError(f"task must be one of {sorted(TASKS)}, got {name!r}")
    return TASKS[name](profile, **overrides)
