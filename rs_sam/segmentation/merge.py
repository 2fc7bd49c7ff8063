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
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import shapely
from shapely.geometry import box
from shapely.geometry.base import BaseGeometry

from rs_sam.data.grid import ChipWindow, RasterGrid
from rs_sam.segmentation.objects import ChipObject

#: Default IoU, inside the shared area, above which two chips' objects are one object.
MATCH_IOU = 0.5


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
    """Merge every chip's objects into the raster's objects (see the module docstring)."""
    objects: list[ChipObject] = []
    chip_of: list[int] = []
    footprints = [_footprint(window, grid) for window, _ in chips]
    for index, (_, found) in enumerate(chips):
        objects.extend(found)
        chip_of.extend([index] * len(found))
    if not objects:
        return []
    parent = np.arange(len(objects))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = int(parent[i])
        return i

    geometries = np.array([o.geometry for o in objects], dtype=object)
    tree = shapely.STRtree(geometries)
    left, right = tree.query(geometries, predicate="intersects")
    for i, j in zip(left.tolist(), right.tolist(), strict=True):
        if i >= j or chip_of[i] == chip_of[j]:
            continue  # each pair once; a chip's own masks were deduplicated by NMS
        shared = footprints[chip_of[i]].intersection(footprints[chip_of[j]])
        if _iou_within(objects[i].geometry, objects[j].geometry, shared) >= match_iou:
            parent[root(i)] = root(j)

    groups: dict[int, list[int]] = {}
    for i in range(len(objects)):
        groups.setdefault(root(i), []).append(i)
    return [_join([objects[i] for i in members], len({chip_of[i] for i in members}))
            for members in groups.values()]  # fmt: skip


def _footprint(window: ChipWindow, grid: RasterGrid) -> BaseGeometry:
    """The chip's pixels inside the raster, as a map-coordinate box."""
    clipped = window.clipped(grid)
    left, top = grid.transform @ (clipped.col_off, clipped.row_off)
    right, bottom = grid.transform @ (
        clipped.col_off + clipped.width,
        clipped.row_off + clipped.height,
    )
    return box(min(left, right), min(top, bottom), max(left, right), max(top, bottom))


def _iou_within(a: BaseGeometry, b: BaseGeometry, area: BaseGeometry) -> float:
    """IoU of ``a`` and ``b`` restricted to ``area`` (0 when neither reaches it)."""
    a_in, b_in = a.intersection(area), b.intersection(area)
    union = a_in.union(b_in).area
    return a_in.intersection(b_in).area / union if union > 0 else 0.0


def _join(members: list[ChipObject], chips: int) -> MergedObject:
    whole = [o for o in members if not o.cut]
    if whole:
        best = max(whole, key=lambda o: (o.score, o.pixels))
        return MergedObject(best.geometry, best.score, best.stability, chips)
    weights = np.array([o.pixels for o in members], dtype=np.float64)
    return MergedObject(
        geometry=shapely.union_all([o.geometry for o in members]),
        score=float(np.average([o.score for o in members], weights=weights)),
        stability=float(np.average([o.stability for o in members], weights=weights)),
        chips=chips,
    )
