"""Shared pieces of the preview tests: a grey raster, a known polygon, reading pictures."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import geopandas as gpd
import numpy as np
from matplotlib.image import imread
from shapely.geometry import box

from tests.helpers.synthetic import ORIGIN, UTM33, write_raster

GREY = 128
#: The known polygon, in pixels of the test raster: columns 40..120, rows 30..100.
COLS, ROWS = (40, 120), (30, 100)
BACKGROUND = (0x2B, 0x2B, 0x2B)  # the HTML page's map background


def polygon_frame(**columns: list[object]) -> gpd.GeoDataFrame:
    """The known polygon (with these attribute columns) in the test raster's CRS."""
    (x0, y0), (x1, y1) = ORIGIN * (COLS[0], ROWS[0]), ORIGIN * (COLS[1], ROWS[1])
    return gpd.GeoDataFrame(columns, geometry=[box(x0, y1, x1, y0)], crs=UTM33)


def grey_raster(path: Path, height: int = 160, width: int = 200, value: int = GREY) -> Path:
    return write_raster(path, np.full((3, height, width), value, np.uint8))


def read_png(path: Path) -> np.ndarray:
    """(H, W, 3) int32 RGB of a PNG."""
    return (imread(path)[..., :3] * 255).round().astype(np.int32)


def rgb(colour: str) -> np.ndarray:
    return np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)])


def raster_on_screen(shot: np.ndarray, height: int, width: int) -> Callable[..., tuple[int, int]]:
    """Screen position of raster pixel (column, row) in a screenshot of an HTML preview: the
    image fills the fitted bounds, centred."""
    image = np.any(np.abs(shot.astype(int) - BACKGROUND) > 8, axis=-1)
    rows = np.nonzero(image.mean(axis=1) > 0.4)[0]  # controls and the divider are narrower
    top, bottom = rows.min(), rows.max() + 1
    scale = (bottom - top) / height
    left = shot.shape[1] / 2 - width * scale / 2
    return lambda col, row: (int(left + col * scale), int(top + row * scale))
