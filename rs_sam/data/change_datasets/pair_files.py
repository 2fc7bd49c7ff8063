"""Change samples from plain image files: the base of the folder layouts.

* :class:`PairFiles`: the checked files of one pair (:func:`checked_pair` builds it).
* :class:`PairFileDataset`: whole pairs or chips of them, read and scaled per pair.
* :func:`read_binary_label`: a 0/1 or 0/255 change label file as int64 0/1.
* :func:`scale_pair`: both dates to RGB 0..255 with one joint stretch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from rs_sam.data.change_datasets.samples import ChangeDatasetError, ChangeSample, SampleTransform
from rs_sam.data.discovery import require_same_size
from rs_sam.data.image_files import (
    PIL_ERRORS,
    TIFF_SUFFIXES,
    band_first,
    chip_index,
    chip_name,
    crop_chip,
    format_list,
    format_size,
    image_size,
    open_tiff,
    pick_bands,
    read_image,
)
from rs_sam.data.labels import IGNORE, is_binary
from rs_sam.data.normalize import PERCENTILES, JointStretch, percentile_stretch
from rs_sam.data.rasters import is_integer_8bit


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


class PairFileDataset(Dataset[ChangeSample]):
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
        image_a, image_b = scale_pair(raw_a, raw_b, self.percentiles)
        if pair.label is None:
            mask = np.full((pair.height, pair.width), IGNORE, dtype=np.int64)
        else:
            mask = read_binary_label(pair.label, self.label_threshold)
        name = pair.name
        if window is not None:
            image_a, image_b = crop_chip(image_a, window, 0), crop_chip(image_b, window, 0)
            mask = crop_chip(mask, window, IGNORE)
            name = chip_name(pair.name, window)
        sample: ChangeSample = {
            "image_a": torch.from_numpy(np.ascontiguousarray(image_a)),
            "image_b": torch.from_numpy(np.ascontiguousarray(image_b)),
            "mask": torch.from_numpy(np.ascontiguousarray(mask)),
            "name": name,
        }
        return self.transforms(sample) if self.transforms is not None else sample


def checked_pair(name: str, path_a: Path, path_b: Path, label: Path | None) -> PairFiles:
    """A :class:`PairFiles` after checking that the images (and label) share one size."""
    size_a, size_b = image_size(path_a), image_size(path_b)
    if size_a != size_b:
        raise ChangeDatasetError(
            f"{path_a} is {format_size(size_a)} but {path_b} is {format_size(size_b)} "
            "(width x height); both dates of a pair must have the same size: crop or resample "
            "one of them"
        )
    if label is not None:
        require_same_size("label", label, path_a, size_a, ChangeDatasetError)
    return PairFiles(name, path_a, path_b, label, width=size_a[0], height=size_a[1])


def read_binary_label(path: Path, threshold: int | None = None) -> np.ndarray:
    """(H, W) int64 0/1 change mask of a label file.

    Args:
        path: One band (or RGB with equal channels) of 0/1 or 0/255.
        threshold: When given, ``label > threshold`` is change and any values are accepted.

    Raises:
        ChangeDatasetError: Unreadable file, colour bands that differ, other values.
    """
    values = _read_label_values(path)
    if threshold is not None:
        return (values > threshold).astype(np.int64)
    found = np.unique(values)
    if is_binary(found.tolist()):
        return (values > 0).astype(np.int64)
    raise ChangeDatasetError(
        f"label {path.name} has values {format_list(found.tolist())}; expected 0/1 or 0/255 "
        f"(fix the file {path})"
    )


def _read_label_values(path: Path) -> np.ndarray:
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


def scale_pair(
    raw_a: np.ndarray,
    raw_b: np.ndarray,
    percentiles: tuple[float, float] = PERCENTILES,
    *,
    force: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Both dates -> (3, H, W) float32 in 0..255; non-uint8 pairs get one joint stretch.

    The stretch is fitted on the finite values of both dates together, band by band.

    Raises:
        ChangeDatasetError: The dates have different band counts (non-uint8 or ``force``).
    """
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
    samples = (np.concatenate([a.ravel(), b.ravel()]) for a, b in zip(raw_a, raw_b, strict=True))
    stretch = percentile_stretch((_finite(values) for values in samples), percentiles)
    a = stretch.apply(raw_a.astype(np.float32, copy=False))
    b = stretch.apply(raw_b.astype(np.float32, copy=False))
    return a, b


def _finite(values: np.ndarray) -> np.ndarray:
    values = values.astype(np.float64)
    return values[np.isfinite(values)]
