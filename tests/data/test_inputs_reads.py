"""Pixels that cannot be read, and thin or tiny rasters, at the data readers (issue 12)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from rs_sam.data.grid import ChipWindow, RasterGrid, chip_windows, overview_steps
from rs_sam.data.normalize import JointStretch
from rs_sam.data.pair import BitemporalPair
from rs_sam.data.rasters import open_date, parse_date_input
from rs_sam.data.scene import Scene
from rs_sam.errors import InputRasterError, RasterReadError, RemoteInputError
from tests.helpers.damaged_rasters import cut_in_half, vrt_of
from tests.helpers.synthetic import ORIGIN, UTM33, texture, write_raster


def _rgb(height: int, width: int, seed: int = 0, dtype: str = "uint8") -> np.ndarray:
    scale = 200 if dtype == "uint8" else 4000
    return (texture(height, width, seed=seed) * scale + 20).astype(dtype)


def _first_bad_window(scene: Scene, size: int = 64) -> ChipWindow:
    """The first chip whose read fails, found by reading the file directly with rasterio."""
    with rasterio.open(scene.info.path) as src:
        for window in chip_windows(scene.grid, size, 0):
            try:
                src.read(window=window.clipped(scene.grid))
            except rasterio.errors.RasterioIOError:
                return window
    raise AssertionError("the damaged file reads fine")


def test_a_damaged_chip_names_the_file_and_its_window(tmp_path: Path) -> None:
    scene = Scene(open_date(cut_in_half(tmp_path / "cut.tif")), bands=(1, 2, 3))
    window = _first_bad_window(scene)
    last_row = min(window.row_off + window.size, 300) - 1
    with pytest.raises(RasterReadError) as info:
        scene.read_chip(window)
    message = str(info.value)
    assert "\n" not in message
    assert f"cut.tif in rows {window.row_off}-{last_row}, columns 0-63" in message
    assert "damaged or incomplete" in message and "gdalinfo -checksum" in message
    assert isinstance(info.value, InputRasterError)  # bad input: exit 2


def test_a_damaged_b_is_named_and_a_is_not(tmp_path: Path) -> None:
    a = open_date(write_raster(tmp_path / "good.tif", _rgb(300, 300)))
    b = open_date(cut_in_half(tmp_path / "cut.tif"))
    pair = BitemporalPair(a, b, bands=(1, 2, 3))
    with pytest.raises(RasterReadError, match=r"pixels of \S*cut\.tif in rows 0-299") as info:
        JointStretch.fit(pair)
    assert "good.tif" not in str(info.value)


def test_a_vrt_whose_source_is_gone_names_the_vrt(tmp_path: Path) -> None:
    source = write_raster(tmp_path / "source.tif", _rgb(40, 50))
    vrt = vrt_of(source, tmp_path / "mosaic.vrt")
    source.unlink()
    scene = Scene(open_date(vrt), bands=(1, 2, 3))  # the header is in the VRT itself
    with pytest.raises(RasterReadError, match=r"mosaic\.vrt in rows 0-39, columns 0-49"):
        JointStretch.fit_scene(scene)


def test_overview_steps_never_exceed_an_axis() -> None:
    def grid(width: int, height: int) -> RasterGrid:
        return RasterGrid(crs=UTM33, transform=ORIGIN, width=width, height=height)

    assert overview_steps(grid(3000, 1), 1024) == (3, 1)
    assert overview_steps(grid(1, 3000), 1024) == (1, 3)
    assert overview_steps(grid(3000, 2000), 1024) == (3, 3)  # square rasters: unchanged
    assert overview_steps(grid(7, 5), 1024) == (1, 1)


@pytest.mark.parametrize("shape", [(1, 3000), (3000, 1), (2, 2500)])
def test_a_thin_pair_has_valid_pixels_in_its_overview(tmp_path: Path, shape) -> None:
    height, width = shape
    a = open_date(write_raster(tmp_path / "a.tif", _rgb(height, width, dtype="uint16")))
    b = open_date(write_raster(tmp_path / "b.tif", _rgb(height, width, 1, dtype="uint16")))
    pair = BitemporalPair(a, b, bands=(1, 2, 3))
    image_a, _, valid = pair.read_overview()
    assert valid.mean() > 0.99  # decimated pixels lie on the strip (a last one may not)
    stretch = JointStretch.fit(pair)
    assert all(low >= 20 for low in stretch.low)  # fitted on the data, not on padding zeros
    assert image_a.shape[1:] == valid.shape


def test_a_thin_scene_is_stretched_on_its_data(tmp_path: Path) -> None:
    scene = Scene(open_date(write_raster(tmp_path / "s.tif", _rgb(1, 3000, dtype="uint16"))),
                  bands=(1, 2, 3))  # fmt: skip
    stretch = JointStretch.fit_scene(scene)
    assert all(low >= 20 for low in stretch.low)


@pytest.mark.parametrize(
    "value", ["http://127.0.0.1:9/a.tif", ["http://127.0.0.1:9/b1.tif", "b2.tif"]]
)
def test_remote_inputs_are_read_as_remote(value) -> None:
    url = value if isinstance(value, str) else value[0]
    assert url in parse_date_input(value)  # as given, not a Path that folds '//'
    with pytest.raises(RemoteInputError, match=f"{url} cannot be reached"):
        open_date(value)


def test_a_local_path_that_looks_like_a_url_is_still_local(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ab:").mkdir()
    path = write_raster(tmp_path / "ab:" / "x.tif", _rgb(10, 10))
    assert open_date("ab:/x.tif").width == 10 == open_date(path).width
    assert parse_date_input("C:/data/x.tif") == [Path("C:/data/x.tif")]  # a drive, not a URL
