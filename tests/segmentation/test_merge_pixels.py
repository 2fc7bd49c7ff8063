"""The pixel-grid merge gives the objects of the polygon rule it replaced.

The oracle below is the rule written directly with polygons (shapely): each chip's masks
drawn as polygons, the IoU of two chips' objects measured on polygon areas inside the
chips' shared footprint, union-find, the best whole view kept, else the union of the cut
parts. Random scenes make every branch happen: objects cut by chip edges, objects seen
whole, objects larger than a chip, touching and overlapping objects, ragged views.
"""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from affine import Affine
from rasterio.crs import CRS
from shapely.geometry import box

from rs_sam.data.grid import ChipWindow, RasterGrid, chip_windows
from rs_sam.errors import ConfigError
from rs_sam.segmentation.merge import merge_objects
from rs_sam.segmentation.objects import ChipMask, chip_objects, mask_polygon
from rs_sam.segmentation.pixel_masks import PixelMask, union_polygon

GRID = RasterGrid(CRS.from_epsg(32633), Affine(0.5, 0, 500_000, 0, -0.5, 5_000_000), 230, 200)


def _scene(seed: int) -> list[tuple[ChipWindow, list[ChipMask]]]:
    """Per chip: the raster's blobs as the chip sees them, each view a little ragged."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[: GRID.height, : GRID.width]
    blobs = []
    for _ in range(14):
        cy, cx = rng.uniform(0, GRID.height), rng.uniform(0, GRID.width)
        ry, rx = rng.uniform(3, 70, size=2)
        blobs.append(((ys - cy) / ry) ** 2 + ((xs - cx) / rx) ** 2 <= 1.0)
    chips = []
    for window in chip_windows(GRID, 64, 16):
        masks = []
        for blob in blobs:
            view = np.zeros((64, 64), dtype=bool)
            part = blob[window.row_off : window.row_off + 64, window.col_off : window.col_off + 64]
            view[: part.shape[0], : part.shape[1]] = part
            if not view.any():
                continue
            if rng.random() < 0.5:  # grown by a pixel: the view differs between chips
                view = _grown(view)
            score, stability = rng.uniform(0.5, 1.0, size=2)
            masks.append(ChipMask(view, float(score), float(stability)))
        chips.append((window, masks))
    return chips


def _grown(view: np.ndarray) -> np.ndarray:
    grown = view.copy()
    grown[1:] |= view[:-1]
    grown[:-1] |= view[1:]
    grown[:, 1:] |= view[:, :-1]
    grown[:, :-1] |= view[:, 1:]
    return grown


def _polygon_rule(scene, match_iou):
    """The merge rule on polygons, as it was written before masks stayed on the grid."""
    views = []  # (chip, geometry, score, stability, pixels, cut)
    for chip, (window, masks) in enumerate(scene):
        valid = np.zeros((64, 64), dtype=bool)
        clipped = window.clipped(GRID)
        valid[: clipped.height, : clipped.width] = True
        for found, item in zip(chip_objects(iter(masks), window, valid, GRID), masks, strict=False):
            del item
            geometry = mask_polygon(found.mask.array(), _transform_of(found.mask))
            views.append((chip, geometry, found.score, found.stability, found.pixels, found.cut))
    footprints = [_footprint(w) for w, _ in scene]
    parent = list(range(len(views)))

    def root(i):
        while parent[i] != i:
            i = parent[i]
        return i

    for i in range(len(views)):
        for j in range(i + 1, len(views)):
            if views[i][0] == views[j][0]:
                continue
            shared = footprints[views[i][0]].intersection(footprints[views[j][0]])
            a, b = (
                _areal(views[i][1].intersection(shared)),
                _areal(views[j][1].intersection(shared)),
            )
            union = a.union(b).area
            if union > 0 and a.intersection(b).area / union >= match_iou:
                parent[root(i)] = root(j)
    groups = {}
    for i in range(len(views)):
        groups.setdefault(root(i), []).append(views[i])
    out = []
    for members in groups.values():
        whole = [m for m in members if not m[5]]
        if whole:
            best = max(whole, key=lambda m: (m[2], m[4]))
            out.append((best[1], best[2]))
        else:
            weights = [m[4] for m in members]
            score = float(np.average([m[2] for m in members], weights=weights))
            out.append((shapely.union_all([m[1] for m in members]), score))
    return out


def _areal(geometry):
    """The polygons of an overlay result (dropping the lines where it touches the box)."""
    parts = [p for p in shapely.get_parts(geometry) if p.geom_type in ("Polygon", "MultiPolygon")]
    return shapely.union_all(parts) if parts else shapely.Polygon()


def _transform_of(mask: PixelMask) -> Affine:
    return GRID.transform * Affine.translation(mask.col, mask.row)


def _footprint(window: ChipWindow):
    clipped = window.clipped(GRID)
    left, top = GRID.transform * (clipped.col_off, clipped.row_off)
    right, bottom = GRID.transform * (
        clipped.col_off + clipped.width,
        clipped.row_off + clipped.height,
    )
    return box(left, bottom, right, top)


def _merged(scene, match_iou):
    chips = []
    for window, masks in scene:
        valid = np.zeros((64, 64), dtype=bool)
        clipped = window.clipped(GRID)
        valid[: clipped.height, : clipped.width] = True
        chips.append((window, chip_objects(iter(masks), window, valid, GRID)))
    return merge_objects(chips, GRID, match_iou=match_iou)


@pytest.mark.parametrize(("seed", "match_iou"), [(0, 0.5), (1, 0.5), (2, 0.2), (3, 0.9)])
def test_the_objects_are_those_of_the_polygon_rule(seed: int, match_iou: float) -> None:
    scene = _scene(seed)
    merged = _merged(scene, match_iou)
    expected = _polygon_rule(scene, match_iou)
    assert len(merged) == len(expected)
    assert sum(o.chips > 1 for o in merged) > 0  # joins happened
    unmatched = list(expected)
    for found in merged:
        assert found.geometry.is_valid
        hits = [
            k
            for k, (geometry, score) in enumerate(unmatched)
            if found.geometry.symmetric_difference(geometry).area < 1e-9
            and score == pytest.approx(found.score)
        ]
        assert hits, "a merged object has no equal in the polygon rule"
        unmatched.pop(hits[0])
    assert not unmatched


@pytest.mark.parametrize(("density", "block"), [(0.3, 16), (0.55, 16), (0.55, 7), (0.75, 33)])
def test_union_polygon_by_blocks_equals_one_block(density: float, block: int) -> None:
    rng = np.random.default_rng(5)
    pixels = rng.random((90, 110)) < density  # many parts, holes, islands, corner contacts
    mask = PixelMask.from_array(pixels, 7, 11)
    assert mask is not None and np.array_equal(
        mask.array(), pixels[mask.row - 7 :][: mask.height, mask.col - 11 :][:, : mask.width]
    )
    whole = union_polygon([mask], GRID.transform)
    blocks = union_polygon([mask], GRID.transform, block=block)
    assert whole.symmetric_difference(blocks).area < 1e-9
    assert whole.area == pytest.approx(pixels.sum() * 0.25)
    assert blocks.is_valid


def test_match_iou_outside_0_1_is_refused() -> None:
    with pytest.raises(ConfigError, match="match_iou"):
        merge_objects([], GRID, match_iou=0.0)
