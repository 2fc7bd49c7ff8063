"""``rs-sam segment --mode prompt`` and ``rs-sam sam-objects`` on a tiny random SAM."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import rasterio
from click.testing import CliRunner
from shapely.geometry import Point, box

from rs_sam.cli.main import cli
from tests.helpers.synthetic import ORIGIN, UTM33


def run(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result.exit_code, result.output


def _prompts(path: Path, crs=UTM33) -> Path:
    x0, y0 = ORIGIN * (50, 40)  # pixel col 50, row 40
    rows = [
        {"id": 1, "label": 1, "group": None, "geometry": Point(x0, y0)},
        {"id": 2, "label": 1, "group": "g", "geometry": Point(x0 + 300, y0 - 300)},
        {"id": 3, "label": 0, "group": "g", "geometry": Point(x0 + 600, y0 - 300)},
        {"id": 4, "label": 1, "group": None, "geometry": box(x0, y0 - 500, x0 + 400, y0 - 100)},
        {"id": 5, "label": 1, "group": None, "geometry": Point(x0 + 1e6, y0)},  # outside
    ]
    frame = gpd.GeoDataFrame(rows, geometry="geometry", crs=UTM33)
    if crs is None:
        frame = frame.set_crs(None, allow_override=True)
    else:
        frame = frame.to_crs(crs)
    frame.to_file(path)
    return path


def test_prompt_mode_one_polygon_per_prompt(tmp_path: Path, pair_paths, tiny_encoder) -> None:
    image = pair_paths[0]
    prompts = _prompts(tmp_path / "prompts.gpkg", crs="EPSG:4326")
    out = tmp_path / "masks.gpkg"
    code, text = run("segment", image, "--mode", "prompt", "--prompts", prompts, "-o", out,
                     "--weights", "random", "--chip-size", "128", "--context", "32")  # fmt: skip
    assert code == 0, text
    warning = [line for line in text.splitlines() if "outside the raster" in line]
    assert len(warning) == 1 and warning[0].endswith("skipped: ids 5"), text
    found = gpd.read_file(out)
    assert list(found.columns) == [
        "id", "prompt_id", "mask_index", "score", "area_m2", "geometry"
    ]  # fmt: skip
    assert found.crs.to_epsg() == 32633
    assert sorted(found["prompt_id"].astype(str)) == ["1", "4", "g"]  # one each, 5 skipped
    with rasterio.open(image) as src:
        extent = box(*src.bounds)
    assert all(extent.buffer(1e-6).contains(g) for g in found.geometry)
    out_all = tmp_path / "all.gpkg"
    code, text = run("segment", image, "--mode", "prompt", "--prompts", prompts, "-o", out_all,
                     "--weights", "random", "--chip-size", "128", "--multimask", "all",
                     "-q")  # fmt: skip
    assert code == 0, text
    assert len(gpd.read_file(out_all)) > len(found)


def test_prompt_mode_errors(tmp_path: Path, pair_paths, tiny_encoder) -> None:
    image = pair_paths[0]
    out = tmp_path / "masks.gpkg"
    code, text = run("segment", image, "--mode", "prompt", "-o", out, "--weights", "random")
    assert code == 2 and "--mode prompt needs --prompts" in text
    no_crs = _prompts(tmp_path / "nocrs.geojson", crs=None)
    code, text = run("segment", image, "--mode", "prompt", "--prompts", no_crs, "-o", out,
                     "--weights", "random", "-q")  # fmt: skip
    assert code != 0 and "CRS" in text and len(text.strip().splitlines()) == 1
    assert not out.exists()


def test_sam_objects_cli(tmp_path: Path, pair_paths, tiny_encoder) -> None:
    ids, edges = tmp_path / "sgo.tif", tmp_path / "sgb.tif"
    code, text = run("sam-objects", pair_paths[0], "-o", ids, "--boundary", edges,
                     "--weights", "random", "--chip-size", "128", "--points-per-side", "4",
                     "--pred-iou-thresh", "0", "--stability-thresh", "0", "--min-area", "0",
                     "-q")  # fmt: skip
    assert code == 0, text
    with rasterio.open(ids) as src, rasterio.open(pair_paths[0]) as ref:
        assert src.transform == ref.transform and src.dtypes[0] == "uint32"
        assert src.read(1).max() > 0
    code, text = run("sam-objects", pair_paths[0], "-o", tmp_path / "x.png",
                     "--weights", "random", "-q")  # fmt: skip
    assert code == 2 and "must end in .tif" in text
