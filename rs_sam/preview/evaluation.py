"""The preview of an evaluation: its first sample, predictions filled, labels outlined.

An evaluation runs over chips named ``"<sample>:r<row>_c<col>"`` (see
:func:`~rs_sam.data.image_files.chip_name`), in order. :class:`FirstSample` keeps the chips
of the first sample as they pass, decimated onto one canvas of at most ``max_side`` pixels
(the sample's size comes from its dataset), and counts that sample's own confusion matrix at
full resolution. :meth:`FirstSample.view` vectorises the decimated prediction and label maps
into a :class:`~rs_sam.preview.view.PreviewView`.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import rasterio
import rasterio.features
import torch
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from shapely.geometry import shape

from rs_sam.data.grid import RasterGrid, overview_steps
from rs_sam.data.image_files import pixel_grid
from rs_sam.data.pair import BitemporalPair
from rs_sam.errors import InputRasterError
from rs_sam.preview.view import (
    LABEL_COLOUR,
    MAX_SIDE,
    Legend,
    Panel,
    PreviewView,
    decimated_grid,
    ground_metres_per_pixel,
    panel_side,
)

_CHIP = re.compile(r"(.*):r(\d+)_c(\d+)")
NONE = -1  # canvas value of pixels without a class (label ignored, or not yet seen)


def split_chip_name(name: str) -> tuple[str, int, int]:
    """``"tile:r64_c0"`` -> ``("tile", 64, 0)``; a whole sample's name -> ``(name, 0, 0)``."""
    found = _CHIP.fullmatch(name)
    return (found[1], int(found[2]), int(found[3])) if found else (name, 0, 0)


def sample_grid(dataset: Any) -> tuple[RasterGrid, bool]:
    """The full-resolution grid of ``dataset``'s first sample and whether it is georeferenced.

    Plain image files (PNG, or TIFF without a CRS) get a pixel grid (one unit per pixel).
    """
    while isinstance(dataset, torch.utils.data.ConcatDataset):
        dataset = dataset.datasets[0]
    grid = getattr(dataset, "grid", None)  # a labelled raster
    pair = getattr(dataset, "pair", None)  # two georeferenced dates
    if isinstance(pair, BitemporalPair):
        grid = pair.grid
    if isinstance(grid, RasterGrid):
        return grid, True
    files = (getattr(dataset, "pairs", None) or getattr(dataset, "files", None) or [None])[0]
    if files is not None:  # image files: PairFiles (change) or SegmentFiles
        image = getattr(files, "image_a", None) or files.image
        return _file_grid(Path(image), files.width, files.height)
    index = getattr(dataset, "_index", None)  # chips of whole samples of known sizes
    if index:
        ends = [(w.row_off + w.size, w.col_off + w.size) for i, w in index if i == 0 and w]
        return pixel_grid(max(c for _, c in ends), max(r for r, _ in ends)), False
    raise InputRasterError(f"a preview cannot place the samples of {type(dataset).__name__}")


def _file_grid(path: Path, width: int, height: int) -> tuple[RasterGrid, bool]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as src:
                if src.crs is not None:
                    return RasterGrid.from_dataset(src), True
    except (RasterioIOError, InputRasterError):  # not readable by GDAL, or not north-up
        pass
    return pixel_grid(width, height), False


class FirstSample:
    """The first sample of an evaluation, gathered chip by chip (memory: one decimated sample).

    Args:
        dataset: the evaluated dataset (for the first sample's size and georeferencing).
        panels: images per sample (2: the dates of a change pair, side by side).
        classes: number of classes of the prediction and label maps.
        ignore: the label value of unlabelled pixels.
    """

    def __init__(
        self, dataset: Any, *, panels: int, classes: int, ignore: int, max_side: int = MAX_SIDE
    ) -> None:
        self.full, self.georeferenced = sample_grid(dataset)
        side = panel_side(self.full, panels=panels, max_side=max_side)
        self.step = overview_steps(self.full, side)  # (columns, rows)
        rows = -(-self.full.height // self.step[1])
        cols = -(-self.full.width // self.step[0])
        self.grid = decimated_grid(self.full, side, (rows, cols))
        self.images = np.zeros((panels, rows, cols, 3), np.uint8)
        self.predicted = np.full((rows, cols), NONE, np.int16)
        self.label = np.full((rows, cols), NONE, np.int16)
        self.confusion = torch.zeros(classes, classes, dtype=torch.int64)  # truth x prediction
        self.classes, self.ignore = classes, ignore
        self.name: str | None = None

    def add(
        self,
        names: Sequence[str],
        images: Sequence[torch.Tensor],
        predicted: torch.Tensor,
        target: torch.Tensor,
    ) -> None:
        """A batch: chip names, (B, 3, S, S) images 0..255, (B, S, S) class ids and labels."""
        for b, chip in enumerate(names):
            name, row, col = split_chip_name(chip)
            if self.name is None:
                self.name = name
            if name != self.name:
                continue
            truth, guess = target[b].cpu(), predicted[b].cpu().long()
            labelled = truth != self.ignore
            pairs = truth[labelled] * self.classes + guess[labelled]
            self.confusion += torch.bincount(pairs, minlength=self.classes**2).reshape(
                self.classes, self.classes
            )
            label = torch.where(labelled, truth, NONE).numpy()
            picks = self._picks(row, col, truth.shape[-2:])
            if picks is None:
                continue
            into, take = picks
            self.predicted[into] = guess.numpy()[take]
            self.label[into] = label[take]
            for i, image in enumerate(images):
                chip_rgb = image[b, :3].cpu().numpy().clip(0, 255).round().astype(np.uint8)
                self.images[i][into] = np.moveaxis(chip_rgb, 0, -1)[take]

    def _picks(
        self, row: int, col: int, shape: Sequence[int]
    ) -> tuple[tuple[slice, slice], tuple[slice, slice]] | None:
        """Canvas slices and chip slices of the chip pixels that the decimation keeps."""
        slices = []
        for offset, size, step, full in (
            (row, shape[0], self.step[1], self.full.height),
            (col, shape[1], self.step[0], self.full.width),
        ):
            first = -offset % step  # the chip's first pixel on the decimated grid
            stop = min(size, full - offset)  # padding past the sample's edge is left out
            if first >= stop:
                return None
            count = -(-(stop - first) // step)
            start = (offset + first) // step
            slices.append((slice(start, start + count), slice(first, stop, step)))
        (into_r, take_r), (into_c, take_c) = slices
        return (into_r, into_c), (take_r, take_c)

    def view(
        self, title: str, panel_titles: Sequence[str], classes: Mapping[int, tuple[str, str]]
    ) -> PreviewView:
        """The preview: predictions of ``classes`` (id -> (name, '#RRGGBB')) filled, labels of
        the same classes outlined. One class (change) is the legend's "prediction"; several
        are listed by name (those predicted, or all when none is)."""
        predicted = vectorise(self.predicted, self.grid, classes, "prediction")
        label = vectorise(self.label, self.grid, classes, "label")
        outline = {"label": LABEL_COLOUR}
        if len(classes) == 1:
            legend = Legend("", {"prediction": next(iter(classes.values()))[1]}, outlines=outline)
        else:
            present = set(predicted["class_name"])
            shown = {n: c for n, c in classes.values() if n in present} or dict(classes.values())
            legend = Legend("prediction", shown, "class_name", outlines=outline)
        panels = tuple(Panel(t, rgb) for t, rgb in zip(panel_titles, self.images, strict=True))
        metres = ground_metres_per_pixel(self.grid) if self.georeferenced else 0.0
        return PreviewView(title, panels, self.grid, predicted, legend, metres, outlines=label)


def vectorise(
    values: np.ndarray, grid: RasterGrid, classes: Mapping[int, tuple[str, str]], layer: str
) -> gpd.GeoDataFrame:
    """Polygons of the pixels of each class in ``classes`` (others are left out)."""
    keep = np.isin(values, list(classes))
    shapes = rasterio.features.shapes(
        values.astype(np.int32), mask=keep, connectivity=4, transform=grid.transform
    )
    geometries, names = [], []
    for geometry, value in shapes:
        geometries.append(shape(geometry))
        names.append(classes[int(value)][0])
    return gpd.GeoDataFrame(
        {"layer": [layer] * len(names), "class_name": names}, geometry=geometries, crs=grid.crs
    )
