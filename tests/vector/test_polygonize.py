"""Tests for rs_sam.vector.polygonize and rs_sam.vector.area."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from affine import Affine
from rasterio import features
from rasterio.crs import CRS

from rs_sam.errors import ConfigError, InputRasterError, RasterNotFoundError
from rs_sam.vector import MinArea, areas_m2, polygonize_probability

UTM = CRS.from_epsg(32633)
UTM_TRANSFORM = Affine(2.0, 0.0, 400_000.0, 0.0, -2.0, 5_000_000.0)  # 2 m pixels: 4 m2


def write_prob(
    path: Path,
    data: np.ndarray,
    *,
    crs: CRS | None = UTM,
    transform: Affine = UTM_TRANSFORM,
    nodata: float | None = None,
) -> Path:
    """Write a (H, W) float32 probability GeoTIFF."""
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=data.shape[1],
        height=data.shape[0],
        count=1,
        dtype="float32",
        crs=crs,
        transform=transform,
        nodata=nodata,
    ) as dst:
        dst.write(data.astype(np.float32), 1)
    return path


def disc(height: int, width: int, row: float, col: float, radius: float) -> np.ndarray:
    rows, cols = np.mgrid[0:height, 0:width]
    return (rows + 0.5 - row) ** 2 + (cols + 0.5 - col) ** 2 <= radius**2


def scores(height: int, width: int) -> np.ndarray:
    """A smooth field in (0.5, 1]: everything above 0.5 where an object is set."""
    rows, cols = np.mgrid[0:height, 0:width]
    return (0.75 + 0.2 * np.sin(rows / 7.0) * np.cos(cols / 5.0)).astype(np.float32)


def to_pixels(geom: shapely.Geometry, transform: Affine) -> shapely.Geometry:
    inv = ~transform
    return shapely.transform(geom, lambda xy: np.column_stack(inv * (xy[:, 0], xy[:, 1])))


def test_disc_across_block_borders_is_one_polygon(tmp_path: Path):
    mask = disc(200, 200, 100, 100, 60)  # crosses the borders at 64 and 128 both ways
    values = np.where(mask, scores(200, 200), 0.1)
    path = write_prob(tmp_path / "p.tif", values)
    gdf = polygonize_probability(path, threshold=0.5, block_size=64)
    assert len(gdf) == 1
    assert list(gdf.columns) == ["id", "area_m2", "score_mean", "score_max", "geometry"]
    assert gdf.crs == UTM
    geom = gdf.geometry.iloc[0]
    assert geom.geom_type == "Polygon" and geom.is_valid and len(geom.interiors) == 0
    assert gdf.area_m2.iloc[0] == pytest.approx(mask.sum() * 4.0, rel=1e-12)
    assert geom.area == pytest.approx(mask.sum() * 4.0, rel=1e-12)
    # The polygon covers exactly the foreground pixels: no seam gaps, no duplicates.
    burned = features.rasterize([geom], out_shape=mask.shape, transform=UTM_TRANSFORM)
    assert np.array_equal(burned.astype(bool), mask)
    # Same polygon, vertex for vertex, as without blocks: no leftover seam vertices.
    whole = polygonize_probability(path, threshold=0.5, block_size=4096).geometry.iloc[0]
    assert shapely.equals(geom, whole)
    assert shapely.get_num_coordinates(geom) == shapely.get_num_coordinates(whole)
    assert gdf.score_mean.iloc[0] == pytest.approx(
        values[mask].astype(np.float64).mean(), rel=1e-12
    )
    assert gdf.score_max.iloc[0] == values[mask].max()


def test_blocked_equals_unblocked_on_random_blobs(tmp_path: Path):
    rng = np.random.default_rng(0)
    noise = rng.random((150, 170))
    # Smooth the noise a little so blobs span several blocks.
    shifted = [np.roll(noise, (dy, dx), (0, 1)) for dy in range(-3, 4) for dx in range(-3, 4)]
    values = np.mean(shifted, axis=0).astype(np.float32)
    path = write_prob(tmp_path / "p.tif", values)
    whole = polygonize_probability(path, threshold=0.52, block_size=4096)
    blocked = polygonize_probability(path, threshold=0.52, block_size=16)
    assert len(whole) > 5
    assert len(blocked) == len(whole)
    assert (blocked.id.to_numpy() == np.arange(1, len(whole) + 1)).all()
    for a, b in zip(blocked.geometry, whole.geometry, strict=True):
        assert shapely.equals(a, b) and a.is_valid
    np.testing.assert_allclose(blocked.area_m2, whole.area_m2, rtol=1e-12)
    np.testing.assert_allclose(blocked.score_mean, whole.score_mean, rtol=1e-12)
    np.testing.assert_array_equal(blocked.score_max, whole.score_max)
    assert whole.area_m2.sum() == pytest.approx((values >= 0.52).sum() * 4.0)


def test_ring_across_blocks_keeps_its_hole(tmp_path: Path):
    ring = disc(100, 100, 50, 50, 40) & ~disc(100, 100, 50, 50, 20)
    path = write_prob(tmp_path / "p.tif", ring.astype(np.float32))
    gdf = polygonize_probability(path, threshold=0.5, block_size=32)
    assert len(gdf) == 1
    geom = gdf.geometry.iloc[0]
    assert len(geom.interiors) == 1 and geom.is_valid
    assert gdf.area_m2.iloc[0] == pytest.approx(ring.sum() * 4.0)


def test_two_objects_ordered_top_left_with_exact_scores(tmp_path: Path):
    values = np.full((120, 120), 0.2, dtype=np.float32)
    lower = disc(120, 120, 90, 30, 15)
    upper = disc(120, 120, 25, 90, 10)
    field = scores(120, 120)
    values[lower] = field[lower]
    values[upper] = 0.9
    path = write_prob(tmp_path / "p.tif", values)
    gdf = polygonize_probability(path, threshold=0.5, block_size=64)
    assert len(gdf) == 2
    assert gdf.id.tolist() == [1, 2]
    first, second = gdf.iloc[0], gdf.iloc[1]
    assert first.area_m2 == pytest.approx(upper.sum() * 4.0)  # upper one comes first
    assert first.score_mean == pytest.approx(0.9, rel=1e-7) and first.score_max == np.float32(0.9)
    assert second.score_mean == pytest.approx(values[lower].astype(np.float64).mean(), rel=1e-12)
    assert second.score_max == values[lower].max()


def test_threshold_is_inclusive(tmp_path: Path):
    values = np.zeros((10, 10), dtype=np.float32)
    values[2:4, 2:5] = 0.5
    gdf = polygonize_probability(write_prob(tmp_path / "p.tif", values), threshold=0.5)
    assert len(gdf) == 1 and gdf.area_m2.iloc[0] == pytest.approx(6 * 4.0)


def test_min_area_in_pixels_and_square_metres(tmp_path: Path):
    values = np.zeros((100, 100), dtype=np.float32)
    values[5:10, 5:10] = 1.0  # 25 px = 100 m2
    values[50:60, 50:60] = 1.0  # 100 px = 400 m2, split by block borders
    path = write_prob(tmp_path / "p.tif", values)
    assert len(polygonize_probability(path, threshold=0.5, block_size=55)) == 2
    by_px = polygonize_probability(path, threshold=0.5, block_size=55, min_area=MinArea(26, "px"))
    assert by_px.area_m2.tolist() == [400.0]  # filtered after merging: 100 px, not 4 pieces
    by_m2 = polygonize_probability(path, threshold=0.5, min_area=MinArea.parse("100m2"))
    assert by_m2.area_m2.tolist() == [100.0, 400.0]
    by_m2 = polygonize_probability(path, threshold=0.5, min_area=MinArea.parse("101m2"))
    assert by_m2.area_m2.tolist() == [400.0]
    assert by_m2.id.tolist() == [1]


def test_min_area_parse():
    assert MinArea.parse("50") == MinArea(50.0, "px")
    assert MinArea.parse("50px") == MinArea(50.0, "px")
    assert MinArea.parse("200m2") == MinArea(200.0, "m2")
    assert MinArea.parse(" 1.5e3 M2 ") == MinArea(1500.0, "m2")
    for bad in ["50ha", "-3", "", "m2", "1,5"]:
        with pytest.raises(ConfigError, match="min_area"):
            MinArea.parse(bad)
    with pytest.raises(ConfigError):
        MinArea(1.0, "ha")  # type: ignore[arg-type]


def test_a_negative_min_area_must_be_positive_not_misunderstood():
    for negative in ["-5m2", "-3", " -0.5 px", "-1e3m2"]:
        with pytest.raises(ConfigError, match=r"must be positive \(0 keeps every polygon\)"):
            MinArea.parse(negative)
    assert MinArea.parse("+5m2") == MinArea(5.0, "m2")
    assert MinArea.parse("0") == MinArea(0.0, "px")


def test_geographic_crs_gives_plausible_square_metres(tmp_path: Path):
    transform = Affine(1e-4, 0.0, 10.0, 0.0, -1e-4, 45.01)  # ~7.9 m x 11.1 m pixels at 45 N
    mask = disc(100, 100, 50, 50, 35)
    path = write_prob(
        tmp_path / "p.tif", mask.astype(np.float32), crs=CRS.from_epsg(4326), transform=transform
    )
    gdf = polygonize_probability(path, threshold=0.5, block_size=32)
    assert len(gdf) == 1 and gdf.crs.to_epsg() == 4326
    equal_area = gdf.to_crs("+proj=laea +lat_0=45 +lon_0=10 +datum=WGS84").area.iloc[0]
    assert gdf.area_m2.iloc[0] == pytest.approx(equal_area, rel=1e-4)
    pixel_m2 = (1e-4 * 111_320 * np.cos(np.radians(45.005))) * (1e-4 * 111_132)  # ~87.4 m2
    assert gdf.area_m2.iloc[0] == pytest.approx(mask.sum() * pixel_m2, rel=5e-3)


def test_nodata_never_becomes_a_polygon(tmp_path: Path):
    values = np.full((80, 80), 0.9, dtype=np.float32)
    values[:, 40:] = 2.0  # nodata value, above the threshold
    values[10:20, 10:20] = np.nan  # NaN is never foreground either
    path = write_prob(tmp_path / "p.tif", values, nodata=2.0)
    gdf = polygonize_probability(path, threshold=0.5, block_size=32)
    assert len(gdf) == 1
    assert gdf.area_m2.iloc[0] == pytest.approx((80 * 40 - 100) * 4.0)
    assert gdf.score_max.iloc[0] == np.float32(0.9)
    assert gdf.total_bounds[2] == pytest.approx(400_000.0 + 40 * 2.0)


def test_empty_result_has_schema_and_crs(tmp_path: Path):
    path = write_prob(tmp_path / "p.tif", np.zeros((20, 20), dtype=np.float32))
    gdf = polygonize_probability(path, threshold=0.5)
    assert len(gdf) == 0
    assert list(gdf.columns) == ["id", "area_m2", "score_mean", "score_max", "geometry"]
    assert gdf.crs == UTM and gdf.id.dtype == np.int64


def test_simplify_in_map_units(tmp_path: Path):
    path = write_prob(tmp_path / "p.tif", disc(100, 100, 50, 50, 30).astype(np.float32))
    exact = polygonize_probability(path, threshold=0.5).geometry.iloc[0]
    simple = polygonize_probability(path, threshold=0.5, simplify=2.0)  # one 2 m pixel
    geom = simple.geometry.iloc[0]
    assert geom.is_valid and shapely.get_num_coordinates(geom) < shapely.get_num_coordinates(exact)
    assert simple.area_m2.iloc[0] == pytest.approx(geom.area)
    assert geom.area == pytest.approx(exact.area, rel=0.03)


def test_input_errors(tmp_path: Path):
    with pytest.raises(RasterNotFoundError, match=r"nope\.tif"):
        polygonize_probability(tmp_path / "nope.tif", threshold=0.5)
    (tmp_path / "junk.tif").write_text("not a raster")
    with pytest.raises(InputRasterError, match=r"junk\.tif"):
        polygonize_probability(tmp_path / "junk.tif", threshold=0.5)
    nocrs = write_prob(tmp_path / "nocrs.tif", np.ones((4, 4), dtype=np.float32), crs=None)
    with pytest.raises(InputRasterError, match="no CRS"):
        polygonize_probability(nocrs, threshold=0.5)
    ok = write_prob(tmp_path / "ok.tif", np.ones((4, 4), dtype=np.float32))
    with pytest.raises(InputRasterError, match="band=2"):
        polygonize_probability(ok, threshold=0.5, band=2)
    with pytest.raises(ConfigError, match="block_size"):
        polygonize_probability(ok, threshold=0.5, block_size=0)
    with pytest.raises(ConfigError, match="threshold"):
        polygonize_probability(ok, threshold=float("nan"))


def test_areas_m2_units():
    square = shapely.box(0, 0, 10, 10)
    assert areas_m2([square], UTM).tolist() == [100.0]
    feet = areas_m2([square], "EPSG:2263")[0]  # NY Long Island, US survey feet
    assert feet == pytest.approx(100 * 0.3048006096**2, rel=1e-9)
    geographic = areas_m2([shapely.box(0, 0, 1, 1), None, shapely.Polygon()], 4326)
    assert geographic[0] == pytest.approx(12_308_778_361, rel=1e-3)  # 1 deg x 1 deg at the equator
    assert geographic[1:].tolist() == [0.0, 0.0]
    holed = shapely.box(0, 0, 1, 1).difference(shapely.box(0.25, 0.25, 0.75, 0.75))
    assert areas_m2([holed], 4326)[0] == pytest.approx(0.75 * geographic[0], rel=1e-3)
    with pytest.raises(InputRasterError, match="CRS"):
        areas_m2([square], None)
