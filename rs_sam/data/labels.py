"""Label values shared by every dataset, loss and metric."""

from __future__ import annotations

from collections.abc import Iterable

#: Label value of pixels that count for nothing (no loss, no metric): outside a raster,
#: under nodata, unlabelled classes, uncertain objects.
IGNORE = 255


def is_binary(values: Iterable[float]) -> bool:
    """Whether label values form a two-value mask: 0/1 or 0/255 (or a subset of either)."""
    found = set(values)
    return found <= {0, 1} or found <= {0, 255}
