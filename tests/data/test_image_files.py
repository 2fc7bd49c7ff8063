"""Plain image files: reading, sizes, chips and the errors shared by the file datasets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from affine import Affine
from PIL import Image

from rs_sam.data.change_datasets import ChangeDatasetError
from rs_sam.data.grid import ChipWindow
from rs_sam.data.image_files import (
    ImageFileError,
    chip_index,
    crop_chip,
    format_list,
    format_size,
    grid_differences,
    image_size,
    nodata_equal,
    pick_bands,
    pixel_grid,
    read_image,
)
from rs_sam.data.segment_datasets import SegmentDatasetError
from rs_sam.errors import InputRasterError
from tests.helpers.synthetic import write_raster


def test_dataset_errors_are_image_file_errors() -> None:
    assert issubclass(ImageFileError, InputRasterError)
    assert issubclass(ChangeDatasetError, ImageFileError)
    assert issubclass(SegmentDatasetError, ImageFileError)


def test_read_image_is_band_first_for_pil_modes(tmp_path: Path) -> None:
    rgba = np.zeros((5, 7, 4), np.uint8)
    rgba[..., 0] = 200
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(np.full((5, 7), 9, np.uint8), "L").save(tmp_path / "grey.png")
    Image.fromarray(np.full((5, 7, 2), 4, np.uint8), "LA").save(tmp_path / "la.png")
    rgb = read_image(tmp_path / "rgba.png")
    assert rgb.shape == (3, 5, 7) and (rgb[0] == 200).all()  # alpha dropped
    assert read_image(tmp_path / "grey.png").shape == (1, 5, 7)
    assert read_image(tmp_path / "la.png").shape == (1, 5, 7)
    assert image_size(tmp_path / "rgba.png") == (7, 5)


def test_tiffs_are_read_without_georeferencing(tmp_path: Path) -> None:
    data = np.arange(2 * 4 * 6, dtype=np.uint16).reshape(2, 4, 6)
    path = write_raster(tmp_path / "x.tif", data, crs=None)
    np.testing.assert_array_equal(read_image(path), data)
    assert image_size(path) == (6, 4)


@pytest.mark.parametrize("name", ["broken.png", "broken.tif"])
def test_unreadable_files_raise_image_file_error(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"not an image")
    with pytest.raises(ImageFileError, match=rf"{name} is not a readable image"):
        read_image(path)
    with pytest.raises(ImageFileError, match="pass PNG, TIFF, BMP or JPEG"):
        image_size(path)


def test_pick_bands() -> None:
    image = np.arange(5)[:, None, None] * np.ones((5, 2, 2))
    assert pick_bands(image, None, Path("x.tif"))[:, 0, 0].tolist() == [0, 1, 2]
    assert pick_bands(image, [5, 1], Path("x.tif"))[:, 0, 0].tolist() == [4, 0]
    assert pick_bands(image[:1], None, Path("x.tif")).shape[0] == 1
    with pytest.raises(ImageFileError, match=r"x.tif has 5 band\(s\), so band\(s\) \[6\]"):
        pick_bands(image, [1, 6], Path("x.tif"))
    with pytest.raises(ImageFileError, match="2 bands; choose 1 or 3"):
        pick_bands(image[:2], None, Path("x.tif"))


def test_crop_chip_pads_past_the_edge() -> None:
    array = np.arange(2 * 3 * 5).reshape(2, 3, 5)
    chip = crop_chip(array, ChipWindow(row_off=1, col_off=2, size=4, index=0), -1)
    assert chip.shape == (2, 4, 4) and chip.dtype == array.dtype
    np.testing.assert_array_equal(chip[:, :2, :3], array[:, 1:, 2:])
    assert (chip[:, 2:, :] == -1).all() and (chip[:, :, 3:] == -1).all()


def test_chip_index_and_pixel_grid() -> None:
    grid = pixel_grid(10, 4)
    assert (grid.width, grid.height, grid.res) == (10, 4, (1.0, 1.0))
    assert chip_index([(10, 4), (3, 3)], None, 0) == [(0, None), (1, None)]
    index = chip_index([(10, 4), (3, 3)], 4, 0)
    assert [i for i, _ in index] == [0, 0, 0, 1]
    assert [w.col_off for _, w in index if w is not None] == [0, 4, 8, 0]


def test_nodata_equal_and_messages() -> None:
    values = np.array([1.0, np.nan, 3.0])
    assert nodata_equal(values, float("nan")).tolist() == [False, True, False]
    assert nodata_equal(values, 3.0).tolist() == [False, False, True]
    assert format_size((40, 30)) == "40x30"
    assert format_list([1, 2]) == "[1, 2]"
    assert format_list(list(range(8))) == "[0, 1, 2, 3, 4, 5, ... 2 more]"


def test_grid_differences() -> None:
    grid = pixel_grid(10, 4)
    assert grid_differences(grid, grid) == []
    moved = pixel_grid(10, 5)
    assert grid_differences(moved, grid) == [
        f"transform {tuple(moved.transform)[:6]} instead of {tuple(grid.transform)[:6]}",
        "size 10x5 instead of 10x4",
    ]
    shifted = type(grid)(
        crs=grid.crs, transform=Affine.translation(1, 0) * grid.transform, width=10, height=4
    )
    assert len(grid_differences(shifted, grid)) == 1
