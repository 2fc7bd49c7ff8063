"""Open and validate one date's raster before any work is done.

A date is one GDAL-readable raster (GeoTIFF, COG, VRT...) or several single-band files
on one grid (e.g. Sentinel-2 bands delivered as separate files), which are stacked into
a VRT. Each may be a local path or a remote one (``https://``, ``s3://``, ``gs://``,
``/vsi...``: see :mod:`rs_sam.data.remote`). Every check raises an
:class:`~rs_sam.errors.RsSamError` with a one-line message.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import RasterioIOError

from rs_sam.data.remote import gdal_path, mend_url, remote_env, remote_open_error
from rs_sam.errors import InputRasterError, RasterNotFoundError, looks_remote

#: Anything a user may pass for one date: a path, or single-band paths to stack.
DateInput = str | Path | Sequence[str | Path]

#: A comma before a URL or /vsi path: what splits a comma list that holds URLs.
_URL_COMMA = re.compile(r",\s*(?=[A-Za-z][A-Za-z0-9+.-]+://|/vsi)")


@dataclass(frozen=True)
class RasterInfo:
    """What rs-sam needs to know about one date's raster (read from its header)."""

    path: Path | str  # the file torchgeo reads (a VRT when stacked; a GDAL path if remote)
    label: str  # what the user passed, for messages
    crs: CRS
    transform: Affine
    width: int
    height: int
    count: int
    dtype: str
    nodata: float | None
    remote: bool = False  # read through a network file system (see rs_sam.data.remote)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in the raster's CRS."""
        left, top = self.transform.c, self.transform.f
        right = left + self.width * self.transform.a
        bottom = top + self.height * self.transform.e
        return left, bottom, right, top


def parse_date_input(value: DateInput) -> list[Path | str]:
    """Split a date argument into file paths: local ones as ``Path``, remote ones as given.

    Accepts a path, a comma-separated list of paths, a folder (its ``*.tif``/``*.tiff``
    files in name order) or a sequence of paths. A remote path (``https://``, ``s3://``,
    ``gs://``, ``/vsi...``) is kept as text. In a comma list that holds URLs, a comma
    splits only before a URL or ``/vsi`` path, so commas in a query string stay in it
    (local band files cannot follow a URL in one text: pass a sequence). Folders are local.

    Raises:
        RasterNotFoundError: nothing to read.
    """
    if isinstance(value, str | Path):
        text = str(value)
        if looks_remote(text) or _URL_COMMA.search(text):
            paths = [_path_of(p.strip()) for p in _URL_COMMA.split(text) if p.strip()]
        elif "," in text:
            paths = [_path_of(p.strip()) for p in text.split(",") if p.strip()]
        elif Path(text).is_dir():
            paths = sorted(p for p in Path(text).iterdir() if p.suffix.lower() in {".tif", ".tiff"})
            if not paths:
                raise RasterNotFoundError(
                    f"folder {text} holds no .tif files; pass a raster or a list of band files"
                )
        else:
            paths = [Path(text)]
    else:
        paths = [_path_of(p) for p in value]
    if not paths:
        raise RasterNotFoundError("no input raster given; pass a raster path")
    return paths


def open_date(value: DateInput, *, workdir: Path | None = None) -> RasterInfo:
    """Validate one date and return its header.

    Several single-band files are stacked (in the given order) into a VRT written in
    ``workdir`` (a temporary folder by default); they must share CRS and grid.

    Raises:
        RasterNotFoundError: a path does not exist.
        InputRasterError: not a raster, no CRS, a rotated/sheared or south-up
            geotransform, or stacked files on different grids.
    """
    paths = parse_date_input(value)
    infos = [_read_remote_header(p) if isinstance(p, str) else _read_header(p) for p in paths]
    if len(infos) == 1:
        return infos[0]
    first = infos[0]
    for info in infos[1:]:
        if (info.crs, info.transform, info.width, info.height) != (
            first.crs,
            first.transform,
            first.width,
            first.height,
        ):
            raise InputRasterError(
                f"{info.label} is not on the grid of {first.label}; band files of one date "
                "must share CRS, transform and size (resample them first, e.g. with gdalwarp)"
            )
    folder = workdir or Path(tempfile.mkdtemp(prefix="rs-sam-vrt-"))
    vrt = folder / f"stack-{abs(hash(tuple(str(p) for p in paths))):x}.vrt"
    vrt.write_text(_stack_vrt_xml(infos))
    remote = any(info.remote for info in infos)
    with remote_env(remote):
        stacked = _read_header(vrt)
    label = ",".join(i.label for i in infos)
    return RasterInfo(**{**stacked.__dict__, "label": label, "remote": remote})


def _path_of(value: str | Path) -> Path | str:
    """A local path as ``Path``; a remote one as text (``Path`` folds its ``//``: mended)."""
    return mend_url(str(value)) if looks_remote(value) else Path(value)


def _read_remote_header(text: str) -> RasterInfo:
    """The header of a remote raster, opened through its GDAL path with remote settings."""
    path = gdal_path(text)
    with remote_env(fresh=path):
        return _read_header(path, label=text, remote=True)


def _read_header(path: Path | str, label: str | None = None, remote: bool = False) -> RasterInfo:
    label = label or str(path)
    if isinstance(path, Path) and not path.exists():
        raise RasterNotFoundError(f"input raster {label} does not exist; check the path")
    try:
        with rasterio.open(path) as src:
            crs, transform = src.crs, src.transform
            width, height, count = src.width, src.height, src.count
            dtype, nodata = src.dtypes[0], src.nodata
            has_gcps = bool(src.gcps[0])
    except RasterioIOError as err:
        if remote:
            raise remote_open_error(label, str(path), err) from err
        raise InputRasterError(
            f"{label} is not a readable raster ({_first_line(err)}); pass a GeoTIFF, COG or VRT"
        ) from err
    if crs is None:
        hint = " (it has GCPs: warp it with gdalwarp first)" if has_gcps else ""
        raise InputRasterError(
            f"{label} has no CRS{hint}; assign one, e.g. gdal_edit.py -a_srs EPSG:32633 {label}"
        )
    if transform.b != 0 or transform.d != 0:
        raise InputRasterError(
            f"{label} has a rotated or sheared geotransform; warp it north-up first, "
            f"e.g. gdalwarp {label} northup.tif"
        )
    if transform.a <= 0 or transform.e >= 0:
        raise InputRasterError(
            f"{label} is not north-up (pixel size {transform.a}, {transform.e}); "
            f"warp it first, e.g. gdalwarp {label} northup.tif"
        )
    return RasterInfo(
        path=path,
        label=label,
        crs=crs,
        transform=transform,
        width=width,
        height=height,
        count=count,
        dtype=dtype,
        nodata=nodata,
        remote=remote,
    )


def _stack_vrt_xml(infos: Sequence[RasterInfo]) -> str:
    """A VRT that stacks the first band of each file, in order."""
    first = infos[0]
    gt = first.transform.to_gdal()
    bands = []
    for i, info in enumerate(infos, start=1):
        nodata = "" if info.nodata is None else f"<NoDataValue>{info.nodata!r}</NoDataValue>"
        bands.append(
            f'<VRTRasterBand dataType="{_gdal_type(info.dtype)}" band="{i}">{nodata}'
            f'<SimpleSource><SourceFilename relativeToVRT="0">'
            f"{escape(info.path if isinstance(info.path, str) else str(info.path.resolve()))}"
            "</SourceFilename>"
            f"<SourceBand>1</SourceBand></SimpleSource></VRTRasterBand>"
        )
    return (
        f'<VRTDataset rasterXSize="{first.width}" rasterYSize="{first.height}">'
        f"<SRS>{escape(first.crs.to_wkt())}</SRS>"
        f"<GeoTransform>{', '.join(repr(v) for v in gt)}</GeoTransform>"
        + "".join(bands)
        + "</VRTDataset>"
    )


def _gdal_type(dtype: str) -> str:
    names = {
        "uint8": "Byte",
        "int8": "Int8",
        "uint16": "UInt16",
        "int16": "Int16",
        "uint32": "UInt32",
        "int32": "Int32",
        "float32": "Float32",
        "float64": "Float64",
    }
    if dtype not in names:
        raise InputRasterError(f"data type {dtype} is not supported; convert to uint16 or float32")
    return names[dtype]


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def is_integer_8bit(dtype: str) -> bool:
    """True for uint8 imagery, which SAM takes as it is (no stretch)."""
    return np.dtype(dtype) == np.uint8
