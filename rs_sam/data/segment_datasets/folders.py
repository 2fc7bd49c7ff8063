"""Labelled single-date datasets for training semantic segmentation.

Every dataset here returns a :class:`SegmentSample` dict::

    {"image": (3, S, S) float32 RGB in 0..255, "mask": (S, S) int64 training ids with
     ignore_index, "name": str, optional "objects": (S, S) int64 SAM object ids (0 = none),
     optional "boundary": (S, S) float32 0/1}

Label files hold raw ids or colours; a :class:`~rs_sam.data.class_table.ClassTable` turns them
into training ids (and rejects values it does not know, listing them).

* :class:`SegmentFolderDataset`: image and label files paired by name, from two folders
  (``SegmentFolderDataset(images, labels, table)``), or from a root holding one or more
  ``images``/``masks`` folder pairs (:meth:`SegmentFolderDataset.from_root`: the Dubai layout
  ``Tile N/images`` + ``Tile N/masks``, or mmsegmentation's ``img_dir`` + ``ann_dir``).
* :class:`SegmentRasterDataset`: a georeferenced raster and a label raster on its grid, read
  chip by chip (never the whole raster).

Images are cut into chips by :func:`~rs_sam.data.grid.chip_windows` (top-left anchored;
edge chips are padded with image 0, mask ``ignore_index``, objects 0 and boundary 0), or
returned whole when ``chip_size`` is None (folder datasets only).

Pixel scaling follows :mod:`rs_sam.data.normalize`: uint8 as it is; any other type gets a
2-98 percentile stretch per band (per image for folders, once per raster, from a decimated
read, for :class:`SegmentRasterDataset`). ``normalisation`` describes it (feature-cache key).
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, TypedDict

import numpy as np
import rasterio
import torch
from PIL import Image
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.windows import Window
from torch import Tensor
from torch.utils.data import Dataset

from rs_sam.data.bands import select_bands
from rs_sam.data.class_table import ClassTable
from rs_sam.data.grid import ChipWindow, RasterGrid, chip_windows
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
from rs_sam.data.rasters import DateInput, RasterInfo, is_integer_8bit, open_date
from rs_sam.errors import ConfigError, RasterNotFoundError

#: Suffixes tried for SAM object and boundary maps, in this order.
MAP_SUFFIXES = (".tif", ".tiff", ".png")


class SegmentDatasetError(ImageFileError):
    """A segmentation dataset or sample is malformed (sizes, grids, maps, selections)."""


class SegmentDatasetNotFoundError(RasterNotFoundError):
    """A dataset folder, image, label or map file does not exist."""


class SegmentSample(TypedDict, total=False):
    """One training sample (see the module docstring for shapes and value ranges)."""

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


# ---------------------------------------------------------------------------- pairing
def find_pairs(
    root: str | Path, *, image_dir: str = "images", label_dir: str = "masks"
) -> list[ImagePair]:
    """Every image in a folder named ``image_dir`` below ``root``, with its label.

    The label of ``<a>/<image_dir>/<b>/<stem>.<ext>`` is ``<a>/<label_dir>/<b>/<stem>.*``
    (any image suffix, ``.png`` first): Dubai's ``Tile 1/images/x.jpg`` ->
    ``Tile 1/masks/x.png``; mmsegmentation's ``img_dir/train/x.png`` -> ``ann_dir/train/x.png``.
    ``root`` itself may be the images folder. ``image_dir`` and ``label_dir`` are single
    folder names.

    Returns:
        Pairs in name order; ``label`` is None where no label file exists.

    Raises:
        ConfigError: ``image_dir`` or ``label_dir`` is not a single folder name.
        SegmentDatasetNotFoundError: ``root`` is not a folder or holds no ``image_dir`` folder.
    """
    root = Path(root)
    for value in (image_dir, label_dir):
        if not value or "/" in value or "\\" in value:
            raise ConfigError(
                f"image_dir/label_dir {value!r} must be one folder name (e.g. 'images'); to use "
                "a sub-folder such as img_dir/train, pass both folders to SegmentFolderDataset"
            )
    if not root.is_dir():
        raise SegmentDatasetNotFoundError(f"folder {root} does not exist; check the path")
    folders = [root] if root.name == image_dir else []
    folders += sorted(p for p in root.rglob(image_dir) if p.is_dir())
    if not folders:
        raise SegmentDatasetNotFoundError(
            f"no folder named {image_dir!r} below {root}; pass image_dir=/label_dir= for "
            "this layout (e.g. image_dir='img_dir', label_dir='ann_dir' for mmsegmentation)"
        )
    pairs: list[ImagePair] = []
    for folder in folders:
        prefix = folder.parent.relative_to(root) if folder != root else Path()
        labels = folder.parent / label_dir
        pairs += _pair_folders(folder, labels, recursive=True, prefix=prefix)
    return sorted(pairs, key=lambda p: p.name)


def _pair_folders(
    images: Path, labels: Path, *, recursive: bool, prefix: Path = Path()
) -> list[ImagePair]:
    """Images of ``images`` (and below when recursive) with the label of the same stem."""
    found = images.rglob("*") if recursive else images.iterdir()
    files = sorted(p for p in found if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    listings: dict[Path, dict[str, Path]] = {}
    pairs = []
    for path in files:
        relative = path.relative_to(images)
        folder = labels / relative.parent
        if folder not in listings:
            listings[folder] = _by_stem(folder, IMAGE_SUFFIXES)
        name = (prefix / relative.parent / path.stem).as_posix()
        pairs.append(ImagePair(name, path, listings[folder].get(path.stem)))
    return pairs


def _by_stem(folder: Path, suffixes: Sequence[str]) -> dict[str, Path]:
    """Stem -> file in ``folder`` (the first suffix of ``suffixes`` wins)."""
    if not folder.is_dir():
        return {}
    rank = {s: i for i, s in enumerate(suffixes)}
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in rank]
    out: dict[str, Path] = {}
    for path in sorted(files, key=lambda p: (rank[p.suffix.lower()], p.name)):
        out.setdefault(path.stem, path)
    return out


# ---------------------------------------------------------------------------- folders
class SegmentFolderDataset(Dataset[SegmentSample]):
    """Image files and their label files, whole or cut into chips.

    Images (``.png``, ``.jpg``, ``.tif``, ``.bmp``; RGB(A), grayscale replicated to RGB, or
    multi-band TIFF with georeferencing ignored) are paired with labels of the same stem
    (suffixes may differ: ``x.jpg`` and ``x.png``). Labels hold raw ids (one band; palette
    PNGs give their indices when the table has no colours) or colours (RGB; palette PNGs are
    expanded to RGB when the table has colours); TIFF label nodata is ignored. Files and
    sizes are checked when the dataset is built, label values when a sample is read.

    Three ways in:

    * ``SegmentFolderDataset(images, labels, table)``: two folders, matched by path below
      each (``recursive=True`` also pairs subfolders: ``images/a/x.jpg`` -> ``labels/a/x.png``).
    * :meth:`from_root`: every ``images`` folder below a root with its sibling ``masks``
      folder (see :func:`find_pairs`); Dubai, mmsegmentation and similar layouts.
    * :meth:`from_pairs`: an explicit list of :class:`ImagePair`.

    SAM object and boundary maps (single band; object ids, boundaries 0/1 or 0/255) are
    looked up as ``<objects>/<name>.tif|.tiff|.png``, else ``<objects>/<stem>.*`` (flat
    folder), and must have the image's size.

    Args:
        images: Folder of images.
        labels: Folder of labels.
        class_table: Maps label ids or colours to training ids.
        chip_size: Cut every image into square chips of this side (needed to batch images of
            different sizes), or None for whole images.
        overlap: Pixels shared by neighbouring chips.
        names: Keep only these samples (names as in :class:`ImagePair`, suffix optional).
        objects: Folder of SAM object-id maps, or None.
        boundaries: Folder of SAM boundary maps, or None.
        bands: 1-based bands of multi-band images (default: 1 band replicated, else 1, 2, 3).
        transforms: Applied to every sample last.
        recursive: Also pair images in subfolders of ``images``.
        percentiles: Stretch of images that are not uint8.

    Raises:
        SegmentDatasetNotFoundError: Missing folders, no images, images without labels or
            maps (a few are listed), unknown ``names``.
        SegmentDatasetError: An image and its label or maps differ in size.
        ImageFileError: An image is unreadable, or lacks the bands asked for (the base class
            of SegmentDatasetError).
    """

    def __init__(
        self,
        images: str | Path,
        labels: str | Path,
        class_table: ClassTable,
        *,
        chip_size: int | None = None,
        overlap: int = 0,
        names: Sequence[str] | None = None,
        objects: str | Path | None = None,
        boundaries: str | Path | None = None,
        bands: Sequence[int] | None = None,
        transforms: SegmentTransform | None = None,
        recursive: bool = False,
        percentiles: tuple[float, float] = (2.0, 98.0),
    ) -> None:
        images, labels = Path(images), Path(labels)
        for what, folder in (("images", images), ("labels", labels)):
            if not folder.is_dir():
                raise SegmentDatasetNotFoundError(
                    f"{what} folder {folder} does not exist; check the path"
                )
        if images.resolve() == labels.resolve():
            raise ConfigError(
                f"images and labels are the same folder {images}; keep labels in their own folder"
            )
        pairs = _pair_folders(images, labels, recursive=recursive)
        if not pairs:
            hint = "" if recursive else " (pass recursive=True to search subfolders)"
            raise SegmentDatasetNotFoundError(
                f"folder {images} holds no images ({', '.join(IMAGE_SUFFIXES)}){hint}"
            )
        self._setup(
            pairs,
            class_table,
            chip_size=chip_size,
            overlap=overlap,
            names=names,
            objects=objects,
            boundaries=boundaries,
            bands=bands,
            transforms=transforms,
            percentiles=percentiles,
        )

    @classmethod
    def from_root(
        cls,
        root: str | Path,
        class_table: ClassTable,
        *,
        image_dir: str = "images",
        label_dir: str = "masks",
        **options: Any,
    ) -> SegmentFolderDataset:
        """Every ``image_dir`` folder below ``root`` with its sibling ``label_dir`` folder.

        E.g. Dubai: ``from_root(dubai, table)``; mmsegmentation: ``from_root(root, table,
        image_dir="img_dir", label_dir="ann_dir")`` (all splits; select with ``names``, or
        pass ``img_dir/train`` and ``ann_dir/train`` to the constructor). ``options`` are the
        constructor's keyword arguments except ``recursive``.
        """
        return cls.from_pairs(
            find_pairs(root, image_dir=image_dir, label_dir=label_dir), class_table, **options
        )

    @classmethod
    def from_pairs(
        cls,
        pairs: Sequence[ImagePair | tuple[str, str | Path, str | Path | None]],
        class_table: ClassTable,
        *,
        chip_size: int | None = None,
        overlap: int = 0,
        names: Sequence[str] | None = None,
        objects: str | Path | None = None,
        boundaries: str | Path | None = None,
        bands: Sequence[int] | None = None,
        transforms: SegmentTransform | None = None,
        percentiles: tuple[float, float] = (2.0, 98.0),
    ) -> SegmentFolderDataset:
        """A dataset over explicit ``(name, image, label)`` pairs (e.g. from :func:`find_pairs`)."""
        checked = [
            ImagePair(str(n), Path(i), None if lb is None else Path(lb)) for n, i, lb in pairs
        ]
        if not checked:
            raise SegmentDatasetNotFoundError("no image pairs given; pass at least one")
        dataset = cls.__new__(cls)
        dataset._setup(
            checked,
            class_table,
            chip_size=chip_size,
            overlap=overlap,
            names=names,
            objects=objects,
            boundaries=boundaries,
            bands=bands,
            transforms=transforms,
            percentiles=percentiles,
        )
        return dataset

    def _setup(
        self,
        pairs: Sequence[ImagePair],
        class_table: ClassTable,
        *,
        chip_size: int | None,
        overlap: int,
        names: Sequence[str] | None,
        objects: str | Path | None,
        boundaries: str | Path | None,
        bands: Sequence[int] | None,
        transforms: SegmentTransform | None,
        percentiles: tuple[float, float],
    ) -> None:
        if not isinstance(class_table, ClassTable):
            raise ConfigError(
                f"class_table must be a ClassTable (e.g. ClassTable.from_config(...)), "
                f"not {type(class_table).__name__}"
            )
        self.class_table = class_table
        self.chip_size = chip_size
        self.bands = None if bands is None else tuple(bands)
        self.transforms = transforms
        self.percentiles = percentiles
        self.normalisation = (
            f"uint8 as is; other types {percentiles[0]:g}-{percentiles[1]:g} percentile "
            "stretch per band and image"
        )
        duplicates = sorted(n for n, count in Counter(p.name for p in pairs).items() if count > 1)
        if duplicates:
            raise SegmentDatasetError(
                f"several images are named {format_list(duplicates)} (same stem, other suffix); "
                "keep one image per name"
            )
        selected = _select(pairs, names) if names is not None else list(pairs)
        missing = [p for p in selected if p.label is None]
        if missing:
            raise SegmentDatasetNotFoundError(
                f"{len(missing)} image(s) have no label: "
                f"{format_list([str(p.image) for p in missing])}; "
                "add labels with the same stem or leave the images out with names="
            )
        object_dir = None if objects is None else _existing_folder(objects, "objects")
        boundary_dir = None if boundaries is None else _existing_folder(boundaries, "boundaries")
        self.files = [_checked_files(p, object_dir, boundary_dir) for p in selected]
        self._index = chip_index(((f.width, f.height) for f in self.files), chip_size, overlap)
        self._last: tuple[int, dict[str, np.ndarray]] | None = None

    @property
    def image_names(self) -> list[str]:
        """Names of the images (not of the chips), e.g. for ``make_split``."""
        return [files.name for files in self.files]

    def __len__(self) -> int:
        return len(self._index)

    def __getitem__(self, index: int) -> SegmentSample:
        """One image, or one chip of an image when ``chip_size`` is set."""
        file_index, window = self._index[index]
        files = self.files[file_index]
        arrays = self._load(file_index)
        name = files.name
        if window is not None:
            fills = {"image": 0, "mask": self.class_table.ignore_index, "objects": 0, "boundary": 0}
            arrays = {k: crop_chip(v, window, fills[k]) for k, v in arrays.items()}
            name = f"{files.name}:r{window.row_off}_c{window.col_off}"
        sample: SegmentSample = {"name": name}
        for key, array in arrays.items():
            sample[key] = torch.from_numpy(np.ascontiguousarray(array))  # type: ignore[literal-required]
        return self.transforms(sample) if self.transforms is not None else sample

    def _load(self, file_index: int) -> dict[str, np.ndarray]:
        """Whole arrays of one image (the last one is kept: its chips come in a row)."""
        if self._last is not None and self._last[0] == file_index:
            return self._last[1]
        files = self.files[file_index]
        raw = pick_bands(read_image(files.image), self.bands, files.image)
        label, ignore = _read_label(files.label, self.class_table)
        arrays = {
            "image": stretch_image(raw, self.percentiles),
            "mask": self.class_table.encode(label, files.label, ignore=ignore),
        }
        if files.objects is not None:
            arrays["objects"] = _objects(_single_band(read_image(files.objects), files.objects))
        if files.boundary is not None:
            values = _single_band(read_image(files.boundary), files.boundary)
            arrays["boundary"] = _boundary(values, files.boundary)
        self._last = (file_index, arrays)
        return arrays


# ---------------------------------------------------------------------------- rasters
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
        percentiles: tuple[float, float] = (2.0, 98.0),
        check_labels: bool = True,
    ) -> None:
        if not isinstance(class_table, ClassTable):
            raise ConfigError(f"class_table must be a ClassTable, not {type(class_table).__name__}")
        self.info = open_date(image)
        self.class_table = class_table
        self.bands = select_bands([self.info], bands)
        self.nodata = self.info.nodata if nodata is None else nodata
        self.transforms = transforms
        self.grid = RasterGrid(
            crs=self.info.crs,
            transform=self.info.transform,
            width=self.info.width,
            height=self.info.height,
        )
        self.label_path = Path(label)
        label_count, self._label_nodata = _check_on_grid(self.label_path, "label", self.info)
        if label_count not in (1, 3, 4):
            raise SegmentDatasetError(
                f"label {self.label_path} has {label_count} bands; expected one band of ids or "
                "an RGB(A) colour label"
            )
        self.objects_path = None if objects is None else Path(objects)
        self.boundaries_path = None if boundaries is None else Path(boundaries)
        for what, path in (("objects", self.objects_path), ("boundaries", self.boundaries_path)):
            if path is not None:
                count, _ = _check_on_grid(path, what, self.info)
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
            "name": f"{self._stem}:r{window.row_off}_c{window.col_off}",
        }
        if self.objects_path is not None:
            objects = np.zeros((size, size), dtype=np.int64)
            objects[:rows, :cols] = _objects(_read_window(self.objects_path, clipped)[0])
            sample["objects"] = torch.from_numpy(objects)
        if self.boundaries_path is not None:
            boundary = np.zeros((size, size), dtype=np.float32)
            values = _read_window(self.boundaries_path, clipped)[0]
            boundary[:rows, :cols] = _boundary(values, self.boundaries_path)
            sample["boundary"] = torch.from_numpy(boundary)
        return self.transforms(sample) if self.transforms is not None else sample

    def _encode_label(self, window: Window) -> np.ndarray:
        values = _read_window(self.label_path, window)
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


# ---------------------------------------------------------------------------- helpers
def stretch_image(raw: np.ndarray, percentiles: tuple[float, float] = (2.0, 98.0)) -> np.ndarray:
    """(C, H, W) raw values -> (3, H, W) float32 0..255: uint8 as is, else a per-band stretch."""
    if is_integer_8bit(raw.dtype.name):
        return JointStretch.identity(raw.shape[0]).apply(raw.astype(np.float32))
    return _stretch_from(raw, np.isfinite(raw).all(axis=0), percentiles).apply(
        np.where(np.isfinite(raw), raw, 0).astype(np.float32, copy=False)
    )


def _stretch_from(
    raw: np.ndarray, valid: np.ndarray, percentiles: tuple[float, float]
) -> JointStretch:
    """Per-band ``percentiles`` of the valid pixels (a constant band becomes mid-grey)."""
    low, high = [], []
    for band in raw:
        values = band[valid].astype(np.float64)
        lo, hi = np.percentile(values, percentiles) if values.size else (0.0, 1.0)
        if hi <= lo:
            lo, hi = lo - 1.0, lo + 1.0
        low.append(float(lo))
        high.append(float(hi))
    return JointStretch(low=tuple(low), high=tuple(high))


def fit_stretch(
    info: RasterInfo,
    bands: Sequence[int],
    nodata: float | None,
    percentiles: tuple[float, float],
    max_side: int = 1024,
) -> JointStretch:
    """Identity for uint8; else percentiles of a decimated read (at most ``max_side``²)."""
    if is_integer_8bit(info.dtype):
        return JointStretch.identity(len(bands))
    factor = max(1, math.ceil(max(info.width, info.height) / max_side))
    shape = (len(bands), math.ceil(info.height / factor), math.ceil(info.width / factor))
    with rasterio.open(info.path) as src:
        raw = src.read(list(bands), out_shape=shape, resampling=Resampling.nearest)
    valid = np.isfinite(raw).all(axis=0)
    if nodata is not None:
        valid &= ~nodata_equal(raw, nodata).all(axis=0)
    if not valid.any():
        raise SegmentDatasetError(
            f"{info.label} contains only nodata (nodata={nodata}); check the raster or nodata="
        )
    return _stretch_from(raw, valid, percentiles)


def _check_on_grid(path: Path, what: str, info: RasterInfo) -> tuple[int, float | None]:
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


def _read_window(path: Path, window: Window) -> np.ndarray:
    """(C, h, w) values of ``window`` (all bands)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path) as src:
            return src.read(window=window)


def _read_label(path: Path, table: ClassTable) -> tuple[np.ndarray, np.ndarray | None]:
    """(C, H, W) raw label and the nodata pixels to ignore (TIFF nodata), if any.

    Palette PNGs are expanded to RGB(A) when the table has colours and read as indices
    otherwise.
    """
    if path.suffix.lower() in TIFF_SUFFIXES:
        with open_tiff(path) as src:
            data, nodata = src.read(), src.nodata
        ignore = None if nodata is None else np.asarray(nodata_equal(data, nodata).all(axis=0))
        return data, ignore
    try:
        with Image.open(path) as opened:
            image: Image.Image = opened
            if image.mode in ("P", "PA"):
                if table.colours is not None:
                    transparent = image.mode == "PA" or "transparency" in image.info
                    image = image.convert("RGBA" if transparent else "RGB")
            elif image.mode in ("1", "LA"):
                image = image.convert("L")
            elif image.mode not in ("L", "RGB", "RGBA", "I", "I;16", "I;16B", "I;16L", "F"):
                image = image.convert("RGB")
            array = np.asarray(image)
    except PIL_ERRORS as err:
        raise SegmentDatasetError(f"label {path} is not a readable image ({err})") from err
    return band_first(array), None


def _single_band(data: np.ndarray, path: Path) -> np.ndarray:
    if data.shape[0] != 1:
        raise SegmentDatasetError(
            f"map {path} has {data.shape[0]} bands; SAM object and boundary maps have one band"
        )
    return data[0]


def _objects(values: np.ndarray) -> np.ndarray:
    return values.astype(np.int64)


def _boundary(values: np.ndarray, path: Path) -> np.ndarray:
    """0/1 or 0/255 -> float32 0/1."""
    found = set(np.unique(values).tolist())
    if not (found <= {0, 1} or found <= {0, 255}):
        raise SegmentDatasetError(
            f"boundary map {path} has values {format_list(sorted(found))}; expected 0/1 or 0/255"
        )
    return (values > 0).astype(np.float32)


def _existing_folder(path: str | Path, what: str) -> Path:
    folder = Path(path)
    if not folder.is_dir():
        raise SegmentDatasetNotFoundError(
            f"{what} folder {folder} does not exist; run rs-sam sam-objects first or fix the path"
        )
    return folder


def _find_map(folder: Path, name: str) -> Path | None:
    """``folder/<name>.<suffix>``, else ``folder/<stem>.<suffix>`` (flat folder)."""
    for candidate in (name, Path(name).name):
        for suffix in MAP_SUFFIXES:
            path = folder / f"{candidate}{suffix}"
            if path.is_file():
                return path
    return None


def _checked_files(pair: ImagePair, objects: Path | None, boundaries: Path | None) -> SegmentFiles:
    """:class:`SegmentFiles` after checking that label and maps have the image's size."""
    assert pair.label is not None
    size = image_size(pair.image)
    maps: dict[str, Path | None] = {"label": pair.label, "objects": None, "boundary": None}
    for key, folder in (("objects", objects), ("boundary", boundaries)):
        if folder is not None:
            found = _find_map(folder, pair.name)
            if found is None:
                raise SegmentDatasetNotFoundError(
                    f"no {key} map for {pair.name} in {folder} (looked for "
                    f"{pair.name}{'|'.join(MAP_SUFFIXES)}); run rs-sam sam-objects for it"
                )
            maps[key] = found
    for key, path in maps.items():
        if path is not None:
            other = image_size(path)
            if other != size:
                raise SegmentDatasetError(
                    f"{key} {path} is {format_size(other)} but image {pair.image} is "
                    f"{format_size(size)} (width x height); the {key} must cover the image "
                    "pixel for pixel"
                )
    return SegmentFiles(
        name=pair.name,
        image=pair.image,
        label=pair.label,
        width=size[0],
        height=size[1],
        objects=maps["objects"],
        boundary=maps["boundary"],
    )


def _select(pairs: Sequence[ImagePair], names: Sequence[str]) -> list[ImagePair]:
    """The pairs named in ``names`` (in that order; an image suffix may be given)."""
    if not names:
        raise ConfigError("names= is empty; pass at least one image name")
    by_name = {p.name: p for p in pairs}
    selected, unknown = [], []
    for name in names:
        key = name
        if key not in by_name and Path(name).suffix.lower() in IMAGE_SUFFIXES:
            key = str(Path(name).with_suffix("").as_posix())
        if key in by_name:
            selected.append(by_name[key])
        else:
            unknown.append(name)
    if unknown:
        raise SegmentDatasetNotFoundError(
            f"names {format_list(unknown)} are not images of the dataset; available: "
            f"{format_list(sorted(by_name))}"
        )
    return selected


def read_stretched_chip(
    path: Path,
    bands: Sequence[int],
    nodata: float | None,
    stretch: JointStretch,
    window: ChipWindow,
    grid: RasterGrid,
) -> tuple[np.ndarray, np.ndarray, Window]:
    """One chip of a raster: ``(3, S, S)`` stretched image (0 where not valid), ``(S, S)``
    validity (inside the raster, finite, not nodata) and the window clipped to the raster."""
    size = window.size
    clipped = window.clipped(grid)
    rows, cols = int(clipped.height), int(clipped.width)
    raw = np.zeros((len(bands), size, size), dtype=np.float32)
    with rasterio.open(path) as src:
        raw[:, :rows, :cols] = src.read(list(bands), window=clipped)
    valid = np.zeros((size, size), dtype=bool)
    valid[:rows, :cols] = True
    valid &= np.isfinite(raw).all(axis=0)
    if nodata is not None:
        valid &= ~nodata_equal(raw, nodata).all(axis=0)
    image = stretch.apply(np.where(np.isfinite(raw), raw, 0.0))
    image[:, ~valid] = 0.0
    return image, valid, clipped
