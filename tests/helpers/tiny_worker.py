"""A dask worker preload: the worker builds the tiny random encoder configurations.

Give it to a cluster as ``distributed.worker.preload`` (a dask config value, inherited by
the workers a ``LocalCluster`` starts and by those that replace dead ones).
"""

from __future__ import annotations

from typing import Any

from tests.helpers.tiny_models import use_tiny_encoders


def dask_setup(worker: Any) -> None:
    use_tiny_encoders()
