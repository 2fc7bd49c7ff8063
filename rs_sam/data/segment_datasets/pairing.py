"""Pairing images with their labels: folder pairs, image/label trees, name selections."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rs_sam.data.discovery import files_by_stem, list_images
from rs_sam.data.image_files import IMAGE_SUFFIXES, format_list
from rs_sam.data.segment_datasets.samples import ImagePair, SegmentDatasetNotFoundError
from rs_sam.errors import ConfigError


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
        pairs += pair_folders(folder, labels, recursive=True, prefix=prefix)
    return sorted(pairs, key=lambda p: p.name)


def pair_folders(
    images: Path, labels: Path, *, recursive: bool, prefix: Path = Path()
) -> list[ImagePair]:
    """Images of ``images`` (and below when recursive) with the label of the same stem."""
    listings: dict[Path, dict[str, Path]] = {}
    pairs = []
    for path in list_images(images, recursive=recursive):
        relative = path.relative_to(images)
        folder = labels / relative.parent
        if folder not in listings:
            listings[folder] = files_by_stem(folder, IMAGE_SUFFIXES)
        name = (prefix / relative.parent / path.stem).as_posix()
        pairs.append(ImagePair(name, path, listings[folder].get(path.stem)))
    return pairs


def select_pairs(pairs: Sequence[ImagePair], names: Sequence[str]) -> list[ImagePair]:
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
