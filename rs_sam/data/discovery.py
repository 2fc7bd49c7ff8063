"""Finding and checking the files of folder datasets (shared by every file layout).

* :func:`list_images`: the image files of a folder (or of its tree), in name order.
* :func:`find_file` / :func:`files_by_stem`: a file matched by name or stem, suffix free.
* :func:`require_same_size`: a label or map must cover its image pixel for pixel.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rs_sam.data.image_files import IMAGE_SUFFIXES, ImageFileError, format_size, image_size


def list_images(folder: Path, *, recursive: bool = False) -> list[Path]:
    """Image files (:data:`IMAGE_SUFFIXES`, any case) in ``folder`` (and below), sorted."""
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def find_file(folder: Path, name: str) -> Path | None:
    """``folder/name``, else the first image file of the same stem (another suffix)."""
    exact = folder / name
    if exact.is_file():
        return exact
    if not folder.is_dir():
        return None
    stem = Path(name).stem
    matches = [p for p in list_images(folder) if p.stem == stem]
    return matches[0] if matches else None


def files_by_stem(folder: Path, suffixes: Sequence[str]) -> dict[str, Path]:
    """Stem -> file in ``folder`` (the first suffix of ``suffixes`` wins); empty if missing."""
    if not folder.is_dir():
        return {}
    rank = {s: i for i, s in enumerate(suffixes)}
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in rank]
    out: dict[str, Path] = {}
    for path in sorted(files, key=lambda p: (rank[p.suffix.lower()], p.name)):
        out.setdefault(path.stem, path)
    return out


def require_same_size(
    what: str,
    path: Path,
    image: Path,
    size: tuple[int, int],
    error: type[ImageFileError],
) -> None:
    """Raise ``error`` unless ``path`` (a label or map) has ``image``'s ``size`` (w, h)."""
    other = image_size(path)
    if other != size:
        raise error(
            f"{what} {path} is {format_size(other)} but image {image} is "
            f"{format_size(size)} (width x height); the {what} must cover the image "
            "pixel for pixel"
        )
