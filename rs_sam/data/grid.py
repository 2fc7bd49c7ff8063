"""The output pixel grid and the chip windows that tile it.

Every chip is a square window of ``chip_size`` pixels on the :class:`RasterGrid`. Chips
start at the grid's top-left corner and step by ``stride = chip_size - overlap``; the last
row and column of chips are the first ones that reach the grid's right and bottom edges, so
they extend past the edge (that part is padding the data layer fills) and no pixel is ever
dropped. A grid smaller than one chip gives a single padded chip.

Why overlap: a model sees less context near a chip's border and predicts worse there.
Overlapping chips let :class:`~rs_sam.inference.mosaic.ProbabilityMosaic` taper each chip's
weight towards its border, so the mosaic has no seams (peer tools' "crop and stitch
yourself" leaves straight cuts and cut objects at tile borders).

This module is the single definition of that geometry; the sequence of windows is a pure
function of ``(grid, chip_size, overlap)``, so every chip is an independent unit of work.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window

from rs_sam.errors import ConfigError, InputRasterError


@dataclass(frozen=True)
class RasterGrid:
    """A north-up pixel grid; the output rasters lie exactly on it.

    Attributes:
        crs: coordinate reference system of the grid.
        transform: pixel-to-map affine, no rotation or shear, ``a > 0`` and ``e < 0``.
        width: number of columns.
        height: number of rows.
    """

    crs: CRS
    transform: Affine
    width: int
    height: int

    def __post_init__(self) -> None:
        t = self.transform
        if self.crs is None:
            raise InputRasterError("grid has no CRS; give the raster a CRS (e.g. gdal_edit -a_srs)")
        if t.b != 0 or t.d != 0 or t.a <= 0 or t.e >= 0:
            raise InputRasterError(
                f"grid transform {tuple(t)[:6]} is not north-up; warp the raster first "
                "(e.g. gdalwarp without -to options)"
            )
        if self.width < 1 or self.height < 1:
            raise InputRasterError(
                f"grid size {self.width}x{self.height} is empty; use a raster with pixels"
            )

    @classmethod
    def from_dataset(cls, dataset: Any) -> RasterGrid:
        """The grid of an open rasterio dataset (anything with crs/transform/width/height)."""
        return cls(
            crs=dataset.crs,
            transform=dataset.transform,
            width=int(dataset.width),
            height=int(dataset.height),
        )

    @property
    def res(self) -> tuple[float, float]:
        """Pixel size ``(x, y)`` in CRS units, both positive."""
        return (self.transform.a, -self.transform.e)

    def window_transform(self, window: ChipWindow) -> Affine:
        """Affine of the chip's top-left pixel: maps chip pixel ``(col, row)`` to map x/y."""
        return self.transform @ Affine.translation(window.col_off, window.row_off)

    def bounds(self) -> tuple[float, float, float, float]:
        """``(left, bottom, right, top)`` in CRS units."""
        left, top = self.transform @ (0, 0)
        right, bottom = self.transform @ (self.width, self.height)
        return (left, bottom, right, top)


@dataclass(frozen=True)
class ChipWindow:
    """A square chip in pixel coordinates of a :class:`RasterGrid`.

    The chip may extend past the grid's right/bottom edge; that part is padding.

    Attributes:
        row_off: row of the chip's top-left pixel in the grid.
        col_off: column of the chip's top-left pixel in the grid.
        size: side of the chip in pixels.
        index: position in the chip sequence of :func:`chip_windows`.
    """

    row_off: int
    col_off: int
    size: int
    index: int

    @property
    def window(self) -> Window:
        """The full (unclipped) rasterio window, padding included."""
        return Window(self.col_off, self.row_off, self.size, self.size)

    def clipped(self, grid: RasterGrid) -> Window:
        """The part of the chip inside ``grid``; chip pixels ``[:height, :width]`` map onto it."""
        width = min(self.size, grid.width - self.col_off)
        height = min(self.size, grid.height - self.row_off)
        return Window(self.col_off, self.row_off, width, height)


def overview_steps(grid: RasterGrid, max_side: int) -> tuple[int, int]:
    """Decimation ``(columns, rows)`` that fits ``grid`` into ``max_side`` pixels a side.

    The same step on both axes (``ceil(longest side / max_side)``), except that a step is
    never longer than its axis: a 1 x 3000 strip is read 1 row high, not as one decimated
    row whose pixel centre lies past the raster's only row.
    """
    step = max(1, math.ceil(max(grid.width, grid.height) / max_side))
    return min(step, grid.width), min(step, grid.height)


def check_chip_geometry(chip_size: int, overlap: int) -> None:
    """Raise :class:`ConfigError` unless ``chip_size >= 1`` and ``0 <= overlap < chip_size / 2``."""
    if isinstance(chip_size, bool) or not isinstance(chip_size, int) or chip_size < 1:
        raise ConfigError(f"chip_size={chip_size!r} is invalid; use a positive integer (e.g. 1024)")
    if isinstance(overlap, bool) or not isinstance(overlap, int) or overlap < 0:
        raise ConfigError(f"overlap={overlap!r} is invalid; use an integer >= 0 (e.g. 128)")
    if 2 * overlap >= chip_size:
        raise ConfigError(
            f"overlap={overlap} is too large for chip_size={chip_size}; "
            f"use an overlap below chip_size / 2 (at most {(chip_size - 1) // 2})"
        )


def _offsets(length: int, chip_size: int, stride: int) -> range:
    """Chip start offsets along one axis: ``0, stride, ...`` until the edge is covered."""
    count = 1 if length <= chip_size else math.ceil((length - chip_size) / stride) + 1
    return range(0, count * stride, stride)


def chip_windows(grid: RasterGrid, chip_size: int, overlap: int) -> list[ChipWindow]:
    """The chips covering ``grid``, row-major from the top-left corner.

    Args:
        grid: the output grid.
        chip_size: chip side in pixels.
        overlap: pixels shared by neighbouring chips, ``0 <= overlap < chip_size / 2``.

    Returns:
        ``ceil((H - chip_size) / stride) + 1`` rows times as many columns (one when the
        grid is smaller than a chip) of windows; ``index`` is the position in the list.

    Raises:
        ConfigError: ``chip_size`` or ``overlap`` is out of range.
    """
    check_chip_geometry(chip_size, overlap)
    stride = chip_size - overlap
    rows = _offsets(grid.height, chip_size, stride)
    cols = _offsets(grid.width, chip_size, stride)
    return [
        ChipWindow(row_off=r, col_off=c, size=chip_size, index=i * len(cols) + j)
        for i, r in enumerate(rows)
        for j, c in enumerate(cols)
    ]
