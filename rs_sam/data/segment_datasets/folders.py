"""Image files and their label files in folders: two folders, image/label trees, pair lists."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from rs_sam.data.class_table import ClassTable
from rs_sam.data.image_files import (
    IMAGE_SUFFIXES,
    PIL_ERRORS,
    TIFF_SUFFIXES,
    band_first,
    chip_index,
    chip_name,
    crop_chip,
    format_list,
    nodata_equal,
    open_tiff,
    pick_bands,
    read_image,
)
from rs_sam.data.normalize import PERCENTILES, stretch_image
from rs_sam.data.segment_datasets.pairing import find_pairs, pair_folders, select_pairs
from rs_sam.data.segment_datasets.sample_maps import (
    checked_files,
    decode_boundary,
    decode_objects,
    existing_folder,
    single_band,
)
from rs_sam.data.segment_datasets.samples import (
    ImagePair,
    SegmentDatasetError,
    SegmentDatasetNotFoundError,
    SegmentSample,
    SegmentTransform,
)
from rs_sam.errors import ConfigError


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
        percentiles: tuple[float, float] = PERCENTILES,
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
        pairs = pair_folders(images, labels, recursive=recursive)
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
        percentiles: tuple[float, float] = PERCENTILES,
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
        selected = select_pairs(pairs, names) if names is not None else list(pairs)
        missing = [p for p in selected if p.label is None]
        if missing:
            raise SegmentDatasetNotFoundError(
                f"{len(missing)} image(s) have no label: "
                f"{format_list([str(p.image) for p in missing])}; "
                "add labels with the same stem or leave the images out with names="
            )
        object_dir = None if objects is None else existing_folder(objects, "objects")
        boundary_dir = None if boundaries is None else existing_folder(boundaries, "boundaries")
        self.files = [checked_files(p, object_dir, boundary_dir) for p in selected]
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
            name = chip_name(files.name, window)
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
        label, ignore = read_label(files.label, self.class_table)
        arrays = {
            "image": stretch_image(raw, self.percentiles),
            "mask": self.class_table.encode(label, files.label, ignore=ignore),
        }
        if files.objects is not None:
            arrays["objects"] = decode_objects(
                single_band(read_image(files.objects), files.objects)
            )
        if files.boundary is not None:
            values = single_band(read_image(files.boundary), files.boundary)
            arrays["boundary"] = decode_boundary(values, files.boundary)
        self._last = (file_index, arrays)
        return arrays


def read_label(path: Path, table: ClassTable) -> tuple[np.ndarray, np.ndarray | None]:
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
