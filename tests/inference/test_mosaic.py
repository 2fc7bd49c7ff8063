"""Tests for rs_sam.inference.mosaic: blending chips reproduces the field, seams included."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS

from rs_sam.data.grid import RasterGrid, chip_windows
from rs_sam.errors import ConfigError, OutputPathError
from rs_sam.inference.mosaic import WEIGHT_FLOOR, ProbabilityMosaic, blend_weights

CHIP, OVERLAP = 128, 32


@pytest.fixture
def grid() -> RasterGrid:
    # 300 x 437 is not a multiple of the stride (96): the last chips are padded.
    return RasterGrid(
        crs=CRS.from_epsg(32631),
        transform=Affine(0.5, 0.0, 430_000.0, 0.0, -0.5, 5_400_000.0),
        width=437,
        height=300,
    )


def smooth_field(height: int, width: int, bands: int = 1) -> np.ndarray:
    """(bands, height, width) float32 in (0, 1), smooth, different per band."""
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)
    out = [0.5 + 0.4 * np.sin(rows / (17.0 + b)) * np.cos(cols / 23.0) for b in range(bands)]
    return np.stack(out).astype(np.float32)


def cut_chip(field: np.ndarray, row: int, col: int, size: int) -> np.ndarray:
    """The (bands, size, size) chip at (row, col), padded past the edge with garbage."""
    bands = field.shape[0]
    chip = np.full((bands, size, size), 7.0, dtype=np.float32)  # padding must be ignored
    part = field[:, row : row + size, col : col + size]
    chip[:, : part.shape[1], : part.shape[2]] = part
    return chip


def test_blend_weights_partition_of_unity():
    w = (
        blend_weights(CHIP, OVERLAP, floor=0.0)[0]
        / blend_weights(CHIP, OVERLAP, floor=0.0)[0].max()
    )
    stride = CHIP - OVERLAP
    np.testing.assert_allclose(w[stride:] + w[:OVERLAP], 1.0, atol=1e-6)
    full = blend_weights(CHIP, OVERLAP)
    assert full.shape == (CHIP, CHIP) and full.dtype == np.float32
    assert full.min() >= WEIGHT_FLOOR * WEIGHT_FLOOR * 0.999 and full.max() == 1.0
    assert (blend_weights(CHIP, 0) == 1.0).all()


@pytest.mark.parametrize("bands", [1, 2])
def test_round_trip_equals_field(tmp_path: Path, grid: RasterGrid, bands: int):
    field = smooth_field(grid.height, grid.width, bands)
    out = tmp_path / "prob.tif"
    with ProbabilityMosaic(
        grid, chip_size=CHIP, overlap=OVERLAP, workdir=tmp_path / "work", bands=bands
    ) as mosaic:
        for w in chip_windows(grid, CHIP, OVERLAP):
            chip = cut_chip(field, w.row_off, w.col_off, CHIP)
            mosaic.add(w, chip[0] if bands == 1 else chip)
        assert mosaic.finalize(out) == out
    assert list((tmp_path / "work").iterdir()) == []  # accumulator removed
    assert [p.name for p in tmp_path.iterdir() if p.is_file()] == ["prob.tif"]  # no temp left
    with rasterio.open(out) as src:
        assert src.crs == grid.crs
        assert src.transform == grid.transform
        assert (src.width, src.height, src.count) == (grid.width, grid.height, bands)
        assert src.dtypes == ("float32",) * bands
        assert src.nodata == -1.0
        assert src.profile["tiled"] and src.compression is not None
        result = src.read()
    np.testing.assert_allclose(result, field, atol=1e-5, rtol=0)


def test_blend_tapers_between_disagreeing_chips(tmp_path: Path, grid: RasterGrid):
    """Constant chips of different values: the seam is a smooth ramp, not a cut."""
    windows = chip_windows(grid, CHIP, OVERLAP)
    with ProbabilityMosaic(grid, chip_size=CHIP, overlap=OVERLAP, workdir=tmp_path) as mosaic:
        for w in windows:
            mosaic.add(w, np.full((CHIP, CHIP), float(w.col_off // 96 % 2), dtype=np.float32))
        mosaic.finalize(tmp_path / "p.tif")
    with rasterio.open(tmp_path / "p.tif") as src:
        row = src.read(1)[50]
    ramp = row[96:128]  # overlap of chips 0 (value 0) and 1 (value 1)
    assert (np.diff(ramp) > 0).all()
    assert ramp[0] < 0.01 and ramp[-1] > 0.99
    assert np.abs(np.diff(row)).max() < 0.1  # no jump anywhere


def test_invalid_pixels_become_nodata(tmp_path: Path, grid: RasterGrid):
    field = smooth_field(grid.height, grid.width)
    hole = np.zeros((grid.height, grid.width), dtype=bool)
    hole[100:140, 200:260] = True  # nodata in every chip that covers it
    field_nan = field.copy()
    field_nan[0, 10:12, 10:12] = np.nan  # non-finite probabilities count as invalid
    with ProbabilityMosaic(grid, chip_size=CHIP, overlap=OVERLAP, workdir=tmp_path) as mosaic:
        for w in chip_windows(grid, CHIP, OVERLAP):
            chip = cut_chip(field_nan, w.row_off, w.col_off, CHIP)[0]
            valid = (
                cut_chip(hole[np.newaxis].astype(np.float32), w.row_off, w.col_off, CHIP)[0] == 0
            )
            mosaic.add(w, chip, valid)
        mosaic.finalize(tmp_path / "p.tif", nodata=-9.0)
    with rasterio.open(tmp_path / "p.tif") as src:
        result = src.read(1)
        assert src.nodata == -9.0
    expected = np.where(hole, -9.0, field[0])
    expected[10:12, 10:12] = -9.0
    np.testing.assert_allclose(result, expected, atol=1e-5, rtol=0)


def test_valid_in_one_chip_only_keeps_its_value(tmp_path: Path, grid: RasterGrid):
    """A pixel valid in one chip and nodata in its neighbour takes that chip's value exactly."""
    windows = chip_windows(grid, CHIP, OVERLAP)
    with ProbabilityMosaic(grid, chip_size=CHIP, overlap=OVERLAP, workdir=tmp_path) as mosaic:
        for w in windows[:2]:  # chips at col 0 and col 96, overlapping on cols 96..127
            valid = np.ones((CHIP, CHIP), dtype=bool)
            if w.col_off == 0:
                valid[:, 96:] = False
            mosaic.add(w, np.full((CHIP, CHIP), 0.25 + w.index / 2, dtype=np.float32), valid)
        mosaic.finalize(tmp_path / "p.tif")
    with rasterio.open(tmp_path / "p.tif") as src:
        result = src.read(1)
    np.testing.assert_allclose(result[:128, 96:224], 0.75, atol=1e-6)  # edge taper, one chip
    np.testing.assert_allclose(result[:128, :96], 0.25, atol=1e-6)
    assert (result[128:, :] == -1.0).all() and (result[:, 224:] == -1.0).all()


def test_bad_chip_shape_and_closed_mosaic(tmp_path: Path, grid: RasterGrid):
    w = chip_windows(grid, CHIP, OVERLAP)[0]
    mosaic = ProbabilityMosaic(grid, chip_size=CHIP, overlap=OVERLAP, workdir=tmp_path)
    with mosaic, pytest.raises(ConfigError, match="expected"):
        mosaic.add(w, np.zeros((64, 64), dtype=np.float32))
    with pytest.raises(ConfigError, match="closed"):
        mosaic.add(w, np.zeros((CHIP, CHIP), dtype=np.float32))
    with pytest.raises(ConfigError, match="overlap"):
        ProbabilityMosaic(grid, chip_size=CHIP, overlap=64, workdir=tmp_path)


def test_missing_output_folder(tmp_path: Path, grid: RasterGrid):
    with (
        ProbabilityMosaic(grid, chip_size=CHIP, overlap=OVERLAP, workdir=tmp_path) as mosaic,
        pytest.raises(OutputPathError, match="nope"),
    ):
        mosaic.finalize(tmp_path / "nope" / "p.tif")


def test_failed_finalize_leaves_no_partial_output(
    tmp_path: Path, grid: RasterGrid, monkeypatch: pytest.MonkeyPatch
):
    import rs_sam.inference.mosaic as mosaic_module

    out = tmp_path / "out"
    out.mkdir()
    (out / "p.tif").write_bytes(b"previous")

    def broken_window(*args: object) -> None:
        raise RuntimeError("disk full")

    with ProbabilityMosaic(grid, chip_size=CHIP, overlap=OVERLAP, workdir=tmp_path) as mosaic:
        monkeypatch.setattr(mosaic_module, "Window", broken_window)
        with pytest.raises(RuntimeError, match="disk full"):
            mosaic.finalize(out / "p.tif")
    assert [p.name for p in out.iterdir()] == ["p.tif"]
    assert (out / "p.tif").read_bytes() == b"previous"
