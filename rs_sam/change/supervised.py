"""Supervised change detection at inference: a trained SAM-CD head scores each chip.

The head is rebuilt in :mod:`rs_sam.models.trained`; the per-chip work is
:class:`~rs_sam.change.chip_tasks.TrainedChangeTask`. Both are importable from here.
"""

from __future__ import annotations

from rs_sam.change.chip_tasks import TrainedChangeTask
from rs_sam.models.trained import TrainedChangeModel, load_change_model

__all__ = ["TrainedChangeModel", "TrainedChangeTask", "load_change_model"]
