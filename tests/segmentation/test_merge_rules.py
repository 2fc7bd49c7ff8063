"""The merge rules of ``--mode anything`` with stand-ins that make them matter.

``blobs`` gives every chip the same pixel-exact masks and its objects never touch, so there
the rules are vacuous. Here the views of a cut object are wrong at the chip edge (the whole
view must win) and touching objects' masks overlap (they must stay two).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely
from shapely.geometry import box

from rs_sam.segmentation.anything import segment_anything
from rs_sam.segmentation.objects import ChipMask, MaskGenerator
from rs_sam.segmentation.settings import SegmentSettings
from tests.helpers.stand_ins import blobs, grown_regions, ragged_at_chip_edges
from tests.helpers.synthetic import ORIGIN, write_raster

# chip 64, overlap 16: chips start at pixel 0, 48, 96, ...


def _dark(height: int = 120, width: int = 130) -> np.ndarray:
    return np.random.default_rng(1).integers(20, 120, (3, height, width)).astype(np.uint8)


def _objects(tmp_path: Path, image: np.ndarray, generator: MaskGenerator) -> gpd.GeoDataFrame:
    out = tmp_path / "objects.gpkg"
    segment_anything(
        write_raster(tmp_path / "img.tif", image),
        out,
        settings=SegmentSettings(chip_size=64, overlap=16),
        generator=generator,
        show_progress=False,
    )
    return gpd.read_file(out)


def _map_box(rows: slice, cols: slice) -> shapely.Polygon:
    left, top = ORIGIN * (cols.start, rows.start)
    right, bottom = ORIGIN * (cols.stop, rows.stop)
    return box(min(left, right), min(top, bottom), max(left, right), max(top, bottom))


def test_the_whole_view_wins_over_views_cut_by_the_chip_edge(tmp_path: Path) -> None:
    image = _dark()
    # cut by the first chip's right edge (col 63), by the second row of chips' top edge
    # (row 48), and seen whole by the chip at row 0, col 48
    rows, cols = slice(30, 55), slice(55, 75)
    image[:, rows, cols] = 250

    def ragged(chip: np.ndarray) -> Iterator[ChipMask]:
        return ragged_at_chip_edges(blobs(chip))

    found = _objects(tmp_path, image, ragged)
    assert len(found) == 1
    truth = _map_box(rows, cols)
    assert found.geometry[0].symmetric_difference(truth).area < 1e-6  # no ragged rim joined


def test_touching_objects_with_a_small_overlap_stay_two(tmp_path: Path) -> None:
    image = _dark()
    # both across the first vertical chip border (cols 48..63 are seen by two chips),
    # side by side: their one-pixel-grown masks overlap by two columns
    left, right = slice(40, 60), slice(60, 80)
    image[:, 20:40, left] = 250
    image[:, 20:40, right] = 230
    found = _objects(tmp_path, image, grown_regions)
    assert len(found) == 2
    overlap = found.geometry[0].intersection(found.geometry[1]).area
    assert 0 < overlap < 0.5 * min(found.area)  # they do overlap, far below the match IoU
    for cols in (left, right):
        truth = _map_box(slice(20, 40), cols)
        assert sum(g.contains(truth) for g in found.geometry) == 1
