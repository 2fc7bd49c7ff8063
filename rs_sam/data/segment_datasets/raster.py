"""Chips of a georeferenced raster and a label raster on its grid (never the whole raster)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.windows import Window
from torch.utils.data import Dataset

from rs_sam.data.bands import select_bands
from rs_sam.data.class_table import ClassTable
from rs_sam.data.grid import RasterGrid, chip_windows
from rs_sam.data.image_files import chip_name, grid_differences, nodata_equal
from rs_sam.data.normalize import PERCENTILES
from rs_sam.data.rasters import DateInput, RasterInfo, is_integer_8bit, open_date
from rs_sam.data.segment_datasets.raster_chips import fit_stretch, read_stretched_chip
from rs_sam.data.segment_datasets.sample_maps import decode_boundary, decode_objects
from rs_sam.data.segment_datasets.samples import (
    SegmentDatasetError,
    SegmentDatasetNotFoundError,
    SegmentSample,
    SegmentTransform,
)
from rs_sam.errors import ConfigError


class SegmentRasterDataset(Dataset[SegmentSample]):
    """Chips of a georeferenced raster and a label raster on its grid.

    The label must share the image's CRS, transform and size (else the error gives a
    ``gdalwarp`` command that puts it there); it holds raw ids (one band) or colours (3 or 4
    bands) that ``class_table`` maps. Label nodata, image nodata (all bands) and pixels past
    the raster's edge get ``ignore_index``. Chips are the fixed :func:`chip_windows` tiling,
    each read through its own rasterio window. Non-uint8 imagery gets one per-band
    percentile stretch fitted on a decimated read of the whole raster.

    Args:
        image: The raster (a path, or single-band files to stack; see
            :func:`~rs_sam.data.rasters.open_date`).
        label: Label raster on the image's grid.
        class_table: Maps label ids or colours to training ids.
        chip_size: Chip side in pixels.
        overlap: Pixels shared by neighbouring chips.
        bands: 1-based image bands (default: 1 band replicated, 3 or more use 1, 2, 3).
        objects: SAM object-id raster on the same grid, or None.
        boundaries: SAM boundary raster (0/1 or 0/255) on the same grid, or None.
        nodata: Image nodata (default: the file's own).
        transforms: Applied to every sample last.
        percentiles: Stretch of non-uint8 imagery.
        check_labels: Read the whole label once, block by block, when the dataset is built
            so that unknown ids or colours fail now rather than mid-training.

    Raises:
        RasterNotFoundError, InputRasterError: See ``open_date``.
        SegmentDatasetError: A label or map raster is not on the image's grid or has the
            wrong band count; the image holds only nodata.
        LabelError: Unknown label values (with ``check_labels``, or when a chip is read).
    """

    def __init__(
        self,
        image: DateInput,
        label: str | Path,
        class_table: ClassTable,
        *,
        chip_size: int,
        overlap: int = 0,
        bands: Sequence[int] | None = None,
        objects: str | Path | None = None,
        boundaries: str | Path | None = None,
        nodata: float | None = None,
        transforms: SegmentTransform | None = None,
        percentiles: tuple[float, float] = PERCENTILES,
        check_labels: bool = True,
    ) -> None:
        if not isinstance(class_table, ClassTable):
            raise ConfigError(f"class_table must be a ClassTable, not {type(class_table).__name__}")
        self.info = open_date(image)
        self.class_table = class_table
        self.bands = select_bands([self.info], bands)
        self.nodata = self.info.nodata if nodata is None else nodata
        self.transforms = transforms
        self.grid = RasterGrid.from_dataset(self.info)
        self.label_path = Path(label)
        label_count, self._label_nodata = check_on_grid(self.label_path, "label", self.info)
        if label_count not in (1, 3, 4):
            raise SegmentDatasetError(
                f"label {self.label_path} has {label_count} bands; expected one band of ids or "
                "an RGB(A) colour label"
            )
        self.objects_path = None if objects is None else Path(objects)
        self.boundaries_path = None if boundaries is None else Path(boundaries)
        for what, path in (("objects", self.objects_path), ("boundaries", self.boundaries_path)):
            if path is not None:
                count, _ = check_on_grid(path, what, self.info)
                if count != 1:
                    raise SegmentDatasetError(
                        f"{what} raster {path} has {count} bands; expected one band"
                    )
        self.windows = chip_windows(self.grid, chip_size, overlap)
        self.stretch = fit_stretch(self.info, self.bands, self.nodata, percentiles)
        self.normalisation = (
            "uint8 as is"
            if is_integer_8bit(self.info.dtype)
            else (
                f"stretch low={[round(v, 4) for v in self.stretch.low]} "
                f"high={[round(v, 4) for v in self.stretch.high]}"
            )
        )
        self._stem = Path(self.info.label.split(",")[0]).stem
        if check_labels:
            self._check_labels()

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> SegmentSample:
        """Chip ``index`` of the tiling."""
        window = self.windows[index]
        size = window.size
        image, valid, clipped = read_stretched_chip(
            self.info.path, self.bands, self.nodata, self.stretch, window, self.grid
        )
        rows, cols = int(clipped.height), int(clipped.width)
        ignore = self.class_table.ignore_index
        mask = np.full((size, size), ignore, dtype=np.int64)
        mask[:rows, :cols] = self._encode_label(clipped)
        mask[~valid] = ignore
        sample: SegmentSample = {
            "image": torch.from_numpy(image),
            "mask": torch.from_numpy(mask),
            "name": chip_name(self._stem, window),
        }
        if self.objects_path is not None:
            objects = np.zeros((size, size), dtype=np.int64)
            objects[:rows, :cols] = decode_objects(read_window(self.objects_path, clipped)[0])
            sample["objects"] = torch.from_numpy(objects)
        if self.boundaries_path is not None:
            boundary = np.zeros((size, size), dtype=np.float32)
            values = read_window(self.boundaries_path, clipped)[0]
            boundary[:rows, :cols] = decode_boundary(values, self.boundaries_path)
            sample["boundary"] = torch.from_numpy(boundary)
        return self.transforms(sample) if self.transforms is not None else sample

    def _encode_label(self, window: Window) -> np.ndarray:
        values = read_window(self.label_path, window)
        ignore = None
        if self._label_nodata is not None:
            ignore = np.asarray(nodata_equal(values, self._label_nodata).all(axis=0))
        return self.class_table.encode(values, self.label_path, ignore=ignore)

    def _check_labels(self, step: int = 1024) -> None:
        """Encode the whole label once, ``step``-pixel windows at a time (raises on errors)."""
        for row in range(0, self.grid.height, step):
            for col in range(0, self.grid.width, step):
                height = min(step, self.grid.height - row)
                self._encode_label(Window(col, row, min(step, self.grid.width - col), height))


def check_on_grid(path: Path, what: str, info: RasterInfo) -> tuple[int, float | None]:
    """Band count and nodata of ``path`` after checking it lies on ``info``'s grid."""
    if not path.exists():
        raise SegmentDatasetNotFoundError(f"{what} raster {path} does not exist; check the path")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as src:
                differences = grid_differences(src, info)
                count, nodata = src.count, src.nodata
    except RasterioIOError as err:
        raise SegmentDatasetError(
            f"{what} raster {path} is not readable ({err}); pass a GeoTIFF"
        ) from err
    if differences:
        left, bottom, right, top = info.bounds
        t = info.transform
        raise SegmentDatasetError(
            f"{what} {path} is not on the grid of {info.label}: {'; '.join(differences)}; "
            f"warp it onto that grid, e.g. gdalwarp -t_srs {info.crs} -tr {t.a} {-t.e} "
            f"-te {left} {bottom} {right} {top} -r near {path} {path.stem}_on_grid.tif"
        )
    return count, nodata


def read_window(path: Path, window: Window) -> np.ndarray:
    """(C, h, w) values of ``window`` (all bands)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path) as src:
            return src.read(window=window)
