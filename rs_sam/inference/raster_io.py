"""Writing rasters safely and by blocks: atomic outputs and block windows."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from rasterio.windows import Window

from rs_sam.errors import OutputExistsError, OutputPathError


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary name beside ``path``, renamed over it on success, removed on failure."""
    path = Path(path)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def block_windows(width: int, height: int, size: int = 1024) -> Iterator[Window]:
    """Row-major windows of at most ``size`` x ``size`` covering a ``width`` x ``height`` grid."""
    for row in range(0, height, size):
        for col in range(0, width, size):
            yield Window(col, row, min(size, width - col), min(size, height - row))


def check_raster_output(path: str | Path | None, *, overwrite: bool, what: str) -> Path | None:
    """An optional GeoTIFF output checked before any work: suffix, folder, existing file.

    Returns:
        ``path`` with ``~`` expanded, or None for None.
    """
    if path is None:
        return None
    path = Path(path).expanduser()
    if path.suffix.lower() not in {".tif", ".tiff"}:
        raise OutputPathError(f"{what} {path} must end in .tif; rename it")
    if not path.parent.is_dir():
        raise OutputPathError(
            f"folder {path.parent} for {path.name} does not exist; create it first"
        )
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise OutputPathError(
            f"folder {path.parent} for {path.name} is not writable; choose another folder"
        )
    if path.is_dir():
        raise OutputPathError(f"{what} {path} is a folder; give a file name ending in .tif")
    if os.path.lexists(path) and not overwrite:
        raise OutputExistsError(f"{path} exists; pass --overwrite to replace it")
    return path
