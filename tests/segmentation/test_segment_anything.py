"""``segment --mode anything``: per-chip objects, merging across chips, extent independence.

A deterministic mask generator (connected bright blobs of the chip) stands in for SAM in
the tiling tests: what is checked is that objects cut by chip borders come out whole,
once, whatever the tiling; the SAM generator itself runs in the CLI test.
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio.features
import shapely
from affine import Affine
from shapely.geometry import shape

from rs_sam.segmentation.anything import segment_anything
from rs_sam.segmentation.settings import SegmentSettings
from rs_sam.vector.polygonize import MinArea
from tests.helpers.stand_ins import BRIGHT, blob_scene, blobs
from tests.helpers.synthetic import ORIGIN, write_raster


def _truth(image: np.ndarray) -> list:
    bright = image[0] > BRIGHT
    return [
        shapely.affinity.affine_transform(shape(g), ORIGIN.to_shapely())
        for g, _ in rasterio.features.shapes(bright.view(np.uint8), mask=bright, connectivity=4)
    ]


def _run(tmp_path: Path, raster: Path, name: str, **settings) -> gpd.GeoDataFrame:
    out = tmp_path / name
    segment_anything(
        raster,
        out,
        settings=SegmentSettings(chip_size=64, overlap=16, **settings),
        generator=blobs,
        show_progress=False,
    )
    return gpd.read_file(out)


def _matches(found: gpd.GeoDataFrame, truth: list) -> None:
    assert len(found) == len(truth)
    for expected in truth:
        assert any(g.symmetric_difference(expected).area < 1e-6 for g in found.geometry), expected


def test_objects_cut_by_chips_come_out_whole_and_once(tmp_path: Path) -> None:
    image = blob_scene()
    found = _run(tmp_path, write_raster(tmp_path / "img.tif", image), "objects.gpkg")
    _matches(found, _truth(image))
    assert list(found.columns) == ["id", "score", "stability", "area_m2", "geometry"]
    assert found["id"].tolist() == list(range(1, len(found) + 1))
    # no duplicates: no two objects overlap
    assert shapely.union_all(list(found.geometry)).area == pytest.approx(found.area.sum())
    assert found["area_m2"].tolist() == pytest.approx(found.area.tolist())  # 10 m UTM pixels


def test_results_do_not_depend_on_where_the_extent_starts(tmp_path: Path) -> None:
    image = blob_scene()
    whole = _run(tmp_path, write_raster(tmp_path / "img.tif", image), "whole.gpkg")
    rows, cols = 7, 11  # the tiling starts elsewhere
    shifted = ORIGIN * Affine.translation(cols, rows)
    cropped = write_raster(tmp_path / "crop.tif", image[:, rows:, cols:], transform=shifted)
    part = _run(tmp_path, cropped, "part.gpkg")
    extent = shapely.box(*rasterio.open(cropped).bounds)
    inside = [g for g in whole.geometry if extent.contains(g)]
    crossing = [g for g in whole.geometry if g.intersects(extent) and not extent.contains(g)]
    assert inside and crossing and len(inside) < len(whole)
    # both ways: each expected object once in the shifted run, and nothing else there
    expected = inside + [g.intersection(extent) for g in crossing]
    assert len(part) == len(expected)
    for geometry in expected:
        assert sum(g.symmetric_difference(geometry).area < 1e-6 for g in part.geometry) == 1


def test_min_area_and_nodata(tmp_path: Path) -> None:
    image = blob_scene()
    image[:, :30, :30] = 0  # nodata corner hides the first small object
    raster = write_raster(tmp_path / "img.tif", image, nodata=0)
    found = _run(tmp_path, raster, "big.gpkg", min_area=MinArea.parse("150px"))
    assert sorted(found.area / 100.0) == [400, 6500]  # the 10 x 10 ones are dropped
    found = _run(tmp_path, raster, "all.gpkg", min_area=MinArea.parse("1m2"))
    assert len(found) == 4  # the object under nodata is gone


def test_existing_output_is_kept_without_overwrite(tmp_path: Path) -> None:
    raster = write_raster(tmp_path / "img.tif", blob_scene())
    out = tmp_path / "o.gpkg"
    out.write_text("keep me")
    with pytest.raises(FileExistsError, match="--overwrite"):
        segment_anything(raster, out, generator=blobs, show_progress=False)
    assert out.read_text() == "keep me"


def test_cli_with_sam_on_a_tiny_random_encoder(tmp_path: Path, pair_paths, tiny_encoder) -> None:
    from click.testing import CliRunner

    from rs_sam.cli.main import cli

    out = tmp_path / "objects.gpkg"
    args = ["segment", str(pair_paths[0]), "-o", str(out), "--weights", "random",
            "--chip-size", "128", "--points-per-side", "4", "--pred-iou-thresh", "0",
            "--stability-thresh", "0", "-q"]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    found = gpd.read_file(out)
    assert len(found) > 0 and found.crs.to_epsg() == 32633
    assert found["score"].between(0, 1).all() and (found["area_m2"] > 0).all()
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2 and "--overwrite" in result.output
    result = CliRunner().invoke(cli, [*args[:-1], "--encoder", "nope", "--overwrite", "-q"])
    assert result.exit_code == 2 and "nope" in result.output
