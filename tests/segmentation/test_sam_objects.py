"""``sam-objects``: object-id and boundary rasters (SSRS targets) through the tiling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from PIL import Image

from rs_sam.segmentation.sam_objects import boundaries, sam_objects
from rs_sam.segmentation.settings import SegmentSettings
from tests.helpers.stand_ins import blob_scene, blobs
from tests.helpers.synthetic import ORIGIN, UTM33, write_raster

TILING = SegmentSettings(chip_size=64, overlap=16)


def test_object_ids_are_unique_across_chips_and_match_the_objects(tmp_path: Path) -> None:
    image = blob_scene()
    raster = write_raster(tmp_path / "img.tif", image)
    ids_path, edge_path = tmp_path / "sgo.tif", tmp_path / "sgb.tif"
    result = sam_objects(raster, ids_path, boundary_out=edge_path, settings=TILING,
                         generator=blobs, show_progress=False)  # fmt: skip
    assert result.count == 5
    with rasterio.open(ids_path) as src:
        assert src.dtypes[0] == "uint32" and src.crs == UTM33 and src.transform == ORIGIN
        ids = src.read(1)
    bright = image[0] > 200
    assert np.array_equal(ids > 0, bright)
    # each object (a bright rectangle, several cut by chip borders) has exactly one id
    assert sorted(np.unique(ids[ids > 0]).tolist()) == [1, 2, 3, 4, 5]
    for value in range(1, 6):
        rows, cols = np.nonzero(ids == value)
        assert len(rows) == (np.ptp(rows) + 1) * (np.ptp(cols) + 1)  # one whole rectangle
    with rasterio.open(edge_path) as src:
        edges = src.read(1)
    assert np.array_equal(edges.astype(bool), boundaries(ids))
    assert edges[45, 60] == 0 and edges[40, 60] == 1  # inside vs top edge of an object


def test_boundaries_ignore_the_array_edge() -> None:
    ids = np.zeros((5, 6), np.uint32)
    ids[1:4, 0:3] = 7
    edge = boundaries(ids)
    expected = np.zeros((5, 6), bool)
    expected[1:4, 0:4] = True  # the object's border pixels and the background next to it
    expected[0, 0:3] = expected[4, 0:3] = True
    expected[2, 1] = False  # inside
    expected[2, 0] = False  # on the image edge only
    assert np.array_equal(edge, expected)


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_folder_of_plain_images(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    for i in range(2):
        Image.fromarray(blob_scene(80, 90).transpose(1, 2, 0)).save(images / f"tile_{i}.png")
    sam_objects(images, tmp_path / "sgo", boundary_out=tmp_path / "sgb", settings=TILING,
                generator=blobs, show_progress=False)  # fmt: skip
    for i in range(2):
        with rasterio.open(tmp_path / "sgo" / f"tile_{i}.tif") as src:
            assert src.crs is None and (src.width, src.height) == (90, 80)
            assert src.read(1).max() > 0
        assert (tmp_path / "sgb" / f"tile_{i}.tif").exists()
    with pytest.raises(FileExistsError, match="--overwrite"):
        sam_objects(images, tmp_path / "sgo", settings=TILING, generator=blobs,
                    show_progress=False)  # fmt: skip
    with pytest.raises(ValueError, match="holds no image"):
        sam_objects(tmp_path / "sgb" / "..", tmp_path / "x", generator=blobs)
