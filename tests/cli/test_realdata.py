"""Real imagery from RS_SAM_DATA_DIR (skipped with a reason when it is unset).

Random weights: these tests check that real files (mismatched grids, other CRSs, per-band
uint16 files) go through the whole pipeline to valid vectors, not model quality.
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

from rs_sam.cli.main import cli

pytestmark = pytest.mark.slow  # full-size real rasters

FAST = ["--weights", "random", "--points-per-side", "4", "--pred-iou-thresh", "0",
        "--stability-thresh", "0", "--threshold", "1", "-q"]  # fmt: skip


def _run(*args: object) -> None:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output


def test_naip_2009_vs_2020(data_dir: Path, tmp_path: Path, tiny_encoder) -> None:
    folder = data_dir / "rasters" / "naip"
    a = folder / "m_4709963_se_14_1_20090818.tif"
    b = folder / "m_4709963_se_14_1_20200831.tif"
    out, prob = tmp_path / "naip.gpkg", tmp_path / "naip.tif"
    _run("detect-change", a, b, "-o", out, "--save-probability", prob, "--chip-size", "256",
         "--overlap", "32", *FAST)  # fmt: skip
    polygons = gpd.read_file(out)
    with rasterio.open(a) as src_a, rasterio.open(prob) as src_p:
        assert polygons.crs == src_a.crs  # EPSG:26914
        # The two grids differ by 1-3 m and a row: the output is on a's grid, inside a.
        assert src_p.crs == src_a.crs and src_p.res == src_a.res
        offset = ~src_a.transform * (src_p.transform.c, src_p.transform.f)
        assert np.allclose(offset, np.round(offset), atol=1e-6)
        assert src_p.width <= src_a.width and src_p.height <= src_a.height
    assert len(polygons) > 0 and polygons.is_valid.all()
    assert (polygons.area_m2 > 0).all()


def test_oscd_band_files_in_geographic_crs(data_dir: Path, tmp_path: Path, tiny_encoder) -> None:
    city = data_dir / "change" / "oscd" / "images" / "saclay_e"

    def rgb(folder: str) -> str:
        files = sorted((city / folder).glob("*.tif"))
        by_band = {f.stem[-3:]: f for f in files}
        return ",".join(str(by_band[band]) for band in ("B04", "B03", "B02"))

    out = tmp_path / "saclay.gpkg"
    _run("detect-change", rgb("imgs_1"), rgb("imgs_2"), "-o", out, "--chip-size", "256",
         "--overlap", "32", "--min-area", "2000m2", *FAST)  # fmt: skip
    polygons = gpd.read_file(out)
    assert polygons.crs.to_epsg() == 4326
    assert len(polygons) > 0
    # Sentinel-2 pixels are ~10 m (~100 m2): areas are geodesic square metres, not degrees².
    assert (polygons.area_m2 >= 2000).all()
    reprojected = polygons.to_crs(polygons.estimate_utm_crs()).area
    np.testing.assert_allclose(polygons.area_m2, reprojected, rtol=0.01)
