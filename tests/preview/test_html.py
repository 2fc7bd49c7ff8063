"""HTML previews in a real headless browser (chromium), with every host unreachable."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from rs_sam.preview.html import write_html
from rs_sam.preview.view import PLAIN_COLOUR, change_view, scene_view
from tests.helpers.browser import browse, console_errors
from tests.helpers.previews import COLS, ROWS, grey_raster, polygon_frame, raster_on_screen, rgb


def test_page_opens_offline_and_draws_the_polygon(tmp_path: Path) -> None:
    image = grey_raster(tmp_path / "grey.tif")
    frame = polygon_frame(id=[7], note=["</script><b>x"])  # attributes are escaped
    view = scene_view(image, frame, bands=None, nodata=None, workdir=tmp_path, title="One square")
    write_html(view, tmp_path / "page.html")
    # No element loads anything from elsewhere (script and style bodies are inline).
    page = re.sub(
        r"(?s)<(script|style)\b([^>]*)>.*?</\1>", r"<\1\2>", (tmp_path / "page.html").read_text()
    )
    assert page.count("<script") == 3 and not re.search(r"(src|href)=", page), page
    shot, console = browse(tmp_path / "page.html", tmp_path)
    assert console_errors(console) == [], console
    assert any("rs-sam preview ready" in line for line in console), console  # script ran
    at = raster_on_screen(shot, 160, 200)
    outline = np.all(np.abs(shot.astype(int) - rgb(PLAIN_COLOUR)) <= 12, axis=-1)
    (x0, y0), (x1, y1) = at(COLS[0], ROWS[0]), at(COLS[1], ROWS[1])
    border = outline[y0 - 4 : y1 + 5, x0 - 4 : x1 + 5].sum()
    assert border > 2 * (x1 - x0 + y1 - y0)  # the outline, 2 px wide, on the four sides
    cx, cy = at(80, 65)
    inside = shot[cy, cx].astype(int)
    assert np.abs(inside - (0.65 * 128 + 0.35 * rgb(PLAIN_COLOUR))).max() <= 6, inside
    gx, gy = at(170, 130)
    assert np.abs(shot[gy, gx].astype(int) - 128).max() <= 2  # outside: the raster's grey


def test_change_page_swipes_between_dates(tmp_path: Path) -> None:
    a = grey_raster(tmp_path / "a.tif", value=60)
    b = grey_raster(tmp_path / "b.tif", value=200)
    view = change_view(a, b, polygon_frame(score_mean=[0.9]), bands=None, nodata=None,
                       workdir=tmp_path, title="swipe")  # fmt: skip
    write_html(view, tmp_path / "change.html")
    shot, console = browse(tmp_path / "change.html", tmp_path)
    assert console_errors(console) == [], console
    at = raster_on_screen(shot, 160, 200)
    # The slider starts in the middle: date a left of it, date b right of it.
    for col, value in ((15, 60), (90, 60), (110, 200), (185, 200)):
        x, y = at(col, 140)
        assert np.abs(shot[y, x].astype(int) - value).max() <= 2, (col, shot[y, x])
    colour = rgb(view.legend.colours(view.polygons)[0])
    outline = np.all(np.abs(shot.astype(int) - colour) <= 12, axis=-1)
    (x0, y0), (x1, y1) = at(COLS[0], ROWS[0]), at(COLS[1], ROWS[1])
    assert outline[y0 - 4 : y1 + 5, x0 - 4 : x1 + 5].sum() > 2 * (x1 - x0 + y1 - y0)
