"""Join the objects of overlapping chips into one set: no duplicates, no cut objects.

Neighbouring chips overlap, so an object near a chip border is seen by several chips:
whole in some, cut by a chip edge in others. Two objects of different chips are the same
object when, inside the area both chips saw, they cover nearly the same pixels
(IoU >= ``match_iou`` there). Matches are joined transitively (union-find), and each
group becomes one object:

* if a chip saw the object whole (not ``cut``), that view is kept (the best-scored one
  when several chips did): it is complete, and a union with partial views would only
  add their boundary noise;
* otherwise (an object larger than the overlap, cut in every chip) the union of the
  parts, which together cover it.

The outcome depends only on which chips saw which object, never on processing order; an
object seen whole by a chip comes out the same wherever the tiling starts, as long as
some chip contains it with its neighbourhood (objects smaller than the overlap always are).

Everything is counted on the raster's pixel grid, which all chips share: the IoU inside a
shared area is a ratio of pixel counts (one matrix product per pair of overlapping chips
gives every pair of their objects), and each merged object is drawn as a polygon once, at
the end. The cost grows with the pixels of the overlaps and of the objects, not with the
complexity of their outlines.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import shapely
from shapely.geometry import box
from shapely.geometry.base import BaseGeometry

from rs_sam.data.grid import ChipWindow, RasterGrid
from rs_sam.errors import ConfigError
from rs_sam.segmentation.objects import ChipObject
from rs_sam.segmentation.pixel_masks import PixelMask, union_polygon

#: Default IoU, inside the shared area, above which two chips' objects are one object.
MATCH_IOU = 0.5
#: Pixels x objects compared in one product (bounds the memory of a pair of chips).
_PRODUCT_ELEMENTS = 1 << 22


@dataclass(frozen=True)
class MergedObject:
    """One object of the whole raster."""

    geometry: BaseGeometry
    score: float  # of the kept view, or pixel-weighted mean of the joined parts
    stability: float
    chips: int  # how many chips saw it


def merge_objects(
    chips: Sequence[tuple[ChipWindow, Sequence[ChipObject]]],
    grid: RasterGrid,
    *,
    match_iou: float = MATCH_IOU,
) -> list[MergedObject]:
    """Merge every chip's objects into the raster's objects (see the module docstring).

    Raises:
        ConfigError: ``match_iou`` is not in (0, 1].
    """
    if not 0.0 < match_iou <= 1.0:
        raise ConfigError(f"match_iou {match_iou} must be in (0, 1]; the default is {MATCH_IOU}")
    objects = [o for _, found in chips for o in found]
    if not objects:
        return []
    first = np.cumsum([0] + [len(found) for _, found in chips])
    parent = np.arange(len(objects))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = int(parent[i])
        return i

    for a, b, shared in _overlapping_chips([w for w, _ in chips], grid):
        ids_a = _reaching(objects, range(first[a], first[a + 1]), shared)
        ids_b = _reaching(objects, range(first[b], first[b + 1]), shared)
        if not ids_a or not ids_b:
            continue
        iou = _iou_inside(
            [objects[i].mask for i in ids_a], [objects[j].mask for j in ids_b], shared
        )
        for i, j in zip(*np.nonzero(iou >= match_iou), strict=True):
            parent[root(ids_a[i])] = root(ids_b[j])

    chip_of = np.repeat(np.arange(len(chips)), np.diff(first))
    groups: dict[int, list[int]] = {}
    for i in range(len(objects)):
        groups.setdefault(root(i), []).append(i)
    return [
        _join([objects[i] for i in members], len(set(chip_of[members].tolist())), grid)
        for members in groups.values()
    ]


Region = tuple[int, int, int, int]  # rows row0:row1, columns col0:col1 of the raster


def _overlapping_chips(
    windows: Sequence[ChipWindow], grid: RasterGrid
) -> list[tuple[int, int, Region]]:
    """Pairs ``(a, b)`` (a < b) of chips whose pixels inside the raster overlap, and where."""
    regions = []
    for window in windows:
        clipped = window.clipped(grid)
        regions.append(
            (clipped.row_off, clipped.row_off + clipped.height,
             clipped.col_off, clipped.col_off + clipped.width)
        )  # fmt: skip
    boxes = [box(c0, r0, c1, r1) for r0, r1, c0, c1 in regions]
    left, right = shapely.STRtree(boxes).query(boxes, predicate="intersects")
    pairs = []
    for a, b in zip(left.tolist(), right.tolist(), strict=True):
        (ra0, ra1, ca0, ca1), (rb0, rb1, cb0, cb1) = regions[a], regions[b]
        shared = (max(ra0, rb0), min(ra1, rb1), max(ca0, cb0), min(ca1, cb1))
        if a < b and shared[0] < shared[1] and shared[2] < shared[3]:
            pairs.append((a, b, shared))
    return pairs


def _reaching(objects: Sequence[ChipObject], ids: range, region: Region) -> list[int]:
    """The objects among ``ids`` whose bounding box reaches into ``region``."""
    r0, r1, c0, c1 = region
    return [
        i
        for i in ids
        if (m := objects[i].mask).row < r1 and m.bottom > r0 and m.col < c1 and m.right > c0
    ]


def _iou_inside(masks_a: list[PixelMask], masks_b: list[PixelMask], region: Region) -> np.ndarray:
    """(len(a), len(b)) IoU of every pair of masks, counted inside ``region`` (0 if empty)."""
    r0, r1, c0, c1 = region
    inter = np.zeros((len(masks_a), len(masks_b)))
    count_a, count_b = np.zeros(len(masks_a)), np.zeros(len(masks_b))
    rows = max(1, _PRODUCT_ELEMENTS // ((c1 - c0) * max(len(masks_a), len(masks_b))))
    for row in range(r0, r1, rows):
        stop = min(row + rows, r1)
        pixels_a = np.stack([m.region(row, stop, c0, c1).ravel() for m in masks_a])
        pixels_b = np.stack([m.region(row, stop, c0, c1).ravel() for m in masks_b])
        fa, fb = pixels_a.astype(np.float32), pixels_b.astype(np.float32)
        inter += fa @ fb.T  # exact: integer counts well below 2**24 per block
        count_a += fa.sum(1)
        count_b += fb.sum(1)
    union = count_a[:, None] + count_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _join(members: list[ChipObject], chips: int, grid: RasterGrid) -> MergedObject:
    whole = [o for o in members if not o.cut]
    if whole:
        best = max(whole, key=lambda o: (o.score, o.pixels))
        geometry = union_polygon([best.mask], grid.transform)
        return MergedObject(geometry, best.score, best.stability, chips)
    weights = np.array([o.pixels for o in members], dtype=np.float64)
    return MergedObject(
        geometry=union_polygon([o.mask for o in members], grid.transform),
        score=float(np.average([o.score for o in members], weights=weights)),
        stability=float(np.average([o.stability for o in members], weights=weights)),
        chips=chips,
    )
