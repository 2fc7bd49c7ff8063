"""The LEVIR-CD folder layout: ``root/A``, ``root/B``, ``root/label`` and split lists."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rs_sam.data.change_datasets.pair_files import PairFileDataset, PairFiles, checked_pair
from rs_sam.data.change_datasets.samples import (
    ChangeDatasetError,
    ChangeDatasetNotFoundError,
    SampleTransform,
)
from rs_sam.data.discovery import find_file, list_images
from rs_sam.data.image_files import IMAGE_SUFFIXES, format_list
from rs_sam.data.normalize import PERCENTILES
from rs_sam.errors import ConfigError


class ChangeFolderDataset(PairFileDataset):
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
        percentiles: tuple[float, float] = PERCENTILES,
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
        available = {p.name: p for p in list_images(folder_a)}
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
        path_b = find_file(self.root / self.image_dirs[1], name)
        if path_b is None:
            raise ChangeDatasetNotFoundError(
                f"{path_a} has no second date {self.root / self.image_dirs[1] / name}; "
                "add it or leave the pair out of the split"
            )
        label = find_file(self.root / self.label_dir, name)
        if label is None and require_labels:
            raise ChangeDatasetNotFoundError(
                f"{name} has no label {self.root / self.label_dir / name}; add it, leave the "
                "pair out of the split, or pass require_labels=False (inference)"
            )
        return checked_pair(name, path_a, path_b, label)


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
