"""Reading rasters: validation, band selection, the bitemporal pair on a's grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from affine import Affine
from rasterio.crs import CRS

from rs_sam.data.bands import parse_bands, select_bands
from rs_sam.data.grid import chip_windows
from rs_sam.data.normalize import JointStretch
from rs_sam.data.pair import BitemporalPair
from rs_sam.data.rasters import open_date
from rs_sam.errors import InputRasterError, RasterNotFoundError
from tests.helpers.synthetic import ORIGIN, texture, warp_to, write_raster


def _rgb(height: int = 120, width: int = 150, seed: int = 0) -> np.ndarray:
    return (texture(height, width, seed=seed) * 200 + 20).astype(np.uint8)


def _pair(tmp_path: Path, a: np.ndarray, b: np.ndarray, **kwargs) -> BitemporalPair:
    info_a = open_date(write_raster(tmp_path / "a.tif", a))
    info_b = open_date(write_raster(tmp_path / "b.tif", b, **kwargs))
    return BitemporalPair(info_a, info_b, bands=select_bands([info_a, info_b], None))


# --- validation ---------------------------------------------------------------------


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(RasterNotFoundError, match=r"nope.tif does not exist"):
        open_date(tmp_path / "nope.tif")


def test_corrupt_file_is_not_a_raster(tmp_path: Path) -> None:
    bad = tmp_path / "corrupt.tif"
    bad.write_bytes(b"II*\x00" + b"\x13" * 200)
    with pytest.raises(InputRasterError, match="not a readable raster"):
        open_date(bad)


def test_text_file_is_not_a_raster(tmp_path: Path) -> None:
    bad = tmp_path / "notes.tif"
    bad.write_text("hello")
    with pytest.raises(InputRasterError, match="not a readable raster"):
        open_date(bad)


def test_raster_without_crs_is_refused(tmp_path: Path) -> None:
    path = write_raster(tmp_path / "nocrs.tif", _rgb(), crs=None)
    with pytest.raises(InputRasterError, match=r"has no CRS.*gdal_edit"):
        open_date(path)


def test_rotated_transform_is_refused(tmp_path: Path) -> None:
    rotated = ORIGIN @ Affine.rotation(15)
    path = write_raster(tmp_path / "rot.tif", _rgb(), transform=rotated)
    with pytest.raises(InputRasterError, match="rotated or sheared"):
        open_date(path)


def test_single_band_files_stack_into_one_date(tmp_path: Path) -> None:
    bands = (texture(50, 60, bands=3, seed=3) * 3000).astype(np.uint16)
    paths = [write_raster(tmp_path / f"B0{i}.tif", bands[i : i + 1]) for i in range(3)]
    info = open_date(",".join(str(p) for p in paths), workdir=tmp_path)
    assert info.count == 3 and info.dtype == "uint16"
    folder = open_date(tmp_path, workdir=tmp_path)  # a folder: files in name order
    assert folder.count == 3


def test_stacked_files_must_share_a_grid(tmp_path: Path) -> None:
    one = write_raster(tmp_path / "b1.tif", _rgb()[:1])
    shifted = write_raster(
        tmp_path / "b2.tif", _rgb()[:1], transform=ORIGIN @ Affine.translation(3, 0)
    )
    with pytest.raises(InputRasterError, match="not on the grid"):
        open_date([one, shifted], workdir=tmp_path)


# --- bands --------------------------------------------------------------------------


def test_different_band_counts_need_bands(tmp_path: Path) -> None:
    a = open_date(write_raster(tmp_path / "a.tif", _rgb()))
    b = open_date(write_raster(tmp_path / "b.tif", np.concatenate([_rgb(), _rgb()[:1]])))
    with pytest.raises(InputRasterError, match=r"different band counts.*--bands"):
        select_bands([a, b], None)
    assert select_bands([a, b], (3, 2, 1)) == (3, 2, 1)
    with pytest.raises(InputRasterError, match=r"band\(s\) \[4\] do not exist"):
        select_bands([a, b], (4, 2, 1))


@pytest.mark.parametrize("text", ["1,2", "0,1,2", "a,b,c"])
def test_bad_band_lists(text: str) -> None:
    with pytest.raises(InputRasterError, match="--bands"):
        parse_bands(text)


# --- the pair -----------------------------------------------------------------------


def test_same_grid_pair_reads_exact_pixels(tmp_path: Path) -> None:
    a, b = _rgb(seed=1), _rgb(seed=2)
    pair = _pair(tmp_path, a, b)
    assert (pair.grid.width, pair.grid.height) == (150, 120)
    assert pair.grid.transform == ORIGIN
    window = chip_windows(pair.grid, 64, 8)[0]
    chip = pair.read_chip(window)
    np.testing.assert_array_equal(chip.image_a, a[:, :64, :64])
    np.testing.assert_array_equal(chip.image_b, b[:, :64, :64])
    assert chip.valid.all()


def test_edge_chip_padding_is_invalid(tmp_path: Path) -> None:
    pair = _pair(tmp_path, _rgb(), _rgb(seed=5))
    last = chip_windows(pair.grid, 64, 8)[-1]
    chip = pair.read_chip(last)
    inside_rows = pair.grid.height - last.row_off
    inside_cols = pair.grid.width - last.col_off
    assert chip.valid[:inside_rows, :inside_cols].all()
    assert not chip.valid[inside_rows:, :].any() and not chip.valid[:, inside_cols:].any()


def test_partial_overlap_stays_on_a_grid(tmp_path: Path) -> None:
    # b starts 40.5 pixels to the right and 30 pixels down: the overlap snaps to a's pixels.
    shift = ORIGIN @ Affine.translation(40.5, 30)
    pair = _pair(tmp_path, _rgb(), _rgb(seed=4), transform=shift)
    t = pair.grid.transform
    assert (t.a, t.e) == (ORIGIN.a, ORIGIN.e)
    col_off = (t.c - ORIGIN.c) / ORIGIN.a
    row_off = (t.f - ORIGIN.f) / ORIGIN.e
    assert (col_off, row_off) == (40, 30)
    assert (pair.grid.width, pair.grid.height) == (110, 90)


def test_no_overlap_is_refused(tmp_path: Path) -> None:
    far = ORIGIN @ Affine.translation(10_000, 0)
    with pytest.raises(InputRasterError, match="do not overlap"):
        _pair(tmp_path, _rgb(), _rgb(), transform=far)


def test_b_in_another_crs_is_reprojected_onto_a(tmp_path: Path) -> None:
    a = _rgb(160, 160, seed=7)
    path_a = write_raster(tmp_path / "a.tif", a)
    path_b = warp_to(path_a, tmp_path / "b_wgs84.tif", CRS.from_epsg(4326))
    info_a, info_b = open_date(path_a), open_date(path_b)
    pair = BitemporalPair(info_a, info_b, bands=(1, 2, 3))
    assert pair.grid.crs == info_a.crs and pair.grid.transform.a == ORIGIN.a
    chip = pair.read_chip(chip_windows(pair.grid, 96, 16)[0])
    inner = chip.valid.copy()
    inner[:8], inner[-8:], inner[:, :8], inner[:, -8:] = False, False, False, False
    assert inner.sum() > 0.5 * inner.size
    diff = np.abs(chip.image_a - chip.image_b)[:, inner]
    assert np.median(diff) < 6  # same scene after two resamplings: nearly identical


def test_nodata_border_is_invalid(tmp_path: Path) -> None:
    b = _rgb(seed=8)
    b[:, :, :20] = 0
    pair = _pair(tmp_path, _rgb(), b, nodata=0)
    chip = pair.read_chip(chip_windows(pair.grid, 64, 8)[0])
    assert not chip.valid[:, :20].any() and chip.valid[:, 20:].all()


def test_all_nodata_overlap_is_refused(tmp_path: Path) -> None:
    pair = _pair(tmp_path, _rgb(), np.zeros((3, 120, 150), np.uint8), nodata=0)
    with pytest.raises(InputRasterError, match="only nodata"):
        JointStretch.fit(pair)


def test_uint16_stretch_is_joint_across_dates(tmp_path: Path) -> None:
    base = (texture(100, 100, bands=4, seed=9) * 1000 + 500).astype(np.uint16)
    brighter = (base.astype(np.float32) * 2).astype(np.uint16)  # e.g. other sun angle
    info_a = open_date(write_raster(tmp_path / "a.tif", base))
    info_b = open_date(write_raster(tmp_path / "b.tif", brighter))
    pair = BitemporalPair(info_a, info_b, bands=select_bands([info_a, info_b], None))
    stretch = JointStretch.fit(pair)
    chip = pair.read_chip(chip_windows(pair.grid, 100, 0)[0])
    scaled_a, scaled_b = stretch.apply(chip.image_a), stretch.apply(chip.image_b)
    assert scaled_a.shape == (3, 100, 100)
    assert scaled_a.min() >= 0 and scaled_b.max() <= 255
    # One stretch for both dates keeps b brighter; per-date stretching would equalise them.
    assert scaled_b.mean() > scaled_a.mean() + 40


def test_uint8_is_not_stretched(tmp_path: Path) -> None:
    pair = _pair(tmp_path, _rgb(), _rgb(seed=3))
    assert JointStretch.fit(pair) == JointStretch.identity(3)


def test_single_band_is_replicated_to_rgb() -> None:
    stretch = JointStretch(low=(0.0,), high=(100.0,))
    out = stretch.apply(np.full((1, 4, 4), 50.0, np.float32))
    assert out.shape == (3, 4, 4) and np.allclose(out, 127.5)
