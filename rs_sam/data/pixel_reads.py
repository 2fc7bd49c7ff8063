"""Pixel reads through torchgeo that fail with one line naming the file and the window.

A raster can pass every header check and still hold pixels that cannot be read: a GeoTIFF
cut short by an interrupted copy, a VRT whose source file was moved. GDAL then fails at
the first read of such a block. :func:`read_pixels` is the single place where the data
readers query torchgeo; it turns that failure into a :class:`~rs_sam.errors.RasterReadError`
(bad input, exit 2) naming the file that fails and the window of its pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.errors import RasterioError, WindowError
from rasterio.warp import transform_bounds
from rasterio.windows import Window, from_bounds

from rs_sam.data.rasters import RasterInfo
from rs_sam.data.remote import remote_env
from rs_sam.errors import RasterReadError

#: Longest side of the probe read that finds which file fails (memory stays bounded).
_PROBE_SIDE = 1024


def read_pixels(
    dataset: Any, query: tuple[slice, slice], infos: Sequence[RasterInfo], crs: CRS
) -> np.ndarray:
    """``dataset[query]["image"]`` as float32 (C, h, w).

    Args:
        dataset: a torchgeo dataset over the files of ``infos``.
        query: ``(x slice, y slice)`` in ``crs`` (torchgeo's bounds and resolution).
        infos: the files the dataset reads, for the message.
        crs: the CRS of ``query``.

    Raises:
        RasterReadError: GDAL cannot read the pixels (damaged or incomplete file, missing
            VRT source); names the file and its pixel window.
    """
    try:
        with remote_env(any(info.remote for info in infos)):
            sample: dict[str, Any] = dataset[query]
    except RasterioError as err:
        bounds = (query[0].start, query[1].start, query[0].stop, query[1].stop)
        raise unreadable_error(infos, bounds, crs, err) from err
    return sample["image"].numpy().astype(np.float32, copy=False)


def unreadable_error(
    infos: Sequence[RasterInfo],
    bounds: tuple[float, float, float, float],
    crs: CRS,
    err: Exception,
) -> RasterReadError:
    """The error for a failed read of ``bounds``: the file(s) that fail, with their windows.

    Each file is read again on its own (decimated) to find the one at fault; when none
    fails alone, every file is named.
    """
    windows = [(info, _window_in(info, bounds, crs)) for info in infos]
    failing = [(info, window) for info, window in windows if not _readable(info, window)]
    named = {info.label: window for info, window in failing or windows}  # a and b may be one
    where = "; ".join(f"{label} in {_describe(window)}" for label, window in named.items())
    label = next(iter(named))
    if any(info.remote for info in infos):
        return RasterReadError(
            f"cannot read the pixels of {where} ({_detail(err)}): the connection failed or "
            "the file changed on the server; check the URL and the network and run again"
        )
    return RasterReadError(
        f"cannot read the pixels of {where} ({_detail(err)}): the file is damaged or "
        f"incomplete, or a file it refers to is missing; check it with "
        f"`gdalinfo -checksum {label}` and copy it again"
    )


def _window_in(info: RasterInfo, bounds: tuple[float, float, float, float], crs: CRS) -> Window:
    """The pixels of ``info`` under ``bounds`` (given in ``crs``), clipped to the raster."""
    if info.crs != crs:
        bounds = transform_bounds(crs, info.crs, *bounds, densify_pts=21)
    window = from_bounds(*bounds, transform=info.transform).round_offsets().round_lengths()
    try:
        return window.intersection(Window(0, 0, info.width, info.height))
    except WindowError:
        return Window(0, 0, info.width, info.height)


def _readable(info: RasterInfo, window: Window) -> bool:
    height = max(1, min(int(window.height), _PROBE_SIDE))
    width = max(1, min(int(window.width), _PROBE_SIDE))
    try:
        with remote_env(info.remote), rasterio.open(info.path) as src:
            src.read(window=window, out_shape=(src.count, height, width))
    except RasterioError:
        return False
    return True


def _describe(window: Window) -> str:
    row, col = int(window.row_off), int(window.col_off)
    return (
        f"rows {row}-{row + max(1, int(window.height)) - 1}, "
        f"columns {col}-{col + max(1, int(window.width)) - 1}"
    )


def _detail(err: Exception) -> str:
    """GDAL's own first line (the cause rasterio chains), else rasterio's."""
    for candidate in (err.__cause__, err):
        text = str(candidate or "").strip()
        if text:
            return text.splitlines()[0].rstrip(".")
    return type(err).__name__
