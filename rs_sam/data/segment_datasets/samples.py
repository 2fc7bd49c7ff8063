"""What every segmentation dataset returns and is built from: samples, file records, errors."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, TypedDict

from torch import Tensor

from rs_sam.data.image_files import ImageFileError
from rs_sam.errors import RasterNotFoundError


class SegmentDatasetError(ImageFileError):
    """A segmentation dataset or sample is malformed (sizes, grids, maps, selections)."""


class SegmentDatasetNotFoundError(RasterNotFoundError):
    """A dataset folder, image, label or map file does not exist."""


class SegmentSample(TypedDict, total=False):
    """One training sample (see :mod:`rs_sam.data.segment_datasets` for shapes and ranges)."""

    image: Tensor  # (3, S, S) float32, RGB 0..255
    mask: Tensor  # (S, S) int64 training ids, ignore_index where unlabelled
    objects: Tensor  # (S, S) int64 SAM object ids, 0 = no object
    boundary: Tensor  # (S, S) float32 0/1
    name: str
    features: list[Tensor]  # cached encoder maps (C_i, h_i, w_i)


#: A callable applied to every sample last (e.g. ``segment_augment.SegmentAugment``).
SegmentTransform = Callable[[SegmentSample], SegmentSample]


class ImagePair(NamedTuple):
    """An image file, its label file (None when missing) and the sample name.

    ``name`` is the image's path below its images folder without the suffix, prefixed with
    the folders above the images folder for :func:`find_pairs` (``"Tile 1/image_part_001"``).
    """

    name: str
    image: Path
    label: Path | None


@dataclass(frozen=True)
class SegmentFiles:
    """The checked files of one sample and their common size (width, height)."""

    name: str
    image: Path
    label: Path
    width: int
    height: int
    objects: Path | None = None
    boundary: Path | None = None
