"""A synthetic change scene with known objects, and its proposals as a polygon file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely

from tests.helpers.synthetic import ORIGIN, UTM33, texture, write_raster


@dataclass(frozen=True)
class Scene:
    a: Path
    b: Path
    truth: np.ndarray  # (H, W) uint8 0/1: the painted changes
    boxes: list[tuple[int, int, int, int]]  # (row, col, height, width) of each change


def change_scene(folder: Path, *, size: int = 128, count: int = 4, seed: int = 0) -> Scene:
    """A uint8 RGB pair whose later date has ``count`` bright rectangles painted in."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    image = (texture(size, size, seed=seed) * 120 + 40).astype(np.uint8)
    later, truth = image.copy(), np.zeros((size, size), np.uint8)
    boxes = []
    cell = size // 2
    for i in range(count):  # one per quadrant (of a 2 x 2 grid): they never touch
        top, left = (i // 2) * cell, (i % 2) * cell
        height, width = rng.integers(cell // 4, cell // 2, size=2)
        row, col = top + int(rng.integers(4, cell - height - 4)), left + 4 + i
        later[:, row : row + height, col : col + width] = 240
        truth[row : row + height, col : col + width] = 1
        boxes.append((row, col, int(height), int(width)))
    a = write_raster(folder / "a.tif", image)
    b = write_raster(folder / "b.tif", later)
    return Scene(a, b, truth, boxes)


def box_polygon(row: int, col: int, height: int, width: int) -> shapely.Polygon:
    """The map polygon of a pixel box on :data:`ORIGIN`'s grid."""
    left, top = ORIGIN @ (col, row)
    right, bottom = ORIGIN @ (col + width, row + height)
    return shapely.box(left, bottom, right, top)


def proposals_file(
    path: Path, boxes: list[tuple[int, int, int, int]], scores: list[float], crs: object = UTM33
) -> Path:
    """The boxes as polygons with a ``score`` column, written in ``crs``."""
    gdf = gpd.GeoDataFrame(
        {"score": scores}, geometry=[box_polygon(*b) for b in boxes], crs=UTM33
    ).to_crs(crs)
    gdf.to_file(path, driver="GPKG", engine="pyogrio")
    return path
