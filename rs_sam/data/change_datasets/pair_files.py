"""Labelled bitemporal datasets for training change detection (SAM-CD).

Every dataset here returns the same sample, a :class:`ChangeSample` dict::

    {"image_a": (3, H, W) float32 RGB in 0..255, "image_b": (3, H, W) float32,
     "mask": (H, W) int64 in {0, 1} with 255 = ignore, "name": str}

so a training loop never knows which layout the pairs came from:

* :class:`ChangeFolderDataset`: the LEVIR-CD layout ``root/A``, ``root/B``, ``root/label``
  (same file names) with optional split lists ``root/list/<split>.txt``.
* :class:`AirChangeDataset`: SZTAKI AirChange, one folder per pair holding ``im1``, ``im2``
  and ``gt`` (``.bmp``, any case), found recursively (``Szada/1``, ``Archieve``...).
* :class:`GeoChangeDataset`: two georeferenced dates and a label raster on a's grid, cut
  into chips by :func:`~rs_sam.data.grid.chip_windows`.
* :func:`torchgeo_change_dataset`: torchgeo's ``LEVIRCD``/``OSCD`` (data already on disk).

Pixel scaling follows :mod:`rs_sam.data.normalize`: uint8 is used as it is; any other type
gets one 2-98 percentile stretch per band computed on BOTH dates together (per pair for the
folder datasets, once per scene for :class:`GeoChangeDataset`). Each dataset describes its
scaling in ``normalisation``, which belongs in a feature-cache key.
"""

from __future__ import annotations

import glob
import os
import random
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NotRequired, TypedDict

import numpy as np
import rasterio
import torch
from PIL import Image
from rasterio.errors import RasterioIOError
from rasterio.windows import Window
from torch import Tensor
from torch.utils.data import Dataset

from rs_sam.data.bands import select_bands
from rs_sam.data.grid import ChipWindow, chip_windows
from rs_sam.data.image_files import (
    IMAGE_SUFFIXES,
    PIL_ERRORS,
    TIFF_SUFFIXES,
    ImageFileError,
    band_first,
    chip_index,
    crop_chip,
    format_list,
    format_size,
    grid_differences,
    image_size,
    nodata_equal,
    open_tiff,
    pick_bands,
    read_image,
)
from rs_sam.data.normalize import JointStretch
from rs_sam.data.pair import BitemporalPair
from rs_sam.data.rasters import DateInput, RasterInfo, is_integer_8bit, open_date
from rs_sam.errors import ConfigError, RasterNotFoundError

#: Mask value of pixels that carry no label (padding, nodata); losses must ignore it.
IGNORE_INDEX = 255


class ChangeDatasetError(ImageFileError):
    """A change-detection dataset or sample is malformed (label values, sizes, split lists)."""


class ChangeDatasetNotFoundError(RasterNotFoundError):
    """A dataset folder, split list or file of a pair does not exist."""


class ChangeSample(TypedDict):
    """One training sample (see the module docstring for shapes and value ranges)."""

    image_a: Tensor  # (3, H, W) float32, RGB 0..255
    image_b: Tensor  # (3, H, W) float32, RGB 0..255
    mask: Tensor  # (H, W) int64, 0 = no change, 1 = change, 255 = ignore
    name: str
    features_a: NotRequired[list[Tensor]]  # cached encoder maps (C_i, h_i, w_i), see feature_cache
    features_b: NotRequired[list[Tensor]]


#: A callable applied to every sample last (e.g. :class:`rs_sam.data.augment.PairAugment`).
SampleTransform = Callable[[ChangeSample], ChangeSample]


# ---------------------------------------------------------------------------- file datasets
@dataclass(frozen=True)
class PairFiles:
    """The files of one image pair and their common size.

    Attributes:
        name: Identifier of the pair (file name, or folder relative to the root).
        image_a, image_b: Image files of the first and second date.
        label: Change mask, None when unlabelled (then the whole mask is ignored).
        width, height: Size in pixels shared by both images and the label.
    """

    name: str
    image_a: Path
    image_b: Path
    label: Path | None
    width: int
    height: int


class _PairFileDataset(Dataset[ChangeSample]):
    """Samples from image files, whole images or chips of them (shared by the folder layouts).

    Args:
        pairs: The pairs, already checked for existence and equal sizes.
        transforms: Applied to every sample last.
        chip_size: Cut every pair into square chips of this side (padding past the edge has
            image 0 and mask 255), or None for whole images.
        overlap: Pixels shared by neighbouring chips (see :func:`chip_windows`).
        bands: 1-based bands read from multi-band images (default: 1 band replicated to RGB,
            3 or more bands use 1, 2, 3).
        percentiles: Joint stretch of non-uint8 pairs.
        label_threshold: None: labels must be 0/1 or 0/255; an integer: ``label > threshold``
            is change (for labels with stray values).
    """

    def __init__(
        self,
        pairs: Sequence[PairFiles],
        *,
        transforms: SampleTransform | None,
        chip_size: int | None,
        overlap: int,
        bands: Sequence[int] | None,
        percentiles: tuple[float, float],
        label_threshold: int | None,
    ) -> None:
        self.pairs = list(pairs)
        self.transforms = transforms
        self.chip_size = chip_size
        self.bands = None if bands is None else tuple(bands)
        self.percentiles = percentiles
        self.label_threshold = label_threshold
        self.normalisation = (
            "uint8 as is; other types joint "
            f"{percentiles[0]:g}-{percentiles[1]:g} percentile stretch per pair"
        )
        self._index = chip_index(((p.width, p.height) for p in self.pairs), chip_size, overlap)

    @property
    def pair_names(self) -> list[str]:
        """Names of the pairs (not of the chips), e.g. for :func:`make_split`."""
        return [pair.name for pair in self.pairs]

    def __len__(self) -> int:
        return len(self._index)

    def __getitem__(self, index: int) -> ChangeSample:
        """The sample at ``index``: one pair, or one chip of a pair when ``chip_size`` is set."""
        pair_index, window = self._index[index]
        pair = self.pairs[pair_index]
        raw_a = pick_bands(read_image(pair.image_a), self.bands, pair.image_a)
        raw_b = pick_bands(read_image(pair.image_b), self.bands, pair.image_b)
        image_a, image_b = _scale_pair(raw_a, raw_b, self.percentiles)
        if pair.label is None:
            mask = np.full((pair.height, pair.width), IGNORE_INDEX, dtype=np.int64)
        else:
            mask = _binary_label(_read_label(pair.label), pair.label, self.label_threshold)
        name = pair.name
        if window is not None:
            image_a, image_b = crop_chip(image_a, window, 0), crop_chip(image_b, window, 0)
            mask = crop_chip(mask, window, IGNORE_INDEX)
            name = f"{pair.name}:r{window.row_off}_c{window.col_off}"
        sample: ChangeSample = {
            "image_a": torch.from_numpy(np.ascontiguousarray(image_a)),
            "image_b": torch.from_numpy(np.ascontiguousarray(image_b)),
            "mask": torch.from_numpy(np.ascontiguousarray(mask)),
            "name": name,
        }
        return self.transforms(sample) if self.transforms is not None else sample


class ChangeFolderDataset(_PairFileDataset):
    """Pairs in the LEVIR-CD layout: ``root/A``, ``root/B`` and ``root/label``.

    The three folders hold files of the same name (``.png``, ``.tif``, ``.bmp``, ``.jpg``).
    Labels are 0/255 or 0/1 (returned as 0/1); images may be RGB(A), grayscale (replicated
    to RGB) or multi-band GeoTIFF (georeferencing ignored). Files are checked when the
    dataset is built (existence, equal sizes); label values when a sample is read.

    Args:
        root: Dataset folder.
        split: Use the file names listed in ``root/list/<split>.txt`` (one per line; the
            extension may be left out). None: every image in ``root/A``.
        pairs: Use these file names instead (e.g. from :func:`make_split`); not with ``split``.
        transforms: Applied to every sample last (e.g. :class:`~rs_sam.data.augment.PairAugment`).
        require_labels: When False, a pair without a label is kept with an all-ignore
            mask (inference); when True it is an error.
        chip_size: Cut every pair into chips of this side (needed to batch images of
            different or non-square sizes); None returns whole images.
        overlap: Pixels shared by neighbouring chips.
        bands: 1-based bands of multi-band images (default 1, 2, 3).
        percentiles: Joint stretch of pairs that are not uint8.

    Raises:
        ChangeDatasetNotFoundError: ``root`` or a folder, split list or file is missing.
        ChangeDatasetError: Empty selection, images/label of different sizes, bad options.
        ImageFileError: An image is unreadable, or lacks the bands asked for (the base class
            of ChangeDatasetError).
    """

    image_dirs = ("A", "B")
    label_dir = "label"
    list_dir = "list"

    def __init__(
        self,
        root: str | Path,
        *,
        split: str | None = None,
        pairs: Sequence[str] | None = None,
        transforms: SampleTransform | None = None,
        require_labels: bool = True,
        chip_size: int | None = None,
        overlap: int = 0,
        bands: Sequence[int] | None = None,
        percentiles: tuple[float, float] = (2.0, 98.0),
    ) -> None:
        self.root = Path(root)
        self.split = split
        folder_a, folder_b = (self.root / d for d in self.image_dirs)
        for folder in (self.root, folder_a, folder_b):
            if not folder.is_dir():
                raise ChangeDatasetNotFoundError(
                    f"folder {folder} does not exist; pass the root of a LEVIR-CD style dataset "
                    f"(with {'/, '.join(self.image_dirs)}/ and {self.label_dir}/)"
                )
        available = {p.name: p for p in _list_images(folder_a)}
        if not available:
            raise ChangeDatasetNotFoundError(
                f"folder {folder_a} holds no images ({', '.join(IMAGE_SUFFIXES)})"
            )
        if split is not None and pairs is not None:
            raise ConfigError("pass split= or pairs=, not both")
        if split is not None:
            wanted = self._read_split(split)
        elif pairs is not None:
            wanted = list(pairs)
            if not wanted:
                raise ConfigError("pairs= is empty; pass at least one file name")
        else:
            wanted = sorted(available)
        files = [
            self._pair_files(_resolve_name(name, available, folder_a), require_labels)
            for name in wanted
        ]
        super().__init__(
            files,
            transforms=transforms,
            chip_size=chip_size,
            overlap=overlap,
            bands=bands,
            percentiles=percentiles,
            label_threshold=None,
        )

    def available_splits(self) -> list[str]:
        """Names of the split lists in ``root/list`` (``*.txt`` without the suffix)."""
        folder = self.root / self.list_dir
        return sorted(p.stem for p in folder.glob("*.txt")) if folder.is_dir() else []

    def _read_split(self, split: str) -> list[str]:
        path = self.root / self.list_dir / f"{split}.txt"
        choices = (
            ", ".join(self.available_splits()) or f"none: {self.root / self.list_dir} is empty"
        )
        if not path.is_file():
            raise ChangeDatasetNotFoundError(
                f"split list {path} does not exist; available splits: {choices}"
            )
        names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        if not names:
            raise ChangeDatasetError(
                f"split list {path} is empty; list one file name per line or choose another "
                f"split ({choices})"
            )
        return names

    def _pair_files(self, path_a: Path, require_labels: bool) -> PairFiles:
        name = path_a.name
        path_b = _find_file(self.root / self.image_dirs[1], name)
        if path_b is None:
            raise ChangeDatasetNotFoundError(
                f"{path_a} has no second date {self.root / self.image_dirs[1] / name}; "
                "add it or leave the pair out of the split"
            )
        label = _find_file(self.root / self.label_dir, name)
        if label is None and require_labels:
            raise ChangeDatasetNotFoundError(
                f"{name} has no label {self.root / self.label_dir / name}; add it, leave the "
                "pair out of the split, or pass require_labels=False (inference)"
            )
        return _checked_pair(name, path_a, path_b, label)


class AirChangeDataset(_PairFileDataset):
    """SZTAKI AirChange: one folder per pair with ``im1``, ``im2`` and ``gt`` images.

    Pair folders are found anywhere below ``root`` (``Szada/1`` ... ``Szada/7``,
    ``Tiszadob/1`` ... ``Tiszadob/5``, ``Archieve``); file names match in any case
    (``im2.BMP``). The hand-drawn ``gt`` has stray grey values, so change is ``gt > 127``.
    Images are 952 x 640 (one 1048 x 724): pass ``chip_size`` to batch them.

    Args:
        root: Folder holding the pair folders.
        pairs: Pair names (folders relative to ``root``, e.g. ``"Szada/1"``); default all.
        transforms, chip_size, overlap, bands, percentiles: As in :class:`ChangeFolderDataset`.
        label_threshold: Grey level above which ``gt`` is change.

    Raises:
        ChangeDatasetNotFoundError: ``root`` is missing, holds no pair folder, or a
            requested pair does not exist (the message lists the available ones).
        ChangeDatasetError: Images and label of one pair have different sizes.
    """

    stems = ("im1", "im2", "gt")

    def __init__(
        self,
        root: str | Path,
        *,
        pairs: Sequence[str] | None = None,
        transforms: SampleTransform | None = None,
        chip_size: int | None = None,
        overlap: int = 0,
        bands: Sequence[int] | None = None,
        percentiles: tuple[float, float] = (2.0, 98.0),
        label_threshold: int = 127,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise ChangeDatasetNotFoundError(
                f"folder {self.root} does not exist; pass the AirChange root (with Szada/, "
                "Tiszadob/...)"
            )
        found = self._discover()
        if not found:
            raise ChangeDatasetNotFoundError(
                f"no pair folder (with {', '.join(self.stems)} images) below {self.root}; "
                "pass the AirChange root"
            )
        if pairs is None:
            names = sorted(found)
        else:
            names = list(pairs)
            missing = [n for n in names if n not in found]
            if missing or not names:
                raise ChangeDatasetNotFoundError(
                    f"pairs {missing or names} not found below {self.root}; available: "
                    f"{format_list(sorted(found))}"
                )
        super().__init__(
            [found[n] for n in names],
            transforms=transforms,
            chip_size=chip_size,
            overlap=overlap,
            bands=bands,
            percentiles=percentiles,
            label_threshold=label_threshold,
        )
        self.normalisation += f"; label > {label_threshold}"

    def _discover(self) -> dict[str, PairFiles]:
        found: dict[str, PairFiles] = {}
        for folder in sorted({p.parent for p in self.root.rglob("*") if p.is_file()}):
            files = {p.stem.lower(): p for p in _list_images(folder)}
            if not all(stem in files for stem in self.stems):
                continue
            name = folder.relative_to(self.root).as_posix()
            name = self.root.name if name == "." else name
            im1, im2, gt = (files[s] for s in self.stems)
            found[name] = _checked_pair(name, im1, im2, gt)
        return found


# ---------------------------------------------------------------------------- georeferenced
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
        self._label_nodata = _check_label_raster(self.label_path, info_a)
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
        mask[~chip.valid] = IGNORE_INDEX
        sample: ChangeSample = {
            "image_a": torch.from_numpy(self.stretch.apply(chip.image_a)),
            "image_b": torch.from_numpy(self.stretch.apply(chip.image_b)),
            "mask": torch.from_numpy(mask),
            "name": f"{self._stem}:r{window.row_off}_c{window.col_off}",
        }
        return self.transforms(sample) if self.transforms is not None else sample

    def _read_label(self, window: ChipWindow) -> np.ndarray:
        """(S, S) int64 mask of the chip in 0/1/255; parts past the label's edge are 255."""
        size = window.size
        out = np.full((size, size), IGNORE_INDEX, dtype=np.int64)
        with rasterio.open(self.label_path) as src:
            row, col = self._row0 + window.row_off, self._col0 + window.col_off
            height, width = min(size, src.height - row), min(size, src.width - col)
            if height <= 0 or width <= 0:
                return out
            values = src.read(1, window=Window(col, row, width, height))
        block = np.where(values > 0, 1, 0).astype(np.int64)
        if self._label_nodata is not None:
            block[nodata_equal(values, self._label_nodata)] = IGNORE_INDEX
        out[:height, :width] = block
        return out


def _check_label_raster(path: Path, info: RasterInfo) -> float | None:
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
    if values <= {0, 1} or values <= {0, 255}:
        return nodata
    raise ChangeDatasetError(
        f"label {path} has values {format_list(sorted(values))}; expected 0/1 or 0/255 "
        "(set the ignore value as the file's nodata, e.g. rio edit-info --nodata 255)"
    )


# ---------------------------------------------------------------------------- torchgeo
class TorchgeoChangeDataset(Dataset[ChangeSample]):
    """A torchgeo change dataset (``{"image": (2, C, H, W), "mask": (1, H, W)}``) as samples.

    Built by :func:`torchgeo_change_dataset`. Whole pairs, or chips of them when
    ``chip_size`` is set (the chip grid of the folder datasets: top-left anchored, edge chips
    padded with image 0 and mask 255). Non-uint8 imagery (OSCD) gets the joint per-pair
    stretch of the folder datasets, computed on the whole pair. torchgeo clamps labels to 0/1.
    """

    def __init__(
        self,
        dataset: Any,
        names: Sequence[str],
        sizes: Sequence[tuple[int, int]],
        *,
        rgb: bool,
        chip_size: int | None = None,
        overlap: int = 0,
        percentiles: tuple[float, float] = (2.0, 98.0),
        transforms: SampleTransform | None = None,
    ) -> None:
        self.dataset = dataset
        self.names = list(names)
        self.rgb = rgb
        self.percentiles = percentiles
        self.transforms = transforms
        self.normalisation = (
            "uint8 as is"
            if rgb
            else f"joint {percentiles[0]:g}-{percentiles[1]:g} percentile stretch per pair"
        )
        self._index = chip_index(sizes, chip_size, overlap)
        self._last: tuple[int, ChangeSample] | None = None  # chips of a pair come in a row

    def __len__(self) -> int:
        return len(self._index)

    def __getitem__(self, index: int) -> ChangeSample:
        pair_index, window = self._index[index]
        sample = self._pair(pair_index)
        if window is not None:
            image_a = crop_chip(sample["image_a"].numpy(), window, 0)
            image_b = crop_chip(sample["image_b"].numpy(), window, 0)
            mask = crop_chip(sample["mask"].numpy(), window, IGNORE_INDEX)
            sample = {
                "image_a": torch.from_numpy(image_a),
                "image_b": torch.from_numpy(image_b),
                "mask": torch.from_numpy(mask),
                "name": f"{sample['name']}:r{window.row_off}_c{window.col_off}",
            }
        else:
            sample = dict(sample)  # type: ignore[assignment]
        return self.transforms(sample) if self.transforms is not None else sample

    def _pair(self, pair_index: int) -> ChangeSample:
        """One whole pair, read through torchgeo (the last one is kept for its next chip)."""
        if self._last is not None and self._last[0] == pair_index:
            return self._last[1]
        item = self.dataset[pair_index]
        image = item["image"].numpy().astype(np.float32)  # (2, C, H, W)
        if self.rgb:
            image_a, image_b = image[0], image[1]
        else:
            image_a, image_b = _scale_pair(image[0], image[1], self.percentiles, force=True)
        sample: ChangeSample = {
            "image_a": torch.from_numpy(np.ascontiguousarray(image_a)),
            "image_b": torch.from_numpy(np.ascontiguousarray(image_b)),
            "mask": item["mask"].reshape(item["mask"].shape[-2:]).to(torch.int64),
            "name": self.names[pair_index],
        }
        self._last = (pair_index, sample)
        return sample


def torchgeo_change_dataset(
    name: Literal["levircd", "oscd"],
    root: str | Path,
    split: str,
    *,
    chip_size: int | None = None,
    overlap: int = 0,
    transforms: SampleTransform | None = None,
) -> TorchgeoChangeDataset:
    """torchgeo's ``LEVIRCD`` or ``OSCD`` (RGB bands) over data already on disk; never downloads.

    Args:
        name: ``"levircd"`` (``root/A``, ``root/B``, ``root/label`` with files named
            ``<split>_*.png``) or ``"oscd"`` (the official extracted folders, 13 bands per date).
        root: Folder torchgeo reads.
        split: ``train``/``val``/``test`` (LEVIR-CD) or ``train``/``test`` (OSCD).
        chip_size: Cut every pair into square chips of this side (LEVIR-CD's 1024x1024
            pairs and OSCD's cities are too large for one batch), or None for whole pairs.
        overlap: Pixels shared by neighbouring chips.
        transforms: Applied to every sample last.

    Raises:
        ConfigError: Unknown ``name`` or ``split``.
        ChangeDatasetNotFoundError: torchgeo finds no data under ``root``.
        ChangeDatasetError: LEVIR-CD files of A, B and label do not match one to one
            (torchgeo pairs them by sorted position, so a missing label would shift them).
    """
    from torchgeo.datasets import LEVIRCD, OSCD, DatasetNotFoundError

    splits = {"levircd": ("train", "val", "test"), "oscd": ("train", "test")}
    if name not in splits:
        raise ConfigError(f"unknown torchgeo change dataset {name!r}; choose one of: levircd, oscd")
    if split not in splits[name]:
        raise ConfigError(f"split {split!r} is not one of {name}'s: {', '.join(splits[name])}")
    try:
        if name == "levircd":
            dataset: Any = LEVIRCD(root=str(root), split=split, download=False)
        else:
            dataset = OSCD(root=str(root), split=split, bands=OSCD.rgb_bands, download=False)
    except DatasetNotFoundError as err:
        raise ChangeDatasetNotFoundError(
            f"torchgeo {name} found no data under {root} (downloads are off); "
            f"put the extracted dataset there"
        ) from err
    except IndexError as err:  # OSCD indexes 13 band files per date
        raise ChangeDatasetError(
            f"torchgeo oscd under {root} lacks some of the 13 Sentinel-2 band files per date; "
            "use the official extracted folders (imgs_1_rect, imgs_2_rect)"
        ) from err
    if name == "levircd":
        names = []
        for files in dataset.files:
            stems = {Path(files[k]).name for k in ("image1", "image2", "mask")}
            if len(stems) != 1:
                raise ChangeDatasetError(
                    f"torchgeo levircd paired {sorted(stems)} under {root}: A/, B/ and label/ "
                    f"must hold the same {split}_*.png files (a label is missing?)"
                )
            names.append(stems.pop())
        counts = [len(glob.glob(os.path.join(str(root), d, f"{split}*.png"))) for d in "AB"]
        counts.append(len(glob.glob(os.path.join(str(root), "label", f"{split}*.png"))))
        if len(set(counts)) != 1:
            raise ChangeDatasetError(
                f"torchgeo levircd under {root} has {counts[0]}/{counts[1]}/{counts[2]} "
                f"{split}_*.png files in A/B/label; every pair needs all three"
            )
    else:
        names = [files["region"] for files in dataset.files]
    # Chip grids come from the label headers: no image is read before it is needed.
    sizes = [image_size(Path(files["mask"])) for files in dataset.files]
    return TorchgeoChangeDataset(
        dataset,
        names,
        sizes,
        rgb=name == "levircd",
        chip_size=chip_size,
        overlap=overlap,
        transforms=transforms,
    )


# ---------------------------------------------------------------------------- splits
def make_split(
    names: Iterable[str],
    val_fraction: float,
    seed: int,
    *,
    group: Callable[[str], str] | None = None,
) -> tuple[list[str], list[str]]:
    """Hold out pairs for validation, reproducibly.

    The result depends only on the set of names, ``val_fraction`` and ``seed`` (not on the
    listing order). With ``val_fraction > 0`` and at least two groups, validation gets at
    least one group and training keeps at least one.

    Args:
        names: Pair names (e.g. ``dataset.pair_names``), unique.
        val_fraction: Share of groups held out, ``0 <= val_fraction < 1``.
        seed: Seed of the shuffle.
        group: Maps a name to its group; a group is never split (e.g. LEVIR-CD crops
            ``test_2_0000_0512.png`` of one scene: ``lambda n: "_".join(n.split("_")[:2])``).

    Returns:
        ``(train, val)`` names, each in input order.

    Raises:
        ConfigError: ``val_fraction`` out of range or duplicate names.
    """
    names = list(names)
    if isinstance(val_fraction, bool) or not 0 <= val_fraction < 1:
        raise ConfigError(f"val_fraction={val_fraction!r} is invalid; use 0 <= val_fraction < 1")
    duplicates = sorted(n for n, count in Counter(names).items() if count > 1)
    if duplicates:
        raise ConfigError(
            f"names {format_list(duplicates)} appear more than once; pass unique names"
        )
    key = group if group is not None else (lambda n: n)
    groups = sorted({key(n) for n in names})
    n_val = round(len(groups) * val_fraction)
    if val_fraction > 0 and len(groups) >= 2:
        n_val = min(max(n_val, 1), len(groups) - 1)
    random.Random(seed).shuffle(groups)
    held_out = set(groups[:n_val])
    train = [n for n in names if key(n) not in held_out]
    val = [n for n in names if key(n) in held_out]
    return train, val


# ---------------------------------------------------------------------------- helpers
def _list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _find_file(folder: Path, name: str) -> Path | None:
    """``folder/name``, else a file of the same stem with another image suffix."""
    exact = folder / name
    if exact.is_file():
        return exact
    if not folder.is_dir():
        return None
    stem = Path(name).stem
    matches = [p for p in _list_images(folder) if p.stem == stem]
    return matches[0] if matches else None


def _resolve_name(name: str, available: dict[str, Path], folder: Path) -> Path:
    """A listed name (with or without extension) -> its file in ``folder``."""
    if name in available:
        return available[name]
    by_stem = [p for p in available.values() if p.stem == name]
    if len(by_stem) == 1:
        return by_stem[0]
    raise ChangeDatasetNotFoundError(
        f"{name!r} is not an image in {folder}; available: {format_list(sorted(available))}"
    )


def _checked_pair(name: str, path_a: Path, path_b: Path, label: Path | None) -> PairFiles:
    """A :class:`PairFiles` after checking that the images (and label) share one size."""
    size_a, size_b = image_size(path_a), image_size(path_b)
    if size_a != size_b:
        raise ChangeDatasetError(
            f"{path_a} is {format_size(size_a)} but {path_b} is {format_size(size_b)} "
            "(width x height); both dates of a pair must have the same size: crop or resample "
            "one of them"
        )
    if label is not None:
        size_label = image_size(label)
        if size_label != size_a:
            raise ChangeDatasetError(
                f"label {label} is {format_size(size_label)} but image {path_a} is "
                f"{format_size(size_a)} (width x height); the label must cover the image pixel "
                "for pixel"
            )
    return PairFiles(name, path_a, path_b, label, width=size_a[0], height=size_a[1])


def _read_label(path: Path) -> np.ndarray:
    """(H, W) label values; an RGB label whose channels agree is read as one band."""
    if path.suffix.lower() in TIFF_SUFFIXES:
        with open_tiff(path) as src:
            data = src.read()
    else:
        try:
            with Image.open(path) as image:
                array = np.asarray(image.convert("L") if image.mode == "1" else image)
        except PIL_ERRORS as err:
            raise ChangeDatasetError(f"label {path} is not a readable image ({err})") from err
        data = band_first(array)
    if data.shape[0] == 1:
        return data[0]
    colour = data[:3]
    if not (colour == colour[:1]).all():
        raise ChangeDatasetError(
            f"label {path} has {data.shape[0]} bands with different values; expected a "
            "single-band (grayscale) mask of 0/1 or 0/255"
        )
    return data[0]


def _binary_label(values: np.ndarray, path: Path, threshold: int | None) -> np.ndarray:
    """(H, W) label -> int64 0/1 (0/255 or 0/1 input; ``> threshold`` when one is given)."""
    if threshold is not None:
        return (values > threshold).astype(np.int64)
    found = np.unique(values)
    if set(found.tolist()) <= {0, 1}:
        return values.astype(np.int64)
    if set(found.tolist()) <= {0, 255}:
        return (values == 255).astype(np.int64)
    raise ChangeDatasetError(
        f"label {path.name} has values {format_list(found.tolist())}; expected 0/1 or 0/255 "
        f"(fix the file {path})"
    )


def _scale_pair(
    raw_a: np.ndarray, raw_b: np.ndarray, percentiles: tuple[float, float], *, force: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Both dates -> (3, H, W) float32 in 0..255; non-uint8 pairs get one joint stretch."""
    if not force and is_integer_8bit(raw_a.dtype.name) and is_integer_8bit(raw_b.dtype.name):
        return (
            JointStretch.identity(raw_a.shape[0]).apply(raw_a.astype(np.float32)),
            JointStretch.identity(raw_b.shape[0]).apply(raw_b.astype(np.float32)),
        )
    if raw_a.shape[0] != raw_b.shape[0]:
        raise ChangeDatasetError(
            f"the dates have {raw_a.shape[0]} and {raw_b.shape[0]} bands; pass bands= to read "
            "the same bands from both"
        )
    low, high = [], []
    for band in range(raw_a.shape[0]):
        values = np.concatenate([raw_a[band].ravel(), raw_b[band].ravel()]).astype(np.float64)
        values = values[np.isfinite(values)]
        lo, hi = np.percentile(values, percentiles) if values.size else (0.0, 1.0)
        if hi <= lo:  # constant band: mid-grey rather than a division by zero
            lo, hi = lo - 1.0, lo + 1.0
        low.append(float(lo))
        high.append(float(hi))
    stretch = JointStretch(low=tuple(low), high=tuple(high))
    a = stretch.apply(raw_a.astype(np.float32, copy=False))
    b = stretch.apply(raw_b.astype(np.float32, copy=False))
    return a, b
