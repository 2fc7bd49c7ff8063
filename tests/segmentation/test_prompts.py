"""Prompt files -> pixel prompts, prompt windows, and decoding prompts on a chip."""

from __future__ import annotations

import warnings
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import torch
from shapely.geometry import MultiPoint, Point, box

from rs_sam.data.grid import ChipWindow, RasterGrid
from rs_sam.errors import ConfigError
from rs_sam.models.decoding import ChipFeatures
from rs_sam.segmentation import prompted
from rs_sam.segmentation.prompted import (
    decode_logits,
    decode_prompt,
    decode_prompts,
    shift_prompt,
)
from rs_sam.segmentation.prompts import (
    Prompt,
    PromptError,
    PromptOutsideWarning,
    PromptWarning,
    prompt_window,
    read_prompts,
)
from tests.helpers.synthetic import ORIGIN, UTM33, texture, write_raster

HEIGHT, WIDTH = 100, 120


@pytest.fixture
def grid(tmp_path: Path) -> RasterGrid:
    image = (texture(HEIGHT, WIDTH, seed=3) * 255).astype(np.uint8)
    path = write_raster(tmp_path / "scene.tif", image)
    with rasterio.open(path) as src:
        return RasterGrid.from_dataset(src)


def _map_xy(col: float, row: float) -> tuple[float, float]:
    """Map coordinates of continuous pixel position (col, row) on the synthetic grid."""
    return ORIGIN @ (col, row)


def _write(tmp_path: Path, name: str, data: dict, geoms: list, crs=UTM33) -> Path:
    gdf = gpd.GeoDataFrame(data, geometry=geoms, crs=None if crs is None else crs.to_wkt())
    path = tmp_path / name
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pyogrio warns when writing without a CRS
        gdf.to_file(path, engine="pyogrio")
    return path


# ------------------------------------------------------------------------------ reading
def test_points_in_raster_crs(tmp_path: Path, grid: RasterGrid) -> None:
    geoms = [Point(_map_xy(10.5, 20.5)), Point(_map_xy(0.25, 99.75))]
    prompts = read_prompts(_write(tmp_path, "p.gpkg", {"n": [1, 2]}, geoms), grid)
    assert [p.id for p in prompts] == [1, 2]  # 1-based row numbers
    np.testing.assert_allclose(prompts[0].points, [[10.5, 20.5]])
    np.testing.assert_allclose(prompts[1].points, [[0.25, 99.75]])
    assert prompts[0].labels.tolist() == [1] and prompts[0].box is None
    assert prompts[0].bounds == (10.5, 20.5, 10.5, 20.5)


def test_points_in_wgs84_are_transformed(tmp_path: Path, grid: RasterGrid) -> None:
    pixels = np.array([[5.5, 7.5], [60.0, 50.0], [110.2, 90.9]])
    utm = gpd.GeoSeries([Point(_map_xy(*xy)) for xy in pixels], crs=UTM33.to_wkt())
    path = _write(tmp_path, "p.geojson", {"id": [7, 8, 9]}, list(utm.to_crs(4326)), crs=None)
    gdf = gpd.read_file(path)
    assert gdf.crs.to_epsg() == 4326
    prompts = read_prompts(path, grid)
    assert [p.id for p in prompts] == [7, 8, 9]
    got = np.concatenate([p.points for p in prompts])
    expected = np.array([~grid.transform @ (x, y) for x, y in zip(utm.x, utm.y, strict=True)])
    np.testing.assert_allclose(got, expected, atol=1e-4)
    np.testing.assert_allclose(got, pixels, atol=1e-4)


def test_groups_and_background_labels(tmp_path: Path, grid: RasterGrid) -> None:
    geoms = [Point(_map_xy(10, 10)), Point(_map_xy(20, 10)), Point(_map_xy(30, 30))]
    geoms += [Point(_map_xy(40, 40)), MultiPoint([_map_xy(50, 50), _map_xy(52, 52)])]
    data = {"group": ["a", "a", None, "b", None], "label": [1, 0, 1, 1, None]}
    prompts = read_prompts(_write(tmp_path, "p.gpkg", data, geoms), grid)
    assert [p.id for p in prompts] == ["a", 3, "b", 5]
    np.testing.assert_allclose(prompts[0].points, [[10, 10], [20, 10]])
    assert prompts[0].labels.tolist() == [1, 0]
    assert prompts[3].labels.tolist() == [1, 1]  # null label -> foreground
    assert prompts[0].bounds == (10.0, 10.0, 20.0, 10.0)


def test_group_of_background_points_is_an_error(tmp_path: Path, grid: RasterGrid) -> None:
    geoms = [Point(_map_xy(10, 10)), Point(_map_xy(20, 10)), Point(_map_xy(5, 5))]
    data = {"group": [4, 4, 9], "label": [0, 0, 1]}
    with pytest.raises(PromptError, match=r"group 4 .*only background"):
        read_prompts(_write(tmp_path, "p.gpkg", data, geoms), grid)


def test_bad_labels_are_listed(tmp_path: Path, grid: RasterGrid) -> None:
    geoms = [Point(_map_xy(i, i)) for i in range(4)]
    path = _write(tmp_path, "p.gpkg", {"label": [1, 2, 5, 2]}, geoms)
    with pytest.raises(PromptError, match=r"values 2, 5; use 1 \(foreground\) or 0"):
        read_prompts(path, grid)


def test_missing_crs_is_an_error(tmp_path: Path, grid: RasterGrid) -> None:
    geoms = [Point(_map_xy(10, 10))]
    path = _write(tmp_path, "nocrs.gpkg", {"n": [1]}, geoms, crs=None)
    with pytest.raises(PromptError, match=r"nocrs.gpkg has no CRS; set its CRS, e.g. ogr2ogr"):
        read_prompts(path, grid)
    # GDAL reads every GeoJSON as lon/lat: projected coordinates reveal the missing CRS.
    path = _write(tmp_path, "nocrs.geojson", {"n": [1]}, geoms, crs=None)
    with pytest.raises(PromptError, match=r"not longitude/latitude.*ogr2ogr -a_srs EPSG:32633"):
        read_prompts(path, grid)


def test_polygons_become_clipped_boxes(tmp_path: Path, grid: RasterGrid) -> None:
    inside = box(*_map_xy(10, 40), *_map_xy(30, 20))  # minx, miny, maxx, maxy
    partly = box(*_map_xy(-15, 110), *_map_xy(20, 90))
    grouped = box(*_map_xy(60, 60), *_map_xy(80, 50))
    geoms = [inside, partly, grouped, Point(_map_xy(70, 55)), Point(_map_xy(90, 90))]
    data = {"id": [11, 12, 13, 14, 15], "group": [None, None, "g", "g", None]}
    data["label"] = [1, 1, 1, 0, 1]
    prompts = read_prompts(_write(tmp_path, "p.gpkg", data, geoms), grid)
    assert [p.id for p in prompts] == [11, 12, "g", 15]
    np.testing.assert_allclose(prompts[0].box, [10, 20, 30, 40])
    assert len(prompts[0].points) == 0
    np.testing.assert_allclose(prompts[1].box, [0, 90, 20, 100])  # clipped to the raster
    np.testing.assert_allclose(prompts[2].box, [60, 50, 80, 60])
    np.testing.assert_allclose(prompts[2].points, [[70, 55]])
    assert prompts[2].labels.tolist() == [0]  # a box with a background point is fine
    assert prompts[2].bounds == (60.0, 50.0, 80.0, 60.0)


def test_two_polygons_in_a_group_is_an_error(tmp_path: Path, grid: RasterGrid) -> None:
    geoms = [box(*_map_xy(1, 5), *_map_xy(5, 1)), box(*_map_xy(6, 9), *_map_xy(9, 6))]
    path = _write(tmp_path, "p.gpkg", {"group": ["x", "x"]}, geoms)
    with pytest.raises(PromptError, match=r"group 'x' .*2 polygons"):
        read_prompts(path, grid)


def test_outside_prompts_warn_once_and_are_skipped(tmp_path: Path, grid: RasterGrid) -> None:
    geoms = [Point(_map_xy(-5 - i, 10)) for i in range(12)] + [Point(_map_xy(3, 3))]
    geoms += [box(*_map_xy(200, 300), *_map_xy(250, 200))]
    path = _write(tmp_path, "p.gpkg", {"id": list(range(100, 114))}, geoms)
    with pytest.warns(PromptOutsideWarning) as record:
        prompts = read_prompts(path, grid)
    outside = [w for w in record if issubclass(w.category, PromptOutsideWarning)]
    assert len(outside) == 1
    message = str(outside[0].message)
    assert "13 prompt(s)" in message and "ids 100, 101" in message and "... 3 more" in message
    assert [p.id for p in prompts] == [112]


def test_outside_points_are_dropped_from_their_group(tmp_path: Path, grid: RasterGrid) -> None:
    geoms = [Point(_map_xy(10, 10)), Point(_map_xy(-10, 10)), Point(_map_xy(500, 10))]
    path = _write(tmp_path, "p.gpkg", {"group": [1, 1, 2], "label": [1, 1, 1]}, geoms)
    with pytest.warns(PromptOutsideWarning, match="ids 2$"):
        prompts = read_prompts(path, grid)
    assert len(prompts) == 1
    np.testing.assert_allclose(prompts[0].points, [[10, 10]])


def test_empty_or_unusable_files_are_errors(tmp_path: Path, grid: RasterGrid) -> None:
    empty = _write(tmp_path, "empty.gpkg", {"n": []}, [])
    with pytest.raises(PromptError, match="has no features"):
        read_prompts(empty, grid)
    with pytest.raises(PromptError, match="does not exist"):
        read_prompts(tmp_path / "missing.gpkg", grid)
    outside = _write(tmp_path, "out.gpkg", {"n": [1]}, [Point(_map_xy(-50, -50))])
    with pytest.warns(PromptOutsideWarning), pytest.raises(PromptError, match="no prompt"):
        read_prompts(outside, grid)
    nulls = _write(tmp_path, "nulls.gpkg", {"n": [1, 2]}, [None, Point(_map_xy(4, 4))])
    with pytest.warns(PromptWarning, match="rows 1"):
        assert len(read_prompts(nulls, grid)) == 1


# ------------------------------------------------------------------------------ windows
def _grid(width: int, height: int) -> RasterGrid:
    return RasterGrid(crs=UTM33, transform=ORIGIN, width=width, height=height)


def test_window_is_centred_on_the_prompt() -> None:
    prompt = Prompt("p", [[300.0, 200.0]], [1])
    window = prompt_window(prompt, _grid(1000, 800), 128, context=16)
    assert (window.col_off, window.row_off, window.size) == (236, 136, 128)
    boxed = Prompt("b", np.empty((0, 2)), [], box=[400, 300, 440, 360])
    window = prompt_window(boxed, _grid(1000, 800), 128, context=16)
    assert (window.col_off + 64, window.row_off + 64) == (420, 330)


def test_window_stays_inside_the_raster() -> None:
    grid = _grid(500, 400)
    near_corner = Prompt("c", [[490.0, 5.0]], [1])
    window = prompt_window(near_corner, grid, 128, context=32)
    assert (window.col_off, window.row_off, window.size) == (372, 0, 128)
    small = _grid(50, 300)
    window = prompt_window(Prompt("s", [[25.0, 290.0]], [1]), small, 128, context=8)
    assert (window.col_off, window.row_off, window.size) == (0, 172, 128)


def test_window_grows_for_large_prompts() -> None:
    grid = _grid(1000, 1000)
    large = Prompt("l", np.empty((0, 2)), [], box=[100.5, 200.0, 300.0, 260.0])
    window = prompt_window(large, grid, 128, context=20)
    need = 300 - 100 + 2 * 20  # 240 -> 240 (multiple of 16)
    assert window.size == 240 and window.size % 16 == 0 and window.size >= need
    assert window.col_off <= 100.5 - 20 and window.col_off + window.size >= 300 + 20
    assert window.row_off <= 200 - 20 and window.row_off + window.size >= 260 + 20
    # margins beyond the raster are not asked for: a box on the whole raster needs 304
    whole = Prompt("w", np.empty((0, 2)), [], box=[0, 0, 300, 290])
    window = prompt_window(whole, _grid(300, 290), 256, context=64)
    assert (window.col_off, window.row_off, window.size) == (0, 0, 304)


def test_window_checks_its_arguments() -> None:
    with pytest.raises(ConfigError, match="context"):
        prompt_window(Prompt("p", [[1.0, 1.0]], [1]), _grid(10, 10), 64, context=-1)


def test_shift_prompt() -> None:
    prompt = Prompt(3, [[50.5, 60.5]], [1], box=[40, 50, 70, 80])
    shifted = shift_prompt(prompt, ChipWindow(row_off=40, col_off=30, size=64, index=0))
    np.testing.assert_allclose(shifted.points, [[20.5, 20.5]])
    np.testing.assert_allclose(shifted.box, [10, 10, 40, 40])
    assert shifted.id == 3 and shifted.labels.tolist() == [1]


# ------------------------------------------------------------------------------ decoding
CHIP = 96


@pytest.fixture(scope="module")
def encoder_and_embedding():
    from rs_sam.models.encoders import load_encoder

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        encoder = load_encoder("mobile_sam", weights="random", tiny=True)
        chip = torch.from_numpy(texture(CHIP, CHIP, seed=5) * 255)[None]
        embedding = encoder.embed(chip)
    return encoder, embedding


def _mixed_prompts() -> list[Prompt]:
    no_points = np.empty((0, 2))
    return [
        Prompt(1, [[10.5, 20.5]], [1]),
        Prompt(2, [[40.5, 50.5], [45.0, 60.0]], [1, 0]),
        Prompt(3, [[70.5, 80.5]], [1]),
        Prompt(4, no_points, [], box=[5, 5, 30, 40]),
        Prompt(6, [[20.0, 20.0]], [1], box=[10, 10, 50, 50]),
        Prompt(7, no_points, [], box=[50, 40, 90, 95]),
    ]


def test_decode_prompt_best_and_all(encoder_and_embedding) -> None:
    encoder, embedding = encoder_and_embedding
    point = Prompt(1, [[10.5, 20.5]], [1])
    best = decode_prompt(encoder, ChipFeatures(embedding), point, CHIP)
    assert len(best) == 1
    mask, score, index = best[0]
    assert mask.shape == (CHIP, CHIP) and mask.dtype == np.bool_
    assert np.isfinite(score) and index in (0, 1, 2)
    every = decode_prompt(encoder, ChipFeatures(embedding), point, CHIP, multimask="all")
    assert [m.index for m in every] == [0, 1, 2]
    assert best[0].score == max(m.score for m in every)
    assert np.array_equal(best[0].mask, every[index].mask)
    boxed = Prompt(2, [[20.0, 20.0]], [1], box=[10, 10, 50, 50])
    single = decode_prompt(encoder, ChipFeatures(embedding), boxed, CHIP)
    assert len(single) == 1 and single[0].index == 0 and single[0].mask.shape == (CHIP, CHIP)
    assert len(decode_prompt(encoder, ChipFeatures(embedding), boxed, CHIP, multimask="all")) == 3


def test_batched_decode_equals_per_prompt(encoder_and_embedding) -> None:
    encoder, embedding = encoder_and_embedding
    prompts = _mixed_prompts()
    batched = decode_logits(encoder, ChipFeatures(embedding), prompts, CHIP, batch_size=2)
    for prompt, (logits, iou) in zip(prompts, batched, strict=True):
        features = ChipFeatures(embedding)
        alone_logits, alone_iou = decode_logits(encoder, features, [prompt], CHIP)[0]
        assert logits.shape == alone_logits.shape == (len(iou), 64, 64)
        torch.testing.assert_close(logits, alone_logits, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(iou, alone_iou, atol=1e-5, rtol=1e-5)
    masks = decode_prompts(encoder, ChipFeatures(embedding), [prompts[0], prompts[2]], CHIP, "all")
    assert [len(m) for m in masks] == [3, 3]


def test_coordinates_scale_to_the_model_input(
    encoder_and_embedding, monkeypatch: pytest.MonkeyPatch
) -> None:
    encoder, embedding = encoder_and_embedding
    seen = []
    real = prompted.SamDecoder.decode

    def spy(self, features, **kwargs):
        seen.append(kwargs["points"].clone())
        return real(self, features, **kwargs)

    monkeypatch.setattr(prompted.SamDecoder, "decode", spy)
    decode_prompt(encoder, ChipFeatures(embedding), Prompt(1, [[48.0, 24.0]], [1]), CHIP)
    scale = encoder.input_size / CHIP  # the prompt encoder adds the 0.5 back
    torch.testing.assert_close(seen[0], torch.tensor([[[48 * scale - 0.5, 24 * scale - 0.5]]]))


def test_decode_checks_its_inputs(encoder_and_embedding) -> None:
    encoder, embedding = encoder_and_embedding
    point = Prompt(1, [[10.5, 20.5]], [1])
    with pytest.raises(ConfigError, match="multimask"):
        features = ChipFeatures(embedding)
        decode_prompt(encoder, features, point, CHIP, multimask="some")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="embedding has shape"):
        decode_prompt(encoder, ChipFeatures(embedding[..., :8]), point, CHIP)
    with pytest.raises(PromptError, match="neither points nor a box"):
        decode_prompt(encoder, ChipFeatures(embedding), Prompt(2, np.empty((0, 2)), []), CHIP)
