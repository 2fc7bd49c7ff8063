"""Reading plain image files: PNG, JPEG, BMP and TIFF, with or without georeferencing.

The shared ground of the file-based datasets (:mod:`rs_sam.data.change_datasets`,
:mod:`rs_sam.data.segment_datasets`) and of ``sam-objects`` on folders of dataset tiles:

* :func:`read_image` / :func:`image_size`: pixels ``(C, H, W)`` or ``(width, height)`` of a
  file (TIFFs through rasterio, georeferencing ignored; anything else through PIL).
* :func:`pixel_grid`, :func:`chip_index`, :func:`crop_chip`, :func:`chip_name`: the pixel
  grid of an image without georeferencing and its chips (padded past the right/bottom edge).
* :func:`pick_bands`, :func:`nodata_equal`, :func:`grid_differences` and the message
  helpers :func:`format_list` / :func:`format_size`.

Errors are :class:`ImageFileError`; the dataset errors derive from it.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from PIL import Image, UnidentifiedImageError
from rasterio.crs import CRS
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

from rs_sam.data.grid import ChipWindow, RasterGrid, chip_windows
from rs_sam.errors import InputRasterError

#: Image files a folder dataset lists (suffix compared case-insensitively).
IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".bmp", ".jpg", ".jpeg")
#: Suffixes read through rasterio rather than PIL.
TIFF_SUFFIXES = (".tif", ".tiff")
#: What PIL raises for a file it cannot read. ultralytics (the optional fastsam extra), once
#: imported, patches ``Image.open`` to retry unknown files as HEIC, which raises ImportError
#: when pi-heif is missing.
PIL_ERRORS = (UnidentifiedImageError, OSError, ImportError)
#: PIL modes :func:`read_image` keeps; others become RGB ("1" and "LA" become "L").
_KEPT_MODES = ("L", "RGB", "I", "I;16", "I;16B", "I;16L", "F")
_MAX_LISTED = 6  # items quoted by format_list


class ImageFileError(InputRasterError):
    """An image file cannot be read, or not as asked (e.g. bands it does not have)."""


def _unreadable(path: Path, err: Exception) -> ImageFileError:
    return ImageFileError(
        f"{path} is not a readable image ({err}); pass PNG, TIFF, BMP or JPEG files"
    )


@contextlib.contextmanager
def open_tiff(path: Path) -> Iterator[Any]:
    """``rasterio.open`` for plain TIFFs: no NotGeoreferencedWarning, one-line errors.

    Raises:
        ImageFileError: rasterio cannot open the file.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        try:
            src = rasterio.open(path)
        except RasterioIOError as err:
            raise _unreadable(path, err) from err
    with src:
        yield src


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the file's header.

    Raises:
        ImageFileError: The file is not a readable image.
    """
    if path.suffix.lower() in TIFF_SUFFIXES:
        with open_tiff(path) as src:
            return int(src.width), int(src.height)
    try:
        with Image.open(path) as image:
            return image.size
    except PIL_ERRORS as err:
        raise _unreadable(path, err) from err


def read_image(path: Path) -> np.ndarray:
    """(C, H, W) raw values of an image file (PIL modes made RGB or grayscale).

    Raises:
        ImageFileError: The file is not a readable image.
    """
    if path.suffix.lower() in TIFF_SUFFIXES:
        with open_tiff(path) as src:
            return src.read()
    try:
        with Image.open(path) as opened:
            image: Image.Image = opened
            if image.mode in ("1", "LA"):
                image = image.convert("L")
            elif image.mode not in _KEPT_MODES:
                image = image.convert("RGB")  # RGBA, palette, CMYK, YCbCr...
            array = np.asarray(image)
    except PIL_ERRORS as err:
        raise _unreadable(path, err) from err
    return band_first(array)


def band_first(array: np.ndarray) -> np.ndarray:
    """PIL's ``(H, W)`` or ``(H, W, C)`` array as ``(C, H, W)``."""
    return array[None] if array.ndim == 2 else np.moveaxis(array, -1, 0)


def pick_bands(image: np.ndarray, bands: Sequence[int] | None, path: Path) -> np.ndarray:
    """(C, H, W) -> (1 or 3, H, W) as :func:`~rs_sam.data.bands.select_bands` does for rasters.

    Args:
        image: All bands of the file at ``path``.
        bands: 1-based bands to keep; None keeps one band or the first three.
        path: The file, for messages.

    Raises:
        ImageFileError: A requested band does not exist, or the image has 2 bands and
            ``bands`` is None.
    """
    count = image.shape[0]
    if bands is not None:
        missing = [b for b in bands if not 1 <= b <= count]
        if missing:
            raise ImageFileError(
                f"{path} has {count} band(s), so band(s) {missing} do not exist; fix bands="
            )
        return image[[b - 1 for b in bands]]
    if count == 2:
        raise ImageFileError(f"{path} has 2 bands; choose 1 or 3 of them with bands=")
    return image if count == 1 else image[:3]


def pixel_grid(width: int, height: int) -> RasterGrid:
    """A grid for an image without georeferencing: one map unit per pixel, y up.

    The CRS is a placeholder; chips and outputs only use the pixel geometry.
    """
    return RasterGrid(
        crs=CRS.from_epsg(3857),  # placeholder: only the pixel geometry is used
        transform=Affine(1.0, 0.0, 0.0, 0.0, -1.0, float(height)),
        width=width,
        height=height,
    )


def chip_index(
    sizes: Iterable[tuple[int, int]], chip_size: int | None, overlap: int
) -> list[tuple[int, ChipWindow | None]]:
    """``(image, window)`` for every chip of every image, in order.

    Args:
        sizes: (width, height) of each image.
        chip_size: Side of the square chips (see :func:`chip_windows`), or None for one
            ``(image, None)`` entry per whole image.
        overlap: Pixels shared by neighbouring chips.
    """
    index: list[tuple[int, ChipWindow | None]] = []
    for i, (width, height) in enumerate(sizes):
        if chip_size is None:
            index.append((i, None))
        else:
            grid = pixel_grid(width, height)
            index.extend((i, w) for w in chip_windows(grid, chip_size, overlap))
    return index


def crop_chip(array: np.ndarray, window: ChipWindow, fill: float) -> np.ndarray:
    """The chip of ``(..., H, W)``, padded with ``fill`` past the right/bottom edge."""
    height, width = array.shape[-2:]
    size = window.size
    out = np.full((*array.shape[:-2], size, size), fill, dtype=array.dtype)
    rows = max(0, min(size, height - window.row_off))
    cols = max(0, min(size, width - window.col_off))
    out[..., :rows, :cols] = array[
        ..., window.row_off : window.row_off + rows, window.col_off : window.col_off + cols
    ]
    return out


def chip_name(name: str, window: ChipWindow) -> str:
    """``"<name>:r<row>_c<col>"``: the sample name of one chip of image (or pair) ``name``."""
    return f"{name}:r{window.row_off}_c{window.col_off}"


def nodata_equal(values: np.ndarray, nodata: float) -> np.ndarray:
    """``values == nodata``, NaN-aware (a NaN nodata matches NaN values)."""
    return np.isnan(values) if np.isnan(nodata) else values == nodata


def grid_differences(found: Any, expected: Any) -> list[str]:
    """How ``found``'s grid differs from ``expected``'s, one phrase per difference.

    Both are anything with ``crs``, ``transform``, ``width`` and ``height`` (an open rasterio
    dataset, a :class:`~rs_sam.data.rasters.RasterInfo`, a :class:`RasterGrid`); an empty
    list means the same grid.
    """
    differences = []
    if found.crs != expected.crs:
        differences.append(f"CRS {found.crs} instead of {expected.crs}")
    if found.transform != expected.transform:
        differences.append(
            f"transform {tuple(found.transform)[:6]} instead of {tuple(expected.transform)[:6]}"
        )
    size = (found.width, found.height)
    expected_size = (expected.width, expected.height)
    if size != expected_size:
        differences.append(f"size {format_size(size)} instead of {format_size(expected_size)}")
    return differences


def format_size(size: tuple[int, int]) -> str:
    """``(width, height)`` as ``"WxH"`` for messages."""
    return f"{size[0]}x{size[1]}"


def format_list(items: Sequence[Any], limit: int = _MAX_LISTED) -> str:
    """``[a, b, ... n more]``: at most ``limit`` (six) items of a list quoted in a message."""
    shown = ", ".join(str(i) for i in items[:limit])
    more = len(items) - limit
    return f"[{shown}{f', ... {more} more' if more > 0 else ''}]"
