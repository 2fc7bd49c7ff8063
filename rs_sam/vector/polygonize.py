"""Probability raster -> polygons, block by block, with no seams at block borders.

The raster is read in square blocks, so memory depends on ``block_size``, not on the raster.
Each block is polygonised in *pixel* coordinates shifted by the block's integer offset, so
every vertex is an exact integer. Pieces of one object that meet across a block border are
found from the pixels on either side of the border (union-find over piece ids), then
unioned exactly; the affine transform is applied once, at the end. Per-object statistics
are sums, counts and maxima, so combining the pieces is exact.

Connectivity is 4 (pixels sharing an edge), both inside blocks and across borders: two
pixels touching only at a corner are two objects.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import geopandas as gpd
import numpy as np
import rasterio
import shapely
from affine import Affine
from rasterio import features
from rasterio.errors import RasterioIOError
from rasterio.windows import Window
from shapely.geometry import shape

from rs_sam.errors import ConfigError, InputRasterError, RasterNotFoundError
from rs_sam.vector.area import areas_m2

#: Output columns, in order (``geometry`` last).
COLUMNS = ("id", "area_m2", "score_mean", "score_max")

_MIN_AREA_RE = re.compile(
    r"^\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?)\s*(px|m2|m²)?\s*$", re.I
)


@dataclass(frozen=True)
class MinArea:
    """Smallest polygon kept: ``value`` pixels (``"px"``) or square metres (``"m2"``)."""

    value: float
    unit: Literal["px", "m2"]

    def __post_init__(self) -> None:
        if self.unit not in ("px", "m2"):
            raise ConfigError(f"min_area unit {self.unit!r} is unknown; use 'px' or 'm2'")
        if not math.isfinite(self.value) or self.value < 0:
            raise ConfigError(f"min_area value {self.value!r} is invalid; use a number >= 0")

    @classmethod
    def parse(cls, text: str) -> MinArea:
        """``"50"`` or ``"50px"`` -> 50 pixels; ``"200m2"`` -> 200 square metres."""
        match = _MIN_AREA_RE.match(str(text))
        if match is None:
            raise ConfigError(
                f"min_area {text!r} is not understood; use e.g. '50' or '50px' (pixels) "
                "or '200m2' (square metres)"
            )
        unit = (match.group(2) or "px").lower()
        if float(match.group(1)) < 0:
            raise ConfigError(
                f"min_area {text!r} must be positive (0 keeps every polygon); use e.g. '50px' "
                "or '200m2'"
            )
        return cls(float(match.group(1)), "px" if unit == "px" else "m2")


def polygonize_probability(
    raster_path: Path,
    *,
    threshold: float,
    min_area: MinArea | None = None,
    simplify: float | None = None,
    block_size: int = 2048,
    band: int = 1,
) -> gpd.GeoDataFrame:
    """Polygons of the pixels ``>= threshold`` of a probability raster.

    Args:
        raster_path: single- or multi-band raster with a CRS; nodata (and masked) pixels
            never become polygons.
        threshold: pixels with ``value >= threshold`` are foreground.
        min_area: drop polygons smaller than this, measured on the merged polygon.
        simplify: topology-preserving Douglas-Peucker tolerance in the raster CRS's map
            units (metres, or degrees for a geographic CRS); ``None`` keeps the exact pixel
            outlines.
        block_size: side of the square blocks read at a time; memory is about
            ``block_size**2 * 16`` bytes plus the polygons.
        band: 1-based band to read.

    Returns:
        GeoDataFrame in the raster's CRS with columns ``id`` (1..n, ordered by the first
        pixel in raster order, top-left first), ``area_m2`` (of the output geometry;
        geodesic for geographic CRS), ``score_mean`` and ``score_max`` (over the polygon's
        pixels) and ``geometry`` (Polygon).

    Raises:
        RasterNotFoundError: ``raster_path`` does not exist.
        InputRasterError: not a raster, no CRS, or no such band.
        ConfigError: ``threshold``, ``simplify`` or ``block_size`` is invalid.
    """
    path = Path(raster_path).expanduser()
    if not math.isfinite(threshold):
        raise ConfigError(f"threshold={threshold!r} is invalid; use a finite number (e.g. 0.5)")
    if simplify is not None and (not math.isfinite(simplify) or simplify < 0):
        raise ConfigError(f"simplify={simplify!r} is invalid; use a tolerance >= 0 in map units")
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ConfigError(
            f"block_size={block_size!r} is invalid; use a positive integer (e.g. 2048)"
        )
    if not path.exists():
        raise RasterNotFoundError(f"raster '{path}' does not exist; check the path")
    try:
        src = rasterio.open(path)
    except RasterioIOError as exc:
        raise InputRasterError(
            f"'{path}' cannot be read as a raster ({exc}); give a GeoTIFF"
        ) from exc
    with src:
        if src.crs is None:
            raise InputRasterError(
                f"raster '{path}' has no CRS; assign one (e.g. gdal_edit -a_srs)"
            )
        if not 1 <= band <= src.count:
            raise InputRasterError(
                f"raster '{path}' has {src.count} band(s); band={band} is out of range, "
                f"use 1 to {src.count}"
            )
        pieces = _collect_pieces(src, band, threshold, block_size)
        crs, transform = src.crs, src.transform
    return _assemble(pieces, crs, transform, min_area=min_area, simplify=simplify)


@dataclass
class _Pieces:
    """Per-block polygons (pixel coordinates) and their statistics, plus border links."""

    geoms: list[shapely.Geometry]
    counts: list[np.ndarray]  # (n_block,) int64 pixel counts
    sums: list[np.ndarray]  # (n_block,) float64 sums of values
    maxes: list[np.ndarray]  # (n_block,) float64 maxima
    firsts: list[np.ndarray]  # (n_block,) int64 row * width + col of the first pixel
    links: list[np.ndarray]  # (k, 2) int64 piece ids sharing a block-border edge


def _collect_pieces(
    src: rasterio.DatasetReader, band: int, threshold: float, block_size: int
) -> _Pieces:
    """Polygonise each block; link pieces that share an edge with the block above or left."""
    pieces = _Pieces([], [], [], [], [], [])
    width, height = src.width, src.height
    above: dict[int, np.ndarray] = {}  # block column offset -> bottom row of ids of the block above
    for row in range(0, height, block_size):
        left: np.ndarray | None = None  # right column of ids of the block to the left
        for col in range(0, width, block_size):
            win = Window(col, row, min(block_size, width - col), min(block_size, height - row))
            ids = _polygonize_block(src, band, threshold, win, pieces)
            if left is not None:
                _link(left, ids[:, 0], pieces)
            if col in above:
                _link(above[col], ids[0, :], pieces)
            left = ids[:, -1]
            above[col] = ids[-1, :]
    return pieces


def _polygonize_block(
    src: rasterio.DatasetReader, band: int, threshold: float, win: Window, pieces: _Pieces
) -> np.ndarray:
    """Add the block's pieces to ``pieces``; return its ``(h, w)`` piece ids (-1 = background)."""
    data = src.read(band, window=win)
    valid = src.read_masks(band, window=win) > 0
    with np.errstate(invalid="ignore"):
        mask = valid & (data >= threshold)
    h, w = mask.shape
    ids = np.full((h, w), -1, dtype=np.int64)
    if not mask.any():
        return ids
    offset = Affine.translation(int(win.col_off), int(win.row_off))
    geoms = [
        shape(g)
        for g, _ in features.shapes(
            mask.astype(np.uint8), mask=mask, connectivity=4, transform=offset
        )
    ]
    # Burn piece numbers back: vertices are on pixel corners, so the pixel-centre rule is exact.
    labels = features.rasterize(
        ((g, k) for k, g in enumerate(geoms, start=1)),
        out_shape=(h, w),
        transform=offset,
        fill=0,
        dtype="int32",
    )
    if not np.array_equal(labels > 0, mask):  # pragma: no cover - GDAL invariant
        raise RuntimeError("polygonize/rasterize round trip disagrees; please report this raster")
    n = len(geoms)
    flat = labels.ravel()
    fg = flat > 0
    values = data.ravel()[fg].astype(np.float64)
    local = flat[fg] - 1
    counts = np.bincount(local, minlength=n).astype(np.int64)
    sums = np.bincount(local, weights=values, minlength=n)
    maxes = np.full(n, -np.inf)
    np.maximum.at(maxes, local, values)
    first_flat = np.full(n, np.iinfo(np.int64).max)
    np.minimum.at(first_flat, local, np.flatnonzero(fg))
    first = (int(win.row_off) + first_flat // w) * src.width + int(win.col_off) + first_flat % w
    base = sum(len(c) for c in pieces.counts)
    pieces.geoms.extend(geoms)
    pieces.counts.append(counts)
    pieces.sums.append(sums)
    pieces.maxes.append(maxes)
    pieces.firsts.append(first)
    ids[labels > 0] = labels[labels > 0] + (base - 1)
    return ids


def _link(side_a: np.ndarray, side_b: np.ndarray, pieces: _Pieces) -> None:
    """Record pieces facing each other across a border: ``side_a[i]`` touches ``side_b[i]``."""
    both = (side_a >= 0) & (side_b >= 0)
    if both.any():
        pieces.links.append(np.unique(np.stack([side_a[both], side_b[both]], axis=1), axis=0))


def _find_roots(n: int, links: list[np.ndarray]) -> np.ndarray:
    """Union-find: ``(n,)`` root piece id of each piece's connected component."""
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for pairs in links:
        for a, b in pairs.tolist():
            ra, rb = find(a), find(b)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
    return np.array([find(i) for i in range(n)], dtype=np.int64)


def _assemble(
    pieces: _Pieces,
    crs: rasterio.crs.CRS,
    transform: Affine,
    *,
    min_area: MinArea | None,
    simplify: float | None,
) -> gpd.GeoDataFrame:
    """Merge linked pieces, filter, simplify, georeference and number the polygons."""
    n = len(pieces.geoms)
    if n == 0:
        return _empty(crs)
    roots = _find_roots(n, pieces.links)
    groups, inverse = np.unique(roots, return_inverse=True)
    m = len(groups)
    counts = np.bincount(inverse, weights=np.concatenate(pieces.counts), minlength=m)
    sums = np.bincount(inverse, weights=np.concatenate(pieces.sums), minlength=m)
    maxes = np.full(m, -np.inf)
    np.maximum.at(maxes, inverse, np.concatenate(pieces.maxes))
    firsts = np.full(m, np.iinfo(np.int64).max)
    np.minimum.at(firsts, inverse, np.concatenate(pieces.firsts))

    geoms_px = np.empty(m, dtype=object)
    members: dict[int, list[shapely.Geometry]] = {}
    for piece, group in enumerate(inverse.tolist()):
        members.setdefault(group, []).append(pieces.geoms[piece])
    for group, parts in members.items():
        # Unioning exact integer geometries adds no new vertices; simplify(0) only drops the
        # collinear vertices left where the block border crossed the outline.
        geoms_px[group] = (
            parts[0] if len(parts) == 1 else shapely.simplify(shapely.union_all(parts), 0.0)
        )

    keep = np.ones(m, dtype=bool)
    if min_area is not None and min_area.unit == "px":
        keep = counts >= min_area.value
    elif min_area is not None:
        keep = areas_m2(_to_map(geoms_px, transform), crs) >= min_area.value
    order = np.flatnonzero(keep)[np.argsort(firsts[keep], kind="stable")]
    geoms_px = geoms_px[order]
    geoms = _to_map(geoms_px, transform)
    if simplify:
        geoms = shapely.simplify(geoms, simplify, preserve_topology=True)
    frame = gpd.GeoDataFrame(
        {
            "id": np.arange(1, len(order) + 1, dtype=np.int64),
            "area_m2": areas_m2(geoms, crs),
            "score_mean": sums[order] / counts[order],
            "score_max": maxes[order],
        },
        geometry=gpd.GeoSeries(geoms, crs=crs),
    )
    return frame


def _to_map(geoms_px: np.ndarray, transform: Affine) -> np.ndarray:
    """Apply the pixel-to-map affine to an object array of geometries."""
    a, b, c, d, e, f = transform.a, transform.b, transform.c, transform.d, transform.e, transform.f
    matrix = np.array([[a, d], [b, e]])
    return shapely.transform(geoms_px, lambda xy: xy @ matrix + np.array([c, f]))


def _empty(crs: rasterio.crs.CRS) -> gpd.GeoDataFrame:
    """A frame with the output schema and no rows."""
    return gpd.GeoDataFrame(
        {
            "id": np.array([], dtype=np.int64),
            "area_m2": np.array([], dtype=np.float64),
            "score_mean": np.array([], dtype=np.float64),
            "score_max": np.array([], dtype=np.float64),
        },
        geometry=gpd.GeoSeries([], crs=crs),
    )
