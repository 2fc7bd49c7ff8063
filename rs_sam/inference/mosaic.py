"""Blend per-chip probability maps into one float32 GeoTIFF, window by window.

Each chip's probabilities are weighted by :func:`blend_weights` (a Hann ramp over the
``overlap`` pixels at each chip edge, 1 inside) and added to running sums that live in a
temporary tiled GeoTIFF on disk, never in RAM, so memory does not grow with the raster.
:meth:`ProbabilityMosaic.finalize` divides the sums block by block and writes the output
atomically.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Self

import numpy as np
import rasterio
from rasterio.windows import Window

from rs_sam.data.grid import ChipWindow, RasterGrid, check_chip_geometry
from rs_sam.errors import ConfigError, OutputPathError

#: Smallest blend weight. Positive, so a pixel only one chip covers keeps that chip's value.
WEIGHT_FLOOR = 1e-3

# Tile side of the accumulator and of the output GeoTIFF (a multiple of 16, as GTiff needs).
_TILE = 256
# finalize() reads and writes squares of this many tiles per side at a time.
_TILES_PER_STEP = 4


def blend_weights(chip_size: int, overlap: int, floor: float = WEIGHT_FLOOR) -> np.ndarray:
    """Per-pixel blend weight of one chip.

    Along each axis the weight rises over the first ``overlap`` pixels as a half Hann window
    ``(1 - cos(pi * (i + 0.5) / overlap)) / 2``, is 1 in the interior and falls symmetrically
    at the far edge. The ramps of two neighbouring chips sum to 1 across their overlap. The
    result is lifted to at least ``floor``.

    Returns:
        float32 array of shape ``(chip_size, chip_size)``, values in ``[floor, 1]``.
    """
    check_chip_geometry(chip_size, overlap)
    ramp = np.ones(chip_size, dtype=np.float64)
    if overlap > 0:
        i = np.arange(overlap, dtype=np.float64)
        rise = 0.5 * (1.0 - np.cos(np.pi * (i + 0.5) / overlap))
        ramp[:overlap] = rise
        ramp[-overlap:] = rise[::-1]
    ramp = floor + (1.0 - floor) * ramp
    return np.outer(ramp, ramp).astype(np.float32)


class ProbabilityMosaic:
    """Weighted-mean mosaic of overlapping chip probabilities, accumulated on disk.

    Use as a context manager::

        with ProbabilityMosaic(grid, chip_size=1024, overlap=128, workdir=tmp) as mosaic:
            for window in chip_windows(grid, 1024, 128):
                mosaic.add(window, predict(window))          # (size, size) float32
            mosaic.finalize(Path("probability.tif"))

    The running sums (``bands`` weighted sums plus the weight sum) are a temporary,
    uncompressed, sparse, tiled GeoTIFF in a private folder under ``workdir``; each
    :meth:`add` is a windowed read-modify-write that closes the file again, so RAM holds a
    chip's tiles at most, whatever the raster size. The folder is removed on exit.
    """

    def __init__(
        self,
        grid: RasterGrid,
        *,
        chip_size: int,
        overlap: int,
        workdir: Path,
        bands: int = 1,
    ) -> None:
        """Create the on-disk accumulator.

        Args:
            grid: the output grid.
            chip_size: side of every chip given to :meth:`add`.
            overlap: chip overlap in pixels, as given to ``chip_windows``.
            workdir: folder for the temporary accumulator (created if missing).
            bands: number of probability bands per chip.
        """
        check_chip_geometry(chip_size, overlap)
        if isinstance(bands, bool) or not isinstance(bands, int) or bands < 1:
            raise ConfigError(f"bands={bands!r} is invalid; use a positive integer")
        self.grid = grid
        self.chip_size = chip_size
        self.overlap = overlap
        self.bands = bands
        self._weights = blend_weights(chip_size, overlap)
        workdir = Path(workdir).expanduser()
        try:
            workdir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputPathError(
                f"workdir '{workdir}' cannot be created ({exc.strerror}); choose a writable folder"
            ) from exc
        self._tmpdir = Path(tempfile.mkdtemp(prefix="rs-sam-mosaic-", dir=workdir))
        self._acc_path = self._tmpdir / "accumulator.tif"
        self._closed = False
        with rasterio.open(
            self._acc_path,
            "w",
            driver="GTiff",
            width=grid.width,
            height=grid.height,
            count=bands + 1,
            dtype="float32",
            crs=grid.crs,
            transform=grid.transform,
            tiled=True,
            blockxsize=_TILE,
            blockysize=_TILE,
            interleave="pixel",
            sparse_ok=True,  # untouched tiles are never written and read as 0
            bigtiff="IF_NEEDED",
        ):
            pass

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close and delete the accumulator. Idempotent."""
        self._closed = True
        shutil.rmtree(self._tmpdir, ignore_errors=True)

    def _check_open(self) -> None:
        if self._closed:
            raise ConfigError("the mosaic is closed; add() and finalize() inside its 'with' block")

    def add(
        self, window: ChipWindow, probability: np.ndarray, valid: np.ndarray | None = None
    ) -> None:
        """Add one chip's probabilities.

        Args:
            window: the chip's window on the grid (padding past the edge is ignored).
            probability: ``(bands, size, size)`` or, when ``bands == 1``, ``(size, size)``;
                non-finite values count as invalid.
            valid: ``(size, size)`` bool; False marks nodata, which contributes nothing.
        """
        self._check_open()
        size = self.chip_size
        prob = np.asarray(probability, dtype=np.float32)
        if prob.ndim == 2:
            prob = prob[np.newaxis]
        if window.size != size or prob.shape != (self.bands, size, size):
            raise ConfigError(
                f"chip {window.index} has window size {window.size} and probability shape "
                f"{np.shape(probability)}; expected ({self.bands}, {size}, {size}) "
                f"for chip_size={size}"
            )
        weight = np.broadcast_to(self._weights, (size, size))
        mask = np.asarray(np.isfinite(prob).all(axis=0))
        if valid is not None:
            valid = np.asarray(valid, dtype=bool)
            if valid.shape != (size, size):
                raise ConfigError(
                    f"valid mask of chip {window.index} has shape {valid.shape}; "
                    f"expected ({size}, {size})"
                )
            mask &= valid
        target = window.clipped(self.grid)
        h, w = int(target.height), int(target.width)
        if h <= 0 or w <= 0 or window.row_off < 0 or window.col_off < 0:
            raise ConfigError(
                f"chip {window.index} at row {window.row_off}, col {window.col_off} lies outside "
                f"the {self.grid.width}x{self.grid.height} grid; use chip_windows(grid, ...)"
            )
        weight = np.where(mask, weight, 0.0).astype(np.float32)[:h, :w]
        if not weight.any():
            return
        contrib = np.empty((self.bands + 1, h, w), dtype=np.float32)
        contrib[: self.bands] = np.where(mask[:h, :w], prob[:, :h, :w], 0.0) * weight
        contrib[self.bands] = weight
        # Open per chip: closing flushes the tiles and drops them from GDAL's block cache,
        # which would otherwise grow towards GDAL_CACHEMAX (5% of RAM) with the raster.
        with rasterio.open(self._acc_path, "r+") as acc:
            acc.write(acc.read(window=target) + contrib, window=target)

    def finalize(self, out_path: Path, *, nodata: float = -1.0, compress: str = "deflate") -> Path:
        """Write the weighted mean to a tiled, compressed float32 GeoTIFF on the grid.

        Pixels that no valid chip covered get ``nodata``. The file is written block by block
        to a temporary name in the destination folder, then renamed over ``out_path``.

        Returns:
            ``out_path``.
        """
        self._check_open()
        out_path = Path(out_path).expanduser()
        folder = out_path.parent
        if not folder.is_dir():
            raise OutputPathError(
                f"output folder '{folder}' does not exist; create it or choose another path"
            )
        profile = {
            "driver": "GTiff",
            "width": self.grid.width,
            "height": self.grid.height,
            "count": self.bands,
            "dtype": "float32",
            "crs": self.grid.crs,
            "transform": self.grid.transform,
            "nodata": nodata,
            "tiled": True,
            "blockxsize": _TILE,
            "blockysize": _TILE,
            "compress": compress,
            "bigtiff": "IF_SAFER",
        }
        if compress.lower() in {"deflate", "lzw", "zstd"}:
            profile["predictor"] = 3  # floating-point predictor
        tmp = folder / f".{out_path.name}.{secrets.token_hex(4)}.tmp"
        try:
            with rasterio.open(tmp, "w", **profile):
                pass
            step = _TILE * _TILES_PER_STEP
            width, height = self.grid.width, self.grid.height
            for row in range(0, height, step):
                for col in range(0, width, step):
                    win = Window(col, row, min(step, width - col), min(step, height - row))
                    # Reopened per window so GDAL's block cache holds one window (see add()).
                    with rasterio.open(self._acc_path) as acc:
                        sums = acc.read(window=win)
                    total = sums[self.bands]
                    mean = np.full(sums[: self.bands].shape, nodata, dtype=np.float32)
                    np.divide(sums[: self.bands], total, out=mean, where=total > 0)
                    with rasterio.open(tmp, "r+") as dst:
                        dst.write(mean, window=win)
            os.replace(tmp, out_path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        return out_path
