"""Class rasters from blended per-class probabilities: argmax, block by block.

The input is what :meth:`~rs_sam.inference.mosaic.ProbabilityMosaic.finalize` writes: one
float32 band per class, nodata (``< 0``) where no valid chip reached. The output is an
integer raster with one band per input (e.g. the latent classes of two dates), written to
a temporary name and renamed, so a failure leaves nothing behind.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rasterio

from rs_sam.errors import ConfigError
from rs_sam.inference.raster_io import atomic_path, block_windows

#: Output nodata of class rasters (uint8; classes are 0..254).
CLASS_NODATA = 255


def write_class_raster(
    probabilities: Sequence[Path],
    out_path: Path,
    *,
    descriptions: Sequence[str] | None = None,
    colormap: dict[int, tuple[int, int, int]] | None = None,
) -> Path:
    """Write ``argmax`` over the bands of each probability raster, one output band each.

    Args:
        probabilities: k-band float rasters on one grid (negative values are nodata).
        out_path: uint8 GeoTIFF to write; pixels without probabilities get ``CLASS_NODATA``.
        descriptions: one band description per input (e.g. ``"latent class, date a"``).
        colormap: class id -> RGB, attached to every band.

    Returns:
        ``out_path``.
    """
    if not probabilities:
        raise ConfigError("write_class_raster needs at least one probability raster")
    with rasterio.open(probabilities[0]) as first:
        profile = first.profile
        classes = first.count
    if classes >= CLASS_NODATA:
        raise ConfigError(f"{classes} classes do not fit a uint8 class raster; use at most 254")
    profile.update(
        count=len(probabilities),
        dtype="uint8",
        nodata=CLASS_NODATA,
        predictor=1,
        compress="deflate",
    )
    with atomic_path(Path(out_path)) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        for window in block_windows(profile["width"], profile["height"]):
            for band, path in enumerate(probabilities, start=1):
                with rasterio.open(path) as src:
                    dst.write(_argmax(src.read(window=window)), band, window=window)
        for band in range(1, len(probabilities) + 1):
            if descriptions is not None:
                dst.set_band_description(band, descriptions[band - 1])
            if colormap is not None:
                dst.write_colormap(band, colormap)
    return Path(out_path)


def _argmax(probability: np.ndarray) -> np.ndarray:
    """(k, h, w) probabilities -> (h, w) uint8 class ids, ``CLASS_NODATA`` where any is < 0."""
    classes = probability.argmax(axis=0).astype(np.uint8)
    classes[(probability < 0).any(axis=0)] = CLASS_NODATA
    return classes


def write_class_scores(probabilities: Path, out_path: Path) -> Path:
    """k bands: each class's probability where it wins the argmax, 0 elsewhere (by blocks).

    Polygonising band ``c`` at any threshold in ``(0, 1/k]`` then gives exactly the pixels
    of class ``c``, with the class probability as the polygons' score. Nodata is kept.
    """
    with rasterio.open(probabilities) as src:
        profile = src.profile
    with atomic_path(Path(out_path)) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        for window in block_windows(profile["width"], profile["height"]):
            with rasterio.open(probabilities) as src:
                probability = src.read(window=window)
            winner = probability.argmax(axis=0)
            classes = np.arange(len(probability))[:, None, None]
            scores = np.where(classes == winner, probability, 0.0).astype(np.float32)
            scores[:, (probability < 0).any(axis=0)] = profile["nodata"]
            dst.write(scores, window=window)
    return Path(out_path)
