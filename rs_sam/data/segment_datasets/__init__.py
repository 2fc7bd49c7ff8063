"""Labelled single-date datasets for training semantic segmentation, one module per layout.

Every dataset here returns a :class:`SegmentSample` dict::

    {"image": (3, S, S) float32 RGB in 0..255, "mask": (S, S) int64 training ids with
     ignore_index, "name": str, optional "objects": (S, S) int64 SAM object ids (0 = none),
     optional "boundary": (S, S) float32 0/1}

Label files hold raw ids or colours; a :class:`~rs_sam.data.class_table.ClassTable` turns them
into training ids (and rejects values it does not know, listing them).

* :class:`SegmentFolderDataset` (``folders``): image and label files paired by name, from two
  folders (``SegmentFolderDataset(images, labels, table)``), or from a root holding one or
  more ``images``/``masks`` folder pairs (:meth:`SegmentFolderDataset.from_root`: the Dubai
  layout ``Tile N/images`` + ``Tile N/masks``, or mmsegmentation's ``img_dir`` + ``ann_dir``;
  the pairing is in ``pairing``).
* :class:`SegmentRasterDataset` (``raster``): a georeferenced raster and a label raster on its
  grid, read chip by chip (never the whole raster; ``raster_chips``).

SAM object and boundary maps are found and decoded by ``sample_maps``; the sample type, file
records and errors live in ``samples``.

Images are cut into chips by :func:`~rs_sam.data.grid.chip_windows` (top-left anchored;
edge chips are padded with image 0, mask ``ignore_index``, objects 0 and boundary 0), or
returned whole when ``chip_size`` is None (folder datasets only).

Pixel scaling follows :mod:`rs_sam.data.normalize`: uint8 as it is; any other type gets a
2-98 percentile stretch per band (per image for folders, once per raster, from a decimated
read, for :class:`SegmentRasterDataset`). ``normalisation`` describes it (feature-cache key).
"""

from __future__ import annotations

from rs_sam.data.normalize import stretch_image
from rs_sam.data.segment_datasets.folders import SegmentFolderDataset
from rs_sam.data.segment_datasets.pairing import find_pairs
from rs_sam.data.segment_datasets.raster import SegmentRasterDataset
from rs_sam.data.segment_datasets.raster_chips import fit_stretch, read_stretched_chip
from rs_sam.data.segment_datasets.sample_maps import MAP_SUFFIXES
from rs_sam.data.segment_datasets.samples import (
    ImagePair,
    SegmentDatasetError,
    SegmentDatasetNotFoundError,
    SegmentFiles,
    SegmentSample,
    SegmentTransform,
)

__all__ = [
    "MAP_SUFFIXES",
    "ImagePair",
    "SegmentDatasetError",
    "SegmentDatasetNotFoundError",
    "SegmentFiles",
    "SegmentFolderDataset",
    "SegmentRasterDataset",
    "SegmentSample",
    "SegmentTransform",
    "find_pairs",
    "fit_stretch",
    "read_stretched_chip",
    "stretch_image",
]
