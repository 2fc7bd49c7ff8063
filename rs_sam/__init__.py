"""rs-sam: the Segment Anything family for remote sensing."""

from __future__ import annotations

__version__ = "0.1.0"
