"""Shared discovery and validation of folder datasets; the shared label values and splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rs_sam.data.class_table import ClassTable
from rs_sam.data.discovery import files_by_stem, find_file, list_images, require_same_size
from rs_sam.data.image_files import ImageFileError
from rs_sam.data.labels import IGNORE, is_binary
from rs_sam.data.splits import make_split
from rs_sam.losses.change import ChangeLoss
from rs_sam.losses.segment import SegmentationLoss


def _png(path: Path, width: int = 8, height: int = 6) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((height, width), np.uint8)).save(path, format="PNG")
    return path


def test_list_images_filters_suffixes_and_recurses_on_demand(tmp_path: Path) -> None:
    _png(tmp_path / "b.PNG")
    _png(tmp_path / "a.png")
    (tmp_path / "notes.txt").write_text("x")
    _png(tmp_path / "sub" / "c.png")
    assert [p.name for p in list_images(tmp_path)] == ["a.png", "b.PNG"]
    assert [p.name for p in list_images(tmp_path, recursive=True)] == ["a.png", "b.PNG", "c.png"]


def test_find_file_by_name_then_by_stem(tmp_path: Path) -> None:
    exact = _png(tmp_path / "x.png")
    other = _png(tmp_path / "y.tif.png")  # stem "y.tif"
    assert find_file(tmp_path, "x.png") == exact
    assert find_file(tmp_path, "x.jpg") == exact  # same stem, another suffix
    assert find_file(tmp_path, "y.tif.bmp") == other
    assert find_file(tmp_path, "z.png") is None
    assert find_file(tmp_path / "missing", "x.png") is None


def test_files_by_stem_ranks_suffixes(tmp_path: Path) -> None:
    _png(tmp_path / "x.jpg")
    png = _png(tmp_path / "x.png")
    jpg_only = _png(tmp_path / "y.jpg")
    assert files_by_stem(tmp_path, (".png", ".jpg")) == {"x": png, "y": jpg_only}
    assert files_by_stem(tmp_path / "missing", (".png",)) == {}


def test_require_same_size_raises_the_callers_error(tmp_path: Path) -> None:
    class LayoutError(ImageFileError):
        pass

    image, label = _png(tmp_path / "i.png", 8, 6), _png(tmp_path / "l.png", 8, 5)
    require_same_size("label", image, image, (8, 6), LayoutError)
    with pytest.raises(LayoutError, match=r"label .*l.png is 8x5 but image .*i.png is 8x6"):
        require_same_size("label", label, image, (8, 6), LayoutError)


def test_ignore_is_one_value_everywhere() -> None:
    assert IGNORE == 255
    assert ClassTable(names=("a", "b")).ignore_index == IGNORE
    assert ClassTable.from_config({"classes": ["a"]}).ignore_index == IGNORE
    assert ChangeLoss().ignore_index == IGNORE
    assert SegmentationLoss().ignore_index == IGNORE
    assert ClassTable(names=("a",), ignore_index=99).ignore_index == 99  # still configurable


def test_is_binary() -> None:
    assert is_binary([0, 1]) and is_binary([255]) and is_binary([]) and is_binary({0, 255})
    assert not is_binary([0, 1, 255]) and not is_binary([0, 2])


def test_make_split_lives_in_its_own_module() -> None:
    from rs_sam.data import change_datasets

    assert change_datasets.make_split is make_split
    assert make_split(["a", "b", "c"], 0.0, seed=1) == (["a", "b", "c"], [])
