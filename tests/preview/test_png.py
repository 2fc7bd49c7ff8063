"""PNG previews: size cap, polygons drawn where they lie, legend, title, scale bar."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pyproj import CRS

from rs_sam.data.grid import RasterGrid
from rs_sam.preview.png import write_png
from rs_sam.preview.view import (
    MAX_SIDE,
    PLAIN_COLOUR,
    change_view,
    ground_metres_per_pixel,
    round_length,
    scene_view,
)
from tests.helpers.previews import COLS, GREY, ROWS, grey_raster, polygon_frame, read_png, rgb
from tests.helpers.synthetic import ORIGIN


def test_polygon_filled_and_outlined_where_it_lies(tmp_path: Path) -> None:
    image = grey_raster(tmp_path / "grey.tif")
    view = scene_view(image, polygon_frame(), bands=None, nodata=None, workdir=tmp_path,
                      title="A known square")  # fmt: skip
    layout = write_png(view, tmp_path / "p.png")
    picture = read_png(tmp_path / "p.png")
    assert picture.shape[:2] == layout.size[::-1]
    scale = layout.scale  # 200 px enlarged so that the text fits
    assert scale > 1 and view.panels[0].rgb.shape[:2] == (160, 200)
    # Inside: the grey blended with the polygon's colour; outside: the grey untouched.
    inside = picture[layout.to_picture(0, 80, 65)[::-1]]
    expected = 0.65 * GREY + 0.35 * rgb(PLAIN_COLOUR)
    assert np.abs(inside - expected).max() <= 3, inside
    assert np.abs(picture[layout.to_picture(0, 170, 130)[::-1]] - GREY).max() <= 1
    # The outline, in the polygon's own colour, runs along its border and nowhere else.
    outline = np.all(np.abs(picture - rgb(PLAIN_COLOUR)) <= 10, axis=-1)
    x0, y0 = layout.to_picture(0, COLS[0], ROWS[0])
    x1, y1 = layout.to_picture(0, COLS[1], ROWS[1])
    panel_bottom = layout.to_picture(0, 0, 160)[1]
    on_border = outline[y0 - 3 : y1 + 4, x0 - 3 : x1 + 4].sum()
    assert on_border > 2 * (x1 - x0 + y1 - y0)  # the four sides, about 1.5 px wide
    assert outline[:panel_bottom].sum() == on_border  # nowhere else in the panel
    # The legend's swatch, under the panel.
    assert outline[panel_bottom:].sum() > 50


def test_title_legend_and_scale_bar_are_drawn(tmp_path: Path) -> None:
    image = grey_raster(tmp_path / "grey.tif")
    frame = polygon_frame(class_name=["building"])
    titled = scene_view(image, frame, bands=None, nodata=None, workdir=tmp_path, title="Title")
    untitled = scene_view(image, frame, bands=None, nodata=None, workdir=tmp_path, title="")
    layout = write_png(titled, tmp_path / "t.png")
    write_png(untitled, tmp_path / "u.png")
    with_title, without = read_png(tmp_path / "t.png"), read_png(tmp_path / "u.png")
    top = layout.panels[0][1] - 22  # above the panel's own title
    dark = lambda a: int(np.all(a < 60, axis=-1).sum())  # noqa: E731
    assert dark(with_title[: int(top)]) > 40 and dark(without[: int(top)]) == 0
    # Categorical legend: the class's swatch colour under the panel.
    colour = rgb(titled.legend.classes["building"])
    panel_bottom = layout.to_picture(0, 0, 160)[1]
    swatch = np.all(np.abs(with_title[panel_bottom:] - colour) <= 10, axis=-1)
    assert swatch.sum() > 50
    # Scale bar: 500 m at 10 m pixels (a quarter of 2 km is 500 m), white on black, bottom left.
    assert round_length(200 / 4 * ground_metres_per_pixel(titled.grid)) == 500
    x0, y0 = layout.to_picture(0, 0, 120)
    x1, y1 = layout.to_picture(0, 100, 160)
    corner = with_title[y0:y1, x0:x1]
    assert np.all(corner == 255, axis=-1).sum() > 100 and np.all(corner == 0, axis=-1).sum() > 100


def test_score_scale_legend(tmp_path: Path) -> None:
    image = grey_raster(tmp_path / "grey.tif")
    frame = polygon_frame(score_mean=[0.8])
    view = scene_view(image, frame, bands=None, nodata=None, workdir=tmp_path, title="scores")
    assert view.legend.is_scale and view.legend.low < 0.8 < view.legend.high
    layout = write_png(view, tmp_path / "s.png")
    picture = read_png(tmp_path / "s.png")
    panel_bottom = layout.to_picture(0, 0, 160)[1]
    legend = picture[panel_bottom:]
    # plasma runs from dark blue to yellow: both ends are in the colour bar
    assert np.all(np.abs(legend - [13, 8, 135]) <= 25, axis=-1).sum() > 5
    assert np.all(np.abs(legend - [240, 249, 33]) <= 25, axis=-1).sum() > 5


def test_big_pair_is_read_decimated_and_capped(tmp_path: Path) -> None:
    a = grey_raster(tmp_path / "a.tif", height=2500, width=6000, value=60)
    b = grey_raster(tmp_path / "b.tif", height=2500, width=6000, value=200)
    view = change_view(a, b, polygon_frame(), bands=None, nodata=None, workdir=tmp_path,
                       title="big")  # fmt: skip
    # every 6th pixel (ceil(6000 / 1024)): each date at most 1024 wide, side by side
    assert [p.rgb.shape for p in view.panels] == [(417, 1000, 3)] * 2
    assert view.metres_per_pixel == pytest.approx(60)
    layout = write_png(view, tmp_path / "big.png")
    picture = read_png(tmp_path / "big.png")
    assert max(picture.shape[:2]) <= MAX_SIDE and picture.shape[:2] == layout.size[::-1]
    # Date a on the left, date b on the right, at the same place of each panel.
    left, right = layout.to_picture(0, 900, 400), layout.to_picture(1, 900, 400)
    assert np.abs(picture[left[::-1]] - 60).max() <= 1
    assert np.abs(picture[right[::-1]] - 200).max() <= 1


def test_scale_in_a_geographic_crs() -> None:
    grid = RasterGrid(
        CRS.from_epsg(4326), ORIGIN.from_gdal(10, 0.0001, 0, 0.5, 0, -0.0001), 100, 100
    )
    assert ground_metres_per_pixel(grid) == pytest.approx(11.13, rel=0.01)
    assert [round_length(m) for m in (0.7, 9.9, 240, 1999)] == [0.5, 5, 200, 1000]
