"""Labelled bitemporal datasets for training change detection (SAM-CD), one module per layout.

Every dataset here returns the same sample, a :class:`ChangeSample` dict::

    {"image_a": (3, H, W) float32 RGB in 0..255, "image_b": (3, H, W) float32,
     "mask": (H, W) int64 in {0, 1} with 255 = ignore, "name": str}

so a training loop never knows which layout the pairs came from:

* :class:`ChangeFolderDataset` (``levir_folders``): the LEVIR-CD layout ``root/A``,
  ``root/B``, ``root/label`` (same file names) with optional split lists
  ``root/list/<split>.txt``.
* :class:`AirChangeDataset` (``airchange``): SZTAKI AirChange, one folder per pair holding
  ``im1``, ``im2`` and ``gt`` (``.bmp``, any case), found recursively (``Szada/1``...).
* :class:`GeoChangeDataset` (``georeferenced``): two georeferenced dates and a label raster
  on a's grid, cut into chips by :func:`~rs_sam.data.grid.chip_windows`.
* :func:`torchgeo_change_dataset` (``torchgeo_sources``): torchgeo's ``LEVIRCD``/``OSCD``
  (data already on disk).

The folder layouts share ``pair_files`` (reading, label decoding, the pair stretch) over
:mod:`rs_sam.data.discovery`; the sample type and errors live in ``samples``.

Pixel scaling follows :mod:`rs_sam.data.normalize`: uint8 is used as it is; any other type
gets one 2-98 percentile stretch per band computed on BOTH dates together (per pair for the
folder datasets, once per scene for :class:`GeoChangeDataset`). Each dataset describes its
scaling in ``normalisation``, which belongs in a feature-cache key.
"""

from __future__ import annotations

from rs_sam.data.change_datasets.airchange import AirChangeDataset
from rs_sam.data.change_datasets.georeferenced import GeoChangeDataset
from rs_sam.data.change_datasets.levir_folders import ChangeFolderDataset
from rs_sam.data.change_datasets.pair_files import PairFileDataset, PairFiles
from rs_sam.data.change_datasets.samples import (
    ChangeDatasetError,
    ChangeDatasetNotFoundError,
    ChangeSample,
    SampleTransform,
)
from rs_sam.data.change_datasets.torchgeo_sources import (
    TorchgeoChangeDataset,
    torchgeo_change_dataset,
)
from rs_sam.data.splits import make_split

__all__ = [
    "AirChangeDataset",
    "ChangeDatasetError",
    "ChangeDatasetNotFoundError",
    "ChangeFolderDataset",
    "ChangeSample",
    "GeoChangeDataset",
    "PairFileDataset",
    "PairFiles",
    "SampleTransform",
    "TorchgeoChangeDataset",
    "make_split",
    "torchgeo_change_dataset",
]
