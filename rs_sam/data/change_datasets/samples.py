"""What every change dataset returns: the sample dict, its transform type, the errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import NotRequired, TypedDict

from torch import Tensor

from rs_sam.data.image_files import ImageFileError
from rs_sam.errors import RasterNotFoundError


class ChangeDatasetError(ImageFileError):
    """A change-detection dataset or sample is malformed (label values, sizes, split lists)."""


class ChangeDatasetNotFoundError(RasterNotFoundError):
    """A dataset folder, split list or file of a pair does not exist."""


class ChangeSample(TypedDict):
    """One training sample (see :mod:`rs_sam.data.change_datasets` for shapes and ranges)."""

    image_a: Tensor  # (3, H, W) float32, RGB 0..255
    image_b: Tensor  # (3, H, W) float32, RGB 0..255
    mask: Tensor  # (H, W) int64, 0 = no change, 1 = change, 255 = ignore
    name: str
    features_a: NotRequired[list[Tensor]]  # cached encoder maps (C_i, h_i, w_i), see feature_cache
    features_b: NotRequired[list[Tensor]]


#: A callable applied to every sample last (e.g. :class:`rs_sam.data.augment.PairAugment`).
SampleTransform = Callable[[ChangeSample], ChangeSample]
