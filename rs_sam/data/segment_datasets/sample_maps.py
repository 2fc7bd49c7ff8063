"""SAM object and boundary maps next to a segmentation sample: lookup, checks, decoding."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rs_sam.data.discovery import require_same_size
from rs_sam.data.image_files import format_list, image_size
from rs_sam.data.labels import is_binary
from rs_sam.data.segment_datasets.samples import (
    ImagePair,
    SegmentDatasetError,
    SegmentDatasetNotFoundError,
    SegmentFiles,
)

#: Suffixes tried for SAM object and boundary maps, in this order.
MAP_SUFFIXES = (".tif", ".tiff", ".png")


def existing_folder(path: str | Path, what: str) -> Path:
    """``path`` as a folder of maps (``what``: objects or boundaries) that exists."""
    folder = Path(path)
    if not folder.is_dir():
        raise SegmentDatasetNotFoundError(
            f"{what} folder {folder} does not exist; run rs-sam sam-objects first or fix the path"
        )
    return folder


def find_map(folder: Path, name: str) -> Path | None:
    """``folder/<name>.<suffix>``, else ``folder/<stem>.<suffix>`` (flat folder)."""
    for candidate in (name, Path(name).name):
        for suffix in MAP_SUFFIXES:
            path = folder / f"{candidate}{suffix}"
            if path.is_file():
                return path
    return None


def checked_files(pair: ImagePair, objects: Path | None, boundaries: Path | None) -> SegmentFiles:
    """:class:`SegmentFiles` after checking that label and maps have the image's size."""
    assert pair.label is not None
    size = image_size(pair.image)
    maps: dict[str, Path | None] = {"label": pair.label, "objects": None, "boundary": None}
    for key, folder in (("objects", objects), ("boundary", boundaries)):
        if folder is not None:
            found = find_map(folder, pair.name)
            if found is None:
                raise SegmentDatasetNotFoundError(
                    f"no {key} map for {pair.name} in {folder} (looked for "
                    f"{pair.name}{'|'.join(MAP_SUFFIXES)}); run rs-sam sam-objects for it"
                )
            maps[key] = found
    for key, path in maps.items():
        if path is not None:
            require_same_size(key, path, pair.image, size, SegmentDatasetError)
    return SegmentFiles(
        name=pair.name,
        image=pair.image,
        label=pair.label,
        width=size[0],
        height=size[1],
        objects=maps["objects"],
        boundary=maps["boundary"],
    )


def single_band(data: np.ndarray, path: Path) -> np.ndarray:
    """The one band of a ``(1, H, W)`` map."""
    if data.shape[0] != 1:
        raise SegmentDatasetError(
            f"map {path} has {data.shape[0]} bands; SAM object and boundary maps have one band"
        )
    return data[0]


def decode_objects(values: np.ndarray) -> np.ndarray:
    """Object ids as int64 (0 = no object)."""
    return values.astype(np.int64)


def decode_boundary(values: np.ndarray, path: Path) -> np.ndarray:
    """0/1 or 0/255 -> float32 0/1."""
    found = set(np.unique(values).tolist())
    if not is_binary(found):
        raise SegmentDatasetError(
            f"boundary map {path} has values {format_list(sorted(found))}; expected 0/1 or 0/255"
        )
    return (values > 0).astype(np.float32)
