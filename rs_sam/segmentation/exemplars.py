"""Example boxes for concept segmentation (``--exemplars``): a vector file -> raster pixels.

Each feature's bounding box, in the raster's CRS, is one example of the concept; a
``label`` attribute of 0 (or false) makes it a negative example ("not like this"), 1 or no
attribute a positive one. Boxes are kept in the raster's pixel coordinates and handed to
every chip they overlap, shifted into the chip's pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyogrio

from rs_sam.data.grid import ChipWindow, RasterGrid
from rs_sam.models.concepts import Box
from rs_sam.segmentation.prompts import PromptError


@dataclass(frozen=True)
class Exemplar:
    """One example box in the raster's pixels (x0, y0, x1, y1) and whether it is positive."""

    box: Box
    positive: bool = True

    def in_chip(self, window: ChipWindow) -> Box | None:
        """The box in the chip's pixels, clipped to it; None when it does not overlap."""
        x0, y0, x1, y1 = self.box
        left, top = window.col_off, window.row_off
        cx0, cy0 = max(x0 - left, 0.0), max(y0 - top, 0.0)
        cx1, cy1 = min(x1 - left, float(window.size)), min(y1 - top, float(window.size))
        return (cx0, cy0, cx1, cy1) if cx1 > cx0 and cy1 > cy0 else None


def read_exemplars(path: str | Path, grid: RasterGrid) -> tuple[Exemplar, ...]:
    """The example boxes of a vector file (first layer, any CRS) on ``grid``.

    Raises:
        PromptError: unreadable or empty file, no CRS, bad labels, or no box on the raster.
    """
    path = Path(path)
    try:
        frame = pyogrio.read_dataframe(path)
    except Exception as err:  # pyogrio raises several types for unreadable files
        raise PromptError(
            f"exemplar file {path} cannot be read ({err}); give a vector file"
        ) from err
    frame = frame[frame.geometry.notna() & ~frame.geometry.is_empty]
    if frame.empty:
        raise PromptError(f"exemplar file {path} has no geometry; draw boxes around examples")
    if frame.crs is None:
        raise PromptError(f"exemplar file {path} has no CRS; save it with one (any CRS)")
    frame = frame.to_crs(grid.crs)
    positive = np.ones(len(frame), dtype=bool)
    if "label" in frame.columns:
        labels = frame["label"].astype(str).str.strip().str.lower()
        if not labels.isin(["1", "0", "true", "false", "1.0", "0.0"]).all():
            raise PromptError(
                f"exemplar file {path}: label must be 1 (positive) or 0 (negative example)"
            )
        positive = labels.isin(["1", "true", "1.0"]).to_numpy()
    inverse = ~grid.transform
    found = []
    for (minx, miny, maxx, maxy), keep in zip(
        frame.geometry.bounds.to_numpy(), positive, strict=True
    ):
        corners = [inverse * (x, y) for x, y in ((minx, miny), (maxx, maxy))]
        cols, rows = sorted(c for c, _ in corners), sorted(r for _, r in corners)
        box = (max(cols[0], 0.0), max(rows[0], 0.0),
               min(cols[1], float(grid.width)), min(rows[1], float(grid.height)))  # fmt: skip
        if box[2] > box[0] and box[3] > box[1]:
            found.append(Exemplar(tuple(float(v) for v in box), bool(keep)))  # type: ignore[arg-type]
    if not any(e.positive for e in found):
        raise PromptError(
            f"exemplar file {path} has no positive example box on the raster; check its "
            "extent and labels"
        )
    return tuple(found)
