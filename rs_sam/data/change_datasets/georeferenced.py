"""Chips of two georeferenced dates and a change label raster on date a's grid."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.errors import RasterioIOError
from rasterio.windows import Window
from torch.utils.data import Dataset

from rs_sam.data.bands import select_bands
from rs_sam.data.change_datasets.samples import (
    ChangeDatasetError,
    ChangeDatasetNotFoundError,
    ChangeSample,
    SampleTransform,
)
from rs_sam.data.grid import ChipWindow, chip_windows
from rs_sam.data.image_files import chip_name, format_list, grid_differences, nodata_equal
from rs_sam.data.labels import IGNORE, is_binary
from rs_sam.data.normalize import JointStretch
from rs_sam.data.pair import BitemporalPair
from rs_sam.data.rasters import DateInput, RasterInfo, open_date


class GeoChangeDataset(Dataset[ChangeSample]):
    """Chips of two georeferenced dates and a change label on date a's grid.

    The dates are read through :class:`~rs_sam.data.pair.BitemporalPair` (b resampled onto
    a's grid, only the overlap kept) and scaled by one :class:`JointStretch` fitted once on
    both dates. Chips are the fixed :func:`chip_windows` tiling of the overlap, not random
    torchgeo samples: the same index is the same chip every epoch, so its frozen-encoder
    features can be cached (see :mod:`rs_sam.training.feature_cache`), and every labelled
    pixel is seen once per epoch. Random crops belong in a transform.

    Pixels outside the overlap, past the grid's edge, nodata in either date, or nodata in
    the label get mask 255 (ignored).

    Args:
        image_a, image_b: The dates (a path, or single-band files to stack; see
            :func:`~rs_sam.data.rasters.open_date`).
        label: Single-band raster on a's grid (same CRS, transform and size) with values
            0/1 or 0/255 (its nodata value is ignored).
        chip_size: Chip side in pixels.
        overlap: Pixels shared by neighbouring chips.
        bands: 1-based bands read from both dates (default: see ``select_bands``).
        nodata: Nodata value of both dates (default: each file's own).
        transforms: Applied to every sample last.

    Raises:
        RasterNotFoundError, InputRasterError: See ``open_date`` and ``BitemporalPair``.
        ChangeDatasetError: The label is not on a's grid, has several bands, or other values.
    """

    def __init__(
        self,
        image_a: DateInput,
        image_b: DateInput,
        label: str | Path,
        *,
        chip_size: int,
        overlap: int = 0,
        bands: Sequence[int] | None = None,
        nodata: float | None = None,
        transforms: SampleTransform | None = None,
    ) -> None:
        info_a, info_b = open_date(image_a), open_date(image_b)
        self.label_path = Path(label)
        self._label_nodata = check_label_raster(self.label_path, info_a)
        self.pair = BitemporalPair(
            info_a, info_b, bands=select_bands([info_a, info_b], bands), nodata=nodata
        )
        self.stretch = JointStretch.fit(self.pair)
        self.windows = chip_windows(self.pair.grid, chip_size, overlap)
        self.transforms = transforms
        grid, t = self.pair.grid.transform, info_a.transform
        self._row0 = round((grid.f - t.f) / t.e)  # offset of the overlap in a's (= label's) grid
        self._col0 = round((grid.c - t.c) / t.a)
        self._stem = Path(info_a.label.split(",")[0]).stem
        self.normalisation = (
            f"joint stretch low={[round(v, 4) for v in self.stretch.low]} "
            f"high={[round(v, 4) for v in self.stretch.high]}"
        )

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> ChangeSample:
        """Chip ``index`` of the tiling: ``(3, S, S)`` images and an ``(S, S)`` mask."""
        window = self.windows[index]
        chip = self.pair.read_chip(window)
        mask = self._read_label(window)
        mask[~chip.valid] = IGNORE
        sample: ChangeSample = {
            "image_a": torch.from_numpy(self.stretch.apply(chip.image_a)),
            "image_b": torch.from_numpy(self.stretch.apply(chip.image_b)),
            "mask": torch.from_numpy(mask),
            "name": chip_name(self._stem, window),
        }
        return self.transforms(sample) if self.transforms is not None else sample

    def _read_label(self, window: ChipWindow) -> np.ndarray:
        """(S, S) int64 mask of the chip in 0/1/255; parts past the label's edge are 255."""
        size = window.size
        out = np.full((size, size), IGNORE, dtype=np.int64)
        with rasterio.open(self.label_path) as src:
            row, col = self._row0 + window.row_off, self._col0 + window.col_off
            height, width = min(size, src.height - row), min(size, src.width - col)
            if height <= 0 or width <= 0:
                return out
            values = src.read(1, window=Window(col, row, width, height))
        block = np.where(values > 0, 1, 0).astype(np.int64)
        if self._label_nodata is not None:
            block[nodata_equal(values, self._label_nodata)] = IGNORE
        out[:height, :width] = block
        return out


def check_label_raster(path: Path, info: RasterInfo) -> float | None:
    """Check that ``path`` is a one-band 0/1 or 0/255 label on ``info``'s grid; its nodata."""
    if not path.exists():
        raise ChangeDatasetNotFoundError(f"label raster {path} does not exist; check the path")
    try:
        with rasterio.open(path) as src:
            count, nodata = src.count, src.nodata
            differences = grid_differences(src, info)
            if differences:
                raise ChangeDatasetError(
                    f"label {path} is not on the grid of {info.label}: {'; '.join(differences)}; "
                    f"rasterise or warp the label onto that grid (e.g. gdalwarp -te/-tr/-t_srs)"
                )
            if count != 1:
                raise ChangeDatasetError(
                    f"label {path} has {count} bands; expected one band of 0/1 or 0/255"
                )
            values: set[float] = set()
            for _, block_window in src.block_windows(1):
                values.update(np.unique(src.read(1, window=block_window)).tolist())
    except RasterioIOError as err:
        raise ChangeDatasetError(
            f"label {path} is not a readable raster ({err}); pass a GeoTIFF"
        ) from err
    if nodata is not None:
        values = {v for v in values if not nodata_equal(np.asarray(v), nodata)}
    if is_binary(values):
        return nodata
    raise ChangeDatasetError(
        f"label {path} has values {format_list(sorted(values))}; expected 0/1 or 0/255 "
        "(set the ignore value as the file's nodata, e.g. rio edit-info --nodata 255)"
    )
