"""The ``data:`` section of a LoRA-training config: binary masks of one target class.

SamLP fine-tunes SAM to segment ONE kind of object (licence plates there; buildings, roads...
here). A sample is ``{"image": (3, S, S) float32 RGB 0..255, "mask": (S, S) int64 0/1/255,
"name": str}``: 1 = the target class, 0 = every other class, 255 = ignore (the class table's
ignore values, nodata, padding past an image's edge).

Sources, each a mapping with a ``layout``:

- ``folders``, ``tree``, ``raster``: the semantic-segmentation layouts of
  :class:`~rs_sam.training.segment_data.SegmentDataModule` (label files with ids or colours,
  mapped by ``classes``); the ``target`` class becomes 1, the other classes 0. SAM object and
  boundary maps are not used (``objects``/``boundaries`` are refused).
- ``polygons``: a georeferenced image and a vector file (``.gpkg``, ``.geojson``, ``.shp``...)
  of target polygons (:class:`PolygonMaskDataset`): inside = 1, outside = 0. The polygons are
  reprojected to the raster's CRS and burnt chip by chip (``rasterio.features.rasterize`` on
  each chip's window), never as a whole-raster mask. No class table is needed.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
from rasterio.features import rasterize
from rasterio.windows import bounds as window_bounds
from rasterio.windows import transform as window_transform
from torch.utils.data import Dataset

from rs_sam.data.bands import select_bands
from rs_sam.data.class_table import ClassTable
from rs_sam.data.grid import RasterGrid, chip_windows
from rs_sam.data.labels import IGNORE
from rs_sam.data.rasters import DateInput, is_integer_8bit, open_date
from rs_sam.data.segment_augment import SegmentAugment
from rs_sam.data.segment_datasets import (
    SegmentDatasetError,
    SegmentDatasetNotFoundError,
    SegmentSample,
    SegmentTransform,
    fit_stretch,
    read_stretched_chip,
)
from rs_sam.errors import ConfigError
from rs_sam.training.config import check_arguments
from rs_sam.training.data_module import SourcesDataModule
from rs_sam.training.segment_data import SegmentDataModule

#: Source layouts that need a class table (label files of ids or colours).
LABEL_LAYOUTS = ("folders", "tree", "raster")
#: Source arguments of the segmentation layouts that LoRA training does not use.
_UNUSED = ("objects", "boundaries")


class BinaryMaskDataset(Dataset[SegmentSample]):
    """Samples of a segmentation dataset with the mask made binary: target 1, rest 0, 255.

    Args:
        dataset: A dataset of :class:`~rs_sam.data.segment_datasets.SegmentSample` whose
            masks hold training ids of ``class_table``.
        class_table: The table those ids come from.
        target: Name of the class that becomes 1.
    """

    def __init__(self, dataset: Dataset[SegmentSample], class_table: ClassTable, target: str):
        if target not in class_table.names:
            raise ConfigError(
                f"target class {target!r} is not in the class table "
                f"({', '.join(class_table.names)})"
            )
        self.dataset = dataset
        self.target_id = class_table.names.index(target)
        self.ignore_index = class_table.ignore_index
        self.normalisation = getattr(dataset, "normalisation", "")

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> SegmentSample:
        sample = self.dataset[index]
        mask = sample["mask"]
        binary = (mask == self.target_id).to(torch.int64)
        binary[mask == self.ignore_index] = IGNORE
        out: SegmentSample = {"image": sample["image"], "mask": binary, "name": sample["name"]}
        return out


class PolygonMaskDataset(Dataset[SegmentSample]):
    """Chips of a georeferenced raster with a binary mask burnt from polygons of the target.

    The vector file is read once (geopandas) and reprojected to the raster's CRS; each chip
    burns only the polygons that touch its window (spatial index), onto the chip's own grid.
    Pixels past the raster's edge and image nodata (all bands) get 255.

    Args:
        image: The raster (a path, or single-band files to stack; see
            :func:`~rs_sam.data.rasters.open_date`).
        polygons: Vector file of target polygons (any format geopandas reads).
        layer: Layer of a multi-layer file (GeoPackage), or None for the first.
        chip_size: Chip side in pixels.
        overlap: Pixels shared by neighbouring chips.
        bands: 1-based image bands (default: 1, 2, 3; one band replicated).
        nodata: Image nodata (default: the file's own).
        all_touched: Burn every pixel a polygon touches (default: pixel centres inside).
        transforms: Applied to every sample last.
        percentiles: Stretch of non-uint8 imagery (fitted once on a decimated read).

    Raises:
        SegmentDatasetNotFoundError: The vector file does not exist.
        SegmentDatasetError: It is unreadable, has no CRS, holds no polygons, or none of them
            overlaps the raster (the message gives both extents in the raster's CRS).
    """

    def __init__(
        self,
        image: DateInput,
        polygons: str | Path,
        *,
        chip_size: int,
        layer: str | None = None,
        overlap: int = 0,
        bands: Sequence[int] | None = None,
        nodata: float | None = None,
        all_touched: bool = False,
        transforms: SegmentTransform | None = None,
        percentiles: tuple[float, float] = (2.0, 98.0),
    ) -> None:
        self.info = open_date(image)
        self.bands = select_bands([self.info], bands)
        self.nodata = self.info.nodata if nodata is None else nodata
        self.all_touched = bool(all_touched)
        self.transforms = transforms
        self.grid = RasterGrid.from_dataset(self.info)
        self.polygons_path = Path(polygons)
        self.geometries = _read_polygons(self.polygons_path, layer, self.info)
        self._index = self.geometries.sindex
        self.windows = chip_windows(self.grid, chip_size, overlap)
        self.stretch = fit_stretch(self.info, self.bands, self.nodata, percentiles)
        self.normalisation = (
            "uint8 as is"
            if is_integer_8bit(self.info.dtype)
            else f"stretch low={list(self.stretch.low)} high={list(self.stretch.high)}"
        )
        self._stem = Path(self.info.label.split(",")[0]).stem

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> SegmentSample:
        chip = self.windows[index]
        image, valid, _ = read_stretched_chip(
            self.info.path, self.bands, self.nodata, self.stretch, chip, self.grid
        )
        mask = self._burn(chip.window).astype(np.int64)
        mask[~valid] = IGNORE
        sample: SegmentSample = {
            "image": torch.from_numpy(image),
            "mask": torch.from_numpy(mask),
            "name": f"{self._stem}:r{chip.row_off}_c{chip.col_off}",
        }
        return self.transforms(sample) if self.transforms is not None else sample

    def _burn(self, window: rasterio.windows.Window) -> np.ndarray:
        """0/1 mask of the polygons on the (unclipped) window's own grid."""
        from shapely.geometry import box

        size = int(window.height)
        left, bottom, right, top = window_bounds(window, self.info.transform)
        hits = self._index.query(box(left, bottom, right, top))
        if len(hits) == 0:
            return np.zeros((size, size), dtype=np.uint8)
        return rasterize(
            ((geometry, 1) for geometry in self.geometries.iloc[np.sort(hits)]),
            out_shape=(size, size),
            transform=window_transform(window, self.info.transform),
            fill=0,
            all_touched=self.all_touched,
            dtype=np.uint8,
        )


def _read_polygons(path: Path, layer: str | None, info: Any) -> Any:
    """The polygons of ``path`` in the raster's CRS (a GeoSeries), checked to overlap it."""
    import geopandas as gpd

    if not path.exists():
        raise SegmentDatasetNotFoundError(f"polygon file {path} does not exist; check the path")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            frame = gpd.read_file(path, layer=layer) if layer else gpd.read_file(path)
    except Exception as err:  # pyogrio/fiona raise many types for unreadable files
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise SegmentDatasetError(
            f"polygon file {path} is not readable ({first}); pass a GeoPackage, GeoJSON or "
            "shapefile"
        ) from err
    if frame.crs is None:
        raise SegmentDatasetError(
            f"polygon file {path} has no CRS; set it (e.g. ogr2ogr -a_srs EPSG:XXXX) so the "
            "polygons can be placed on the raster"
        )
    geometries = frame.geometry
    geometries = geometries[
        geometries.notna()
        & ~geometries.is_empty
        & geometries.geom_type.isin(["Polygon", "MultiPolygon"])
    ]
    if geometries.empty:
        raise SegmentDatasetError(
            f"polygon file {path} holds no (multi)polygons; pass the target's outlines"
        )
    geometries = geometries.to_crs(info.crs).reset_index(drop=True)
    left, bottom, right, top = info.bounds
    xmin, ymin, xmax, ymax = geometries.total_bounds
    if not (xmin < right and xmax > left and ymin < top and ymax > bottom):
        raise SegmentDatasetError(
            f"no polygon of {path} overlaps {info.label}: polygons span "
            f"({xmin:.6g}, {ymin:.6g}, {xmax:.6g}, {ymax:.6g}) but the raster spans "
            f"({left:.6g}, {bottom:.6g}, {right:.6g}, {top:.6g}) in {info.crs}; check both CRSs"
        )
    return geometries


class MaskDataModule(SegmentDataModule):
    """Training and validation chips with binary masks of one target class (SamLP)."""

    def __init__(
        self,
        *,
        target: str,
        train: Sequence[Mapping[str, Any]],
        val: Sequence[Mapping[str, Any]] = (),
        classes: Mapping[str, Any] | None = None,
        chip_size: int = 1024,
        overlap: int = 0,
        bands: Sequence[int] | None = None,
        batch_size: int = 2,
        num_workers: int = 0,
        augment: bool = True,
    ) -> None:
        """Describe the data; datasets are built in :meth:`setup`.

        Args:
            target: Name of the class to segment (a class of ``classes``; for ``polygons``
                sources only, any name: it labels the adapter).
            train, val: Lists of sources (see the module docstring).
            classes: The class table of the label files (needed by ``folders``, ``tree`` and
                ``raster`` sources).
            chip_size, overlap: Chips cut from every image (pixels).
            bands: 1-based bands of multi-band images (default 1, 2, 3).
            augment: Flips and 90-degree rotations, identical on image and mask.
        """
        if not isinstance(target, str) or not target.strip():
            raise ConfigError(f"data.target={target!r} must name the class to segment")
        self.target = target
        sources = [*train, *val]
        needs_table = [
            s for s in sources if isinstance(s, Mapping) and s.get("layout") in LABEL_LAYOUTS
        ]
        self.class_table: ClassTable | None = None  # type: ignore[assignment]
        if classes is not None:
            self.class_table = ClassTable.from_config(classes)
            if target not in self.class_table.names:
                raise ConfigError(
                    f"data.target {target!r} is not a class of data.classes "
                    f"({', '.join(self.class_table.names)}); name one of them"
                )
        elif needs_table:
            raise ConfigError(
                f"data sources with layout {needs_table[0]['layout']!r} need data.classes (the "
                "class table of their label files) to find the target class"
            )
        SourcesDataModule.__init__(
            self,
            train=train,
            val=val,
            chip_size=chip_size,
            overlap=overlap,
            bands=bands,
            batch_size=batch_size,
            num_workers=num_workers,
            augment=SegmentAugment() if augment else None,
            cache_features=False,  # LoRA changes the encoder's output: nothing to cache
            cache_dir="runs/feature-cache",
        )

    def check_source(self, source: Mapping[str, Any], where: str) -> None:
        if not isinstance(source, Mapping):
            raise ConfigError(f"data.{where} source {source!r} must be a mapping with a layout")
        layout = source.get("layout")
        if layout == "polygons":
            arguments = {k: v for k, v in source.items() if k != "layout"}
            managed = sorted(set(arguments) & {"chip_size", "overlap", "bands", "transforms"})
            if managed:
                raise ConfigError(
                    f"data.{where} source sets {', '.join(managed)}, which the data section sets "
                    "for every source; move them up to 'data'"
                )
            for key in ("image", "polygons"):
                if key not in arguments:
                    raise ConfigError(f"data.{where} (polygons) needs '{key}'")
            check_arguments(PolygonMaskDataset, arguments, f"data.{where} (polygons)")
            return
        if layout not in LABEL_LAYOUTS:
            raise ConfigError(
                f"data.{where} source {dict(source)} needs 'layout' set to one of "
                f"{', '.join((*LABEL_LAYOUTS, 'polygons'))}"
            )
        unused = sorted(set(source) & set(_UNUSED))
        if unused:
            raise ConfigError(
                f"data.{where} source sets {', '.join(unused)}; LoRA training uses no SAM "
                "object or boundary maps: remove them"
            )
        super().check_source(source, where)

    def build_source(self, source: dict[str, Any], transforms: Any) -> Dataset[Any]:
        if source.get("layout") == "polygons":
            source = {k: v for k, v in source.items() if k != "layout"}
            return PolygonMaskDataset(
                **source,
                chip_size=self.chip_size,
                overlap=self.overlap,
                bands=self.bands,
                transforms=transforms,
            )
        assert self.class_table is not None  # checked in __init__
        dataset = super().build_source(source, transforms)
        return BinaryMaskDataset(dataset, self.class_table, self.target)


def foreground_fraction(dataset: Dataset[SegmentSample], limit: int = 64) -> float:
    """Share of labelled pixels that are target in up to ``limit`` evenly spread samples."""
    count = len(dataset)  # type: ignore[arg-type]
    step = max(1, math.ceil(count / limit))
    target = labelled = 0
    for index in range(0, count, step):
        mask = dataset[index]["mask"]
        target += int((mask == 1).sum())
        labelled += int((mask != IGNORE).sum())
    return target / labelled if labelled else 0.0


__all__ = [
    "BinaryMaskDataset",
    "MaskDataModule",
    "PolygonMaskDataset",
    "foreground_fraction",
]
