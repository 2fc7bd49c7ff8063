"""``--preview`` end to end through the CLI: detect-change and segment, PNG and HTML."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
from click.testing import CliRunner

from rs_sam.cli.main import cli
from rs_sam.preview import run as preview_run
from rs_sam.preview.png import layout_for
from rs_sam.preview.view import change_view
from tests.helpers.browser import browse, console_errors
from tests.helpers.previews import raster_on_screen, read_png, rgb
from tests.helpers.stand_ins import use_transparent_model

FAST = ["--weights", "random", "--chip-size", "96", "--overlap", "16", "--points-per-side", "4",
        "--pred-iou-thresh", "0", "--stability-thresh", "0", "-q"]  # fmt: skip


def run(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result.exit_code, result.output


@pytest.fixture
def transparent(monkeypatch: pytest.MonkeyPatch) -> None:
    """detect-change finds the painted rectangle (see tests.helpers.stand_ins)."""
    use_transparent_model(monkeypatch.setattr)


def outline_in_box(picture: np.ndarray, colour: str, box: tuple[int, int, int, int]) -> int:
    """Pixels of ``colour`` (the polygons' outline) inside (x0, y0, x1, y1), 4 px margin."""
    x0, y0, x1, y1 = box
    near = np.all(np.abs(picture[..., :3].astype(int) - rgb(colour)) <= 12, axis=-1)
    return int(near[y0 - 4 : y1 + 5, x0 - 4 : x1 + 5].sum())


def test_detect_change_png_preview(tmp_path: Path, pair_paths, transparent) -> None:
    a, b = pair_paths
    out, preview = tmp_path / "changes.gpkg", tmp_path / "changes.png"
    code, text = run("detect-change", a, b, "-o", out, "--preview", preview, *FAST)
    assert code == 0, text
    polygons = gpd.read_file(out)
    assert len(polygons) >= 1
    view = change_view(a, b, polygons, bands=None, nodata=None, workdir=tmp_path, title="")
    layout = layout_for(view)
    picture = read_png(preview)
    assert picture.shape[:2] == layout.size[::-1]
    colour = view.legend.colours(polygons)[0]
    cols, rows = zip(
        *(~view.grid.transform * xy for xy in polygons.total_bounds.reshape(2, 2)), strict=True
    )
    for panel in (0, 1):  # drawn over both dates
        x0, y1 = layout.to_picture(panel, min(cols), max(rows))
        x1, y0 = layout.to_picture(panel, max(cols), min(rows))
        assert outline_in_box(picture, colour, (x0, y0, x1, y1)) > (x1 - x0 + y1 - y0)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "a.tif", "b.tif", "changes.gpkg", "changes.png"
    ]  # fmt: skip


def test_detect_change_html_preview_in_a_browser(tmp_path: Path, pair_paths, transparent) -> None:
    a, b = pair_paths
    out, preview = tmp_path / "changes.geojson", tmp_path / "changes.html"
    code, text = run("detect-change", a, b, "-o", out, "--preview", preview, *FAST)
    assert code == 0, text
    polygons = gpd.read_file(out)
    shot, console = browse(preview, tmp_path)
    assert console_errors(console) == [], console
    view = change_view(a, b, polygons, bands=None, nodata=None, workdir=tmp_path, title="")
    at = raster_on_screen(shot, view.grid.height, view.grid.width)
    cols, rows = zip(
        *(~view.grid.transform * xy for xy in polygons.total_bounds.reshape(2, 2)), strict=True
    )
    (x0, y0), (x1, y1) = at(min(cols), min(rows)), at(max(cols), max(rows))
    colour = view.legend.colours(polygons)[0]
    assert outline_in_box(shot, colour, (x0, y0, x1, y1)) > (x1 - x0 + y1 - y0)


def test_preview_refusals_and_failures_leave_nothing(
    tmp_path: Path, pair_paths, transparent, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = pair_paths
    out, preview = tmp_path / "changes.gpkg", tmp_path / "changes.png"
    preview.write_bytes(b"old")
    code, text = run("detect-change", a, b, "-o", out, "--preview", preview, *FAST)
    assert code == 2 and text.strip().endswith("exists; pass --overwrite to replace it"), text
    assert len(text.strip().splitlines()) == 1 and not out.exists()
    code, text = run("detect-change", a, b, "-o", out, "--preview", tmp_path / "p.jpg", *FAST)
    assert code == 2 and "must end in .png (a picture) or .html" in text, text
    assert len(text.strip().splitlines()) == 1 and not out.exists()

    def broken(view: object, path: Path) -> None:
        path.write_bytes(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(preview_run, "write_png", broken)
    code, text = run("detect-change", a, b, "-o", out, "--preview", preview, "--overwrite",
                     "--save-probability", tmp_path / "score.tif", *FAST)  # fmt: skip
    assert code != 0 and "no space left" in text, text
    assert preview.read_bytes() == b"old"  # every output path as it was
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tif", "b.tif", "changes.png"]


def test_segment_png_preview(tmp_path: Path, pair_paths, tiny_encoder) -> None:
    out, preview = tmp_path / "objects.gpkg", tmp_path / "objects.png"
    code, text = run("segment", pair_paths[0], "-o", out, "--preview", preview, *FAST)
    assert code == 0, text
    picture = read_png(preview)
    assert 0 < max(picture.shape[:2]) <= 2048
    objects = gpd.read_file(out)
    colours = {c for c in (picture.reshape(-1, 3) @ [65536, 256, 1]).tolist()}
    assert len(objects) and len(colours) > 100  # the image and the polygons, not a blank
