"""rs-sam: the Segment Anything family for remote sensing.

The public API is :mod:`rs_sam.api`: ``detect_change`` (change between a raster pair, to
vectors), ``segment`` (objects or classes of a raster, to vectors) and ``sam_objects``
(SAM object maps for SSRS), with their settings, re-exported here as ``rs_sam.detect_change``,
``rs_sam.segment`` and ``rs_sam.sam_objects`` (the pipelines live in :mod:`rs_sam.change` and
:mod:`rs_sam.segmentation`); and the encoder registry in :mod:`rs_sam.models.encoders`.
Heavy modules are imported on first use, so ``import rs_sam`` stays fast.
"""

from __future__ import annotations

from typing import Any

from rs_sam.version import __version__

__all__ = [
    "ChangeSettings",
    "SamObjectsSettings",
    "SegmentSettings",
    "__version__",
    "detect_change",
    "sam_objects",
    "segment",
]


def __getattr__(name: str) -> Any:
    if name in ("detect_change", "segment", "sam_objects"):
        from rs_sam import api

        return getattr(api, name)
    if name in ("ChangeSettings", "ChangeResult"):
        from rs_sam import change

        return getattr(change, name)
    if name in ("SegmentSettings", "SamObjectsSettings"):
        from rs_sam.segmentation import settings

        return getattr(settings, name)
    raise AttributeError(f"module 'rs_sam' has no attribute {name!r}")
