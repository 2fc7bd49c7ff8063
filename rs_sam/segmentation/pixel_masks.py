"""Object masks on the raster's pixel grid, and their outlines drawn once.

A chip's object is kept as its mask's bounding box in raster pixels plus the packed bits
of the box (an eighth of a byte per pixel), not as a polygon: objects of different chips
are compared and joined pixel by pixel (chips share the raster's grid, so their pixels
coincide), and a merged object is polygonised once, at the end, block by block.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import rasterio.features
import shapely
from affine import Affine
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

#: Side of the square blocks in which a union of masks is built and polygonised.
POLYGON_BLOCK = 2048


@dataclass(frozen=True)
class PixelMask:
    """A non-empty boolean mask: its bounding box in raster pixels and the box's packed bits."""

    row: int
    col: int
    height: int
    width: int
    bits: np.ndarray  # np.packbits of the (height, width) box, row-major

    @classmethod
    def from_array(cls, mask: np.ndarray, row_off: int, col_off: int) -> PixelMask | None:
        """The mask of a bool array whose pixel (0, 0) is raster pixel (row_off, col_off)."""
        rows = np.flatnonzero(mask.any(1))
        if len(rows) == 0:
            return None
        cols = np.flatnonzero(mask.any(0))
        r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        return cls(
            row=row_off + int(r0),
            col=col_off + int(c0),
            height=int(r1 - r0),
            width=int(c1 - c0),
            bits=np.packbits(mask[r0:r1, c0:c1], axis=None),
        )

    @property
    def bottom(self) -> int:
        return self.row + self.height

    @property
    def right(self) -> int:
        return self.col + self.width

    def array(self) -> np.ndarray:
        """The (height, width) bool box."""
        size = self.height * self.width
        return np.unpackbits(self.bits, count=size).view(bool).reshape(self.height, self.width)

    def region(self, row0: int, row1: int, col0: int, col1: int) -> np.ndarray:
        """The mask over raster rows ``row0:row1`` and columns ``col0:col1`` (False outside)."""
        out = np.zeros((row1 - row0, col1 - col0), dtype=bool)
        r0, r1 = max(row0, self.row), min(row1, self.bottom)
        c0, c1 = max(col0, self.col), min(col1, self.right)
        if r0 < r1 and c0 < c1:
            box = self.array()
            out[r0 - row0 : r1 - row0, c0 - col0 : c1 - col0] = box[
                r0 - self.row : r1 - self.row, c0 - self.col : c1 - self.col
            ]
        return out


def union_polygon(
    masks: Sequence[PixelMask], transform: Affine, *, block: int = POLYGON_BLOCK
) -> BaseGeometry:
    """The (multi)polygon of the union of ``masks``, in map coordinates through ``transform``.

    Built and polygonised in square blocks of the union's bounding box (memory depends on
    ``block``, not on the object), in pixel coordinates so that the pieces of neighbouring
    blocks share their edges exactly; they are joined as a coverage, and ``transform`` is
    applied once. Connectivity is 4, as in :func:`rasterio.features.shapes`.
    """
    top, left = min(m.row for m in masks), min(m.col for m in masks)
    bottom, right = max(m.bottom for m in masks), max(m.right for m in masks)
    pieces: list[BaseGeometry] = []
    blocks = 0
    for row in range(top, bottom, block):
        for col in range(left, right, block):
            r1, c1 = min(row + block, bottom), min(col + block, right)
            pixels = np.zeros((r1 - row, c1 - col), dtype=bool)
            for mask in masks:
                if mask.row < r1 and mask.bottom > row and mask.col < c1 and mask.right > col:
                    pixels |= mask.region(row, r1, col, c1)
            found = _block_polygons(pixels, row, col)
            pieces.extend(found)
            blocks += bool(found)
    if len(pieces) == 1:
        geometry = pieces[0]
    elif blocks == 1:  # one block's 4-connected parts: disjoint, at most touching at corners
        geometry = shapely.MultiPolygon(pieces)
    else:
        seams = shapely.MultiLineString(_seams(top, bottom, left, right, block))
        geometry = _join_at_seams(pieces, shapely.intersects(pieces, seams))
    a, b, c, d, e, f = transform[:6]
    return shapely.transform(geometry, lambda xy: xy @ np.array([[a, d], [b, e]]) + (c, f))


def _seams(top: int, bottom: int, left: int, right: int, block: int) -> list[list[tuple]]:
    """The inner block borders of a bounding box, as lines in pixel coordinates."""
    lines = [[(col, top), (col, bottom)] for col in range(left + block, right, block)]
    return lines + [[(left, row), (right, row)] for row in range(top + block, bottom, block)]


def _join_at_seams(pieces: list[BaseGeometry], on_seam: np.ndarray) -> BaseGeometry:
    """The union of block pieces (disjoint polygons), overlaying only what crosses a seam.

    A piece's holes never touch its block's border, so only the hole-free shells of the
    pieces on a seam are unioned (assigning a huge object's many holes to its shell is
    what makes an overlay super-linear); each piece's holes then go back into the joined
    polygon that contains the piece. Pieces off the seams are disjoint from all others.
    """
    crossing = [p for p, hit in zip(pieces, on_seam, strict=True) if hit]
    kept = [p for p, hit in zip(pieces, on_seam, strict=True) if not hit]
    shells = shapely.polygons(shapely.get_exterior_ring(crossing))
    joined = list(shapely.get_parts(shapely.union_all(shells)))
    owner, target = shapely.STRtree(joined).query(
        shapely.point_on_surface(crossing), predicate="within"
    )
    holes: list[list[shapely.LinearRing]] = [list(p.interiors) for p in joined]
    for i, k in zip(owner.tolist(), target.tolist(), strict=True):
        holes[k].extend(crossing[i].interiors)
    rebuilt = [
        shapely.Polygon(p.exterior, ring_list) for p, ring_list in zip(joined, holes, strict=True)
    ]
    parts = rebuilt + kept
    return parts[0] if len(parts) == 1 else shapely.MultiPolygon(parts)


def _block_polygons(pixels: np.ndarray, row: int, col: int) -> list[BaseGeometry]:
    """Polygons of a block's pixels, in raster pixel coordinates (x = column, y = row)."""
    if not pixels.any():
        return []
    offset = Affine.translation(col, row)
    return [
        shape(g)
        for g, _ in rasterio.features.shapes(
            pixels.view(np.uint8), mask=pixels, connectivity=4, transform=offset
        )
    ]
