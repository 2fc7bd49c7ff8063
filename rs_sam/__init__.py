"""rs-sam: the Segment Anything family for remote sensing.

The public API is small: :func:`detect_change` (zero-shot change detection of a raster
pair to vectors) and the encoder registry in :mod:`rs_sam.models.encoders`. Heavy modules
are imported on first use, so ``import rs_sam`` stays fast.
"""

from __future__ import annotations

from typing import Any

from rs_sam.version import __version__

__all__ = ["ChangeSettings", "__version__", "detect_change"]


def __getattr__(name: str) -> Any:
    if name in ("detect_change", "ChangeSettings", "ChangeResult"):
        from rs_sam import change

        return getattr(change, name)
    raise AttributeError(f"module 'rs_sam' has no attribute {name!r}")
