"""Tests for rs_sam.data.grid: chip windows cover the grid exactly as documented."""

from __future__ import annotations

import numpy as np
import pytest
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window

from rs_sam.data.grid import ChipWindow, RasterGrid, chip_windows
from rs_sam.errors import ConfigError, InputRasterError, RsSamError


def make_grid(width: int, height: int) -> RasterGrid:
    return RasterGrid(
        crs=CRS.from_epsg(32633),
        transform=Affine(10.0, 0.0, 500_000.0, 0.0, -10.0, 4_600_000.0),
        width=width,
        height=height,
    )


@pytest.mark.parametrize(
    ("width", "height", "chip", "overlap"),
    [(437, 300, 128, 32), (256, 256, 128, 0), (1000, 97, 64, 31), (129, 129, 128, 16)],
)
def test_every_pixel_covered_and_edges_padded(width: int, height: int, chip: int, overlap: int):
    grid = make_grid(width, height)
    windows = chip_windows(grid, chip, overlap)
    coverage = np.zeros((height, width), dtype=np.int32)
    stride = chip - overlap
    for i, w in enumerate(windows):
        assert w.index == i
        assert w.size == chip
        assert w.row_off % stride == 0 and w.col_off % stride == 0
        clip = w.clipped(grid)
        coverage[
            clip.row_off : clip.row_off + clip.height, clip.col_off : clip.col_off + clip.width
        ] += 1
    assert coverage.min() >= 1
    # Last row/column of chips reaches (and, unless it fits exactly, passes) the edge.
    assert max(w.col_off + w.size for w in windows) >= width
    assert max(w.row_off + w.size for w in windows) >= height
    # ... and no chip is superfluous: every chip starts inside the grid.
    assert all(w.col_off < width and w.row_off < height for w in windows)
    # The second-to-last chip does not reach the edge (the last one is needed).
    cols = sorted({w.col_off for w in windows})
    if len(cols) > 1:
        assert cols[-2] + chip < width


def test_counts_match_ceil_formula():
    grid = make_grid(437, 300)
    windows = chip_windows(grid, 128, 32)
    rows = sorted({w.row_off for w in windows})
    cols = sorted({w.col_off for w in windows})
    assert rows == [0, 96, 192]  # ceil((300 - 128) / 96) + 1 = 3
    assert cols == [0, 96, 192, 288, 384]  # ceil((437 - 128) / 96) + 1 = 5
    assert len(windows) == 15


def test_deterministic_row_major():
    grid = make_grid(437, 300)
    first = chip_windows(grid, 128, 32)
    assert first == chip_windows(grid, 128, 32)
    keys = [(w.row_off, w.col_off) for w in first]
    assert keys == sorted(keys)


def test_tiny_grid_gives_one_padded_chip():
    grid = make_grid(50, 20)
    (only,) = chip_windows(grid, 128, 32)
    assert (only.row_off, only.col_off, only.size, only.index) == (0, 0, 128, 0)
    assert only.clipped(grid) == Window(0, 0, 50, 20)


@pytest.mark.parametrize(("chip", "overlap"), [(128, 64), (128, 100), (128, -1), (0, 0), (10, 5)])
def test_bad_overlap_or_size_raises_config_error(chip: int, overlap: int):
    with pytest.raises(ConfigError) as err:
        chip_windows(make_grid(100, 100), chip, overlap)
    assert isinstance(err.value, ValueError) and isinstance(err.value, RsSamError)


def test_window_transform_and_bounds():
    grid = make_grid(437, 300)
    w = ChipWindow(row_off=96, col_off=192, size=128, index=7)
    assert grid.window_transform(w) @ (0, 0) == (500_000.0 + 1920.0, 4_600_000.0 - 960.0)
    assert grid.bounds() == (500_000.0, 4_600_000.0 - 3000.0, 500_000.0 + 4370.0, 4_600_000.0)
    assert grid.res == (10.0, 10.0)


def test_rotated_grid_rejected():
    with pytest.raises(InputRasterError, match="north-up"):
        RasterGrid(
            crs=CRS.from_epsg(32633),
            transform=Affine(10.0, 1.0, 0.0, 0.0, -10.0, 0.0),
            width=10,
            height=10,
        )
