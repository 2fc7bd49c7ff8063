"""Class rasters from blended probabilities, and each polygon's majority class."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
from shapely.geometry import box

from rs_sam.inference.classes import CLASS_NODATA, write_class_raster
from rs_sam.vector.zonal import majority_class
from tests.helpers.synthetic import ORIGIN, UTM33, write_raster


def _probabilities(path: Path, winner: np.ndarray, classes: int) -> Path:
    """k-band probabilities whose argmax is ``winner`` (-1: nodata, as the mosaic writes)."""
    rng = np.random.default_rng(0)
    data = rng.uniform(0.0, 0.4, (classes, *winner.shape)).astype(np.float32)
    for k in range(classes):
        data[k][winner == k] = 0.9
    data[:, winner < 0] = -1.0
    return write_raster(path, data, nodata=-1.0)


def test_class_raster_is_the_argmax_with_nodata_kept(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    winner_a = rng.integers(0, 5, (40, 50))
    winner_a[:3, :7] = -1
    winner_b = rng.integers(0, 5, (40, 50))
    out = write_class_raster(
        [
            _probabilities(tmp_path / "a.tif", winner_a, 5),
            _probabilities(tmp_path / "b.tif", winner_b, 5),
        ],
        tmp_path / "classes.tif",
        descriptions=["date a", "date b"],
    )
    with rasterio.open(out) as src:
        assert src.count == 2 and src.dtypes == ("uint8", "uint8") and src.crs == UTM33
        assert src.transform == ORIGIN and src.descriptions == ("date a", "date b")
        a, b = src.read()
    expected_a = np.where(winner_a < 0, CLASS_NODATA, winner_a)
    assert np.array_equal(a, expected_a) and np.array_equal(b, winner_b)
    assert not list(tmp_path.glob(".*.tmp"))


def test_majority_class_per_polygon(tmp_path: Path) -> None:
    classes = np.zeros((1, 20, 30), np.uint8)
    classes[0, :, 10:] = 3
    classes[0, 5:15, 20:30] = CLASS_NODATA
    raster = write_raster(tmp_path / "c.tif", classes, nodata=CLASS_NODATA)

    def px(col0: float, row0: float, col1: float, row1: float):  # pixel box -> map box
        x0, y0 = ORIGIN * (col0, row0)
        x1, y1 = ORIGIN * (col1, row1)
        return box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))

    polygons = gpd.GeoDataFrame(
        geometry=[
            px(0, 0, 10, 20),  # all class 0
            px(6, 0, 16, 10),  # 4 columns of 0, 6 of 3 -> 3
            px(20, 5, 30, 15),  # only nodata -> <NA>
            px(18, 5, 30, 15),  # nodata ignored: 2 columns of 3 -> 3
            px(9.2, 2, 9.4, 3),  # thinner than a pixel centre: the touched pixel (class 0)
            px(40, 40, 50, 50),  # outside the raster
        ],
        crs=UTM33,
    )
    found = majority_class(polygons, raster)
    assert str(found.dtype) == "Int64"
    assert found.tolist()[:2] == [0, 3] and found.isna().tolist() == [
        False,
        False,
        True,
        False,
        False,
        True,
    ]
    assert found.iloc[3] == 3 and found.iloc[4] == 0
