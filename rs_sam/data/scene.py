"""One raster read chip by chip on its own grid, through torchgeo (the single-date reader).

The counterpart of :class:`~rs_sam.data.pair.BitemporalPair` for segmentation: the same
torchgeo :class:`~rs_sam.data.pair.SceneRaster`, queried with bounds aligned to the
raster's own pixels, so chips are the file's pixels without resampling.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from affine import Affine

from rs_sam.data.grid import ChipWindow, RasterGrid, overview_steps
from rs_sam.data.image_files import pixel_grid, read_image
from rs_sam.data.pair import SceneRaster, fit_to_shape
from rs_sam.data.pixel_reads import read_pixels
from rs_sam.data.rasters import RasterInfo, is_integer_8bit
from rs_sam.errors import InputRasterError


@dataclass(frozen=True)
class ChipImage:
    """Raw pixels of one chip (before normalisation)."""

    window: ChipWindow
    image: np.ndarray  # (C, S, S) float32, the file's values; 0 where not valid
    valid: np.ndarray  # (S, S) bool: inside the raster and not nodata


class ChipSource(Protocol):
    """What chip-by-chip processing of one image needs (a :class:`Scene`, an image file)."""

    grid: RasterGrid
    source: Any  # a picklable description that reopens it elsewhere (``source.open()``)

    @property
    def eight_bit(self) -> bool: ...

    def read_chip(self, window: ChipWindow) -> ChipImage: ...

    def read_overview(self, max_side: int = 1024) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass(frozen=True)
class SceneSource:
    """What to read for one raster (picklable, hashable): its header, bands, nodata."""

    info: RasterInfo
    bands: tuple[int, ...]
    nodata: float | None = None

    def open(self) -> Scene:
        return Scene(self.info, bands=self.bands, nodata=self.nodata)


@dataclass(frozen=True)
class ImageSource:
    """A plain image file (no georeferencing) and the bands to keep (picklable, hashable)."""

    path: Path
    bands: tuple[int, ...]

    def open(self) -> ImageScene:
        pixels = read_image(self.path)
        return ImageScene(
            pixels[[b - 1 for b in self.bands]],
            label=str(self.path),
            eight_bit=is_integer_8bit(pixels.dtype.name),
            source=self,
        )


class Scene:
    """A raster on its own grid.

    Args:
        info: validated header (see :func:`rs_sam.data.rasters.open_date`).
        bands: 1-based band indexes to read.
        nodata: value that marks missing data (default: the file's own).
    """

    def __init__(self, info: RasterInfo, *, bands: Sequence[int], nodata: float | None = None):
        self.info = info
        self.bands = tuple(bands)
        self.source = SceneSource(info, self.bands, nodata)
        self.nodata = info.nodata if nodata is None else nodata
        self.grid = RasterGrid.from_dataset(info)
        self.dataset = SceneRaster(info, self.bands)

    @property
    def eight_bit(self) -> bool:
        return is_integer_8bit(self.info.dtype)

    def read_chip(self, window: ChipWindow) -> ChipImage:
        """One chip; parts past the raster's edge are padding (invalid, zero)."""
        image = self._read(self.grid.window_transform(window), window.size, window.size)
        valid = self._valid(image)
        rows = max(0, min(window.size, self.grid.height - window.row_off))
        cols = max(0, min(window.size, self.grid.width - window.col_off))
        valid[rows:, :] = False
        valid[:, cols:] = False
        image[:, ~valid] = 0
        return ChipImage(window=window, image=image, valid=valid)

    def read_overview(self, max_side: int = 1024) -> tuple[np.ndarray, np.ndarray]:
        """The whole raster decimated to at most ``max_side`` pixels a side: (image, valid)."""
        step_x, step_y = overview_steps(self.grid, max_side)
        width = math.ceil(self.grid.width / step_x)
        height = math.ceil(self.grid.height / step_y)
        transform = self.grid.transform @ Affine.scale(step_x, step_y)
        image = self._read(transform, width, height, (step_x, step_y))
        valid = self._valid(image)
        if not valid.any():
            raise InputRasterError(
                f"{self.info.label} contains only nodata; check --nodata and the input"
            )
        return image, valid

    def _read(
        self, transform: Affine, width: int, height: int, steps: tuple[int, int] = (1, 1)
    ) -> np.ndarray:
        """(C, height, width) float32 from the pixel grid starting at ``transform``.

        ``steps`` are the decimation in columns and rows (1: the file's own pixels).
        """
        res_x, res_y = self.grid.res[0] * steps[0], self.grid.res[1] * steps[1]
        left, top = transform.c, transform.f
        query = (
            slice(left, left + width * res_x, res_x),
            slice(top - height * res_y, top, res_y),
        )
        image = read_pixels(self.dataset, query, [self.info], self.info.crs)
        return fit_to_shape(image, height, width)

    def _valid(self, image: np.ndarray) -> np.ndarray:
        valid = np.all(np.isfinite(image), axis=0)
        if self.nodata is not None:
            if math.isnan(self.nodata):
                valid &= ~np.all(np.isnan(image), axis=0)
            else:
                valid &= ~np.all(image == self.nodata, axis=0)
        return valid


class ImageScene:
    """A plain image (PNG, JPEG, BMP, TIFF without georeferencing) held in memory.

    For dataset tiles without georeferencing: the grid is the image's pixel grid (a
    placeholder CRS with one map unit per pixel), so outputs line up pixel for pixel.
    """

    def __init__(
        self,
        image: np.ndarray,
        *,
        label: str,
        eight_bit: bool,
        source: ImageSource | None = None,
    ) -> None:
        self.image = image.astype(np.float32, copy=False)  # (C, H, W)
        self.label = label
        self.source = source  # how another process reads the same image, if known
        self._eight_bit = eight_bit
        height, width = image.shape[-2:]
        self.grid = pixel_grid(width, height)

    @property
    def eight_bit(self) -> bool:
        return self._eight_bit

    def read_chip(self, window: ChipWindow) -> ChipImage:
        size = window.size
        image = np.zeros((self.image.shape[0], size, size), np.float32)
        valid = np.zeros((size, size), bool)
        rows = max(0, min(size, self.grid.height - window.row_off))
        cols = max(0, min(size, self.grid.width - window.col_off))
        image[:, :rows, :cols] = self.image[
            :, window.row_off : window.row_off + rows, window.col_off : window.col_off + cols
        ]
        valid[:rows, :cols] = True
        return ChipImage(window=window, image=image, valid=valid)

    def read_overview(self, max_side: int = 1024) -> tuple[np.ndarray, np.ndarray]:
        step = max(1, math.ceil(max(self.grid.width, self.grid.height) / max_side))
        overview = self.image[:, ::step, ::step]
        return overview, np.ones(overview.shape[1:], bool)
