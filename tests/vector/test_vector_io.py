"""Tests for rs_sam.vector.io: path checks up front, atomic writes, every format."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import shapely

from rs_sam.errors import OutputExistsError, OutputPathError
from rs_sam.vector import SUPPORTED_SUFFIXES, check_output_path, write_vectors

SUFFIXES = sorted(SUPPORTED_SUFFIXES)


def result_frame(rows: int = 2) -> gpd.GeoDataFrame:
    """A frame shaped like polygonize_probability's output, in UTM 33N."""
    geoms = [
        shapely.box(400_000 + 10 * i, 5_000_000, 400_010 + 10 * i, 5_000_020) for i in range(rows)
    ]
    return gpd.GeoDataFrame(
        {
            "id": np.arange(1, rows + 1, dtype=np.int64),
            "area_m2": np.full(rows, 200.0),
            "score_mean": np.linspace(0.6, 0.9, rows),
            "score_max": np.full(rows, 0.95),
        },
        geometry=gpd.GeoSeries(geoms, crs="EPSG:32633"),
    )


def read_back(path: Path) -> gpd.GeoDataFrame:
    if path.suffix == ".parquet":
        return gpd.read_parquet(path)
    return gpd.read_file(path)


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_round_trip(tmp_path: Path, suffix: str):
    gdf = result_frame()
    out = write_vectors(gdf, tmp_path / f"result{suffix}", overwrite=False)
    assert out == tmp_path / f"result{suffix}"
    back = read_back(out)
    assert back.crs.to_epsg() == 32633
    assert list(back.columns) == ["id", "area_m2", "score_mean", "score_max", "geometry"]
    assert back.id.tolist() == [1, 2]
    np.testing.assert_allclose(back.score_mean, gdf.score_mean)
    assert all(shapely.equals(a, b) for a, b in zip(back.geometry, gdf.geometry, strict=True))
    assert not [name for name in files_in(tmp_path) if name.startswith(".")]  # no temp left


def test_shapefile_writes_its_sidecars(tmp_path: Path):
    write_vectors(result_frame(), tmp_path / "result.shp", overwrite=False)
    assert {"result.shp", "result.shx", "result.dbf", "result.prj"} <= set(files_in(tmp_path))


def test_gpkg_layer_name(tmp_path: Path):
    import pyogrio

    write_vectors(result_frame(), tmp_path / "a.gpkg", overwrite=False, layer="buildings")
    write_vectors(result_frame(), tmp_path / "b.gpkg", overwrite=False)
    assert pyogrio.list_layers(tmp_path / "a.gpkg")[:, 0].tolist() == ["buildings"]
    assert pyogrio.list_layers(tmp_path / "b.gpkg")[:, 0].tolist() == ["b"]


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_empty_result_is_a_valid_layer(tmp_path: Path, suffix: str):
    empty = result_frame(0)
    out = write_vectors(empty, tmp_path / f"empty{suffix}", overwrite=False)
    back = read_back(out)
    assert len(back) == 0
    assert back.crs.to_epsg() == 32633
    if suffix != ".geojson":  # GeoJSON has no schema beyond its features
        assert list(back.columns) == ["id", "area_m2", "score_mean", "score_max", "geometry"]


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_existing_output_refused_and_untouched(tmp_path: Path, suffix: str):
    out = tmp_path / f"result{suffix}"
    out.write_bytes(b"precious")
    with pytest.raises(OutputExistsError, match="pass --overwrite to replace it"):
        check_output_path(out, overwrite=False)
    with pytest.raises(OutputExistsError):
        write_vectors(result_frame(), out, overwrite=False)
    assert out.read_bytes() == b"precious"
    assert files_in(tmp_path) == [out.name]
    write_vectors(result_frame(), out, overwrite=True)
    assert len(read_back(out)) == 2


def test_shapefile_sidecar_counts_as_existing(tmp_path: Path):
    (tmp_path / "result.dbf").write_bytes(b"old")
    with pytest.raises(OutputExistsError, match=r"result\.dbf"):
        check_output_path(tmp_path / "result.shp", overwrite=False)


def test_overwriting_shapefile_removes_stale_sidecars(tmp_path: Path):
    write_vectors(result_frame(), tmp_path / "result.shp", overwrite=False)
    (tmp_path / "result.qix").write_bytes(b"stale spatial index")
    write_vectors(result_frame(3), tmp_path / "result.shp", overwrite=True)
    assert "result.qix" not in files_in(tmp_path)
    assert len(gpd.read_file(tmp_path / "result.shp")) == 3


def test_missing_folder_and_bad_suffix(tmp_path: Path):
    with pytest.raises(OutputPathError, match="missing") as err:
        check_output_path(tmp_path / "missing" / "out.gpkg", overwrite=False)
    assert "does not exist" in str(err.value)
    with pytest.raises(OutputPathError, match=r"\.geojson, \.gpkg, \.parquet, \.shp"):
        check_output_path(tmp_path / "out.kml", overwrite=True)
    with pytest.raises(OutputPathError, match="folder"):
        (tmp_path / "dir.gpkg").mkdir()
        check_output_path(tmp_path / "dir.gpkg", overwrite=True)
    assert check_output_path(tmp_path / "OUT.GPKG", overwrite=False) == tmp_path / "OUT.GPKG"


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_failed_write_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str
):
    out = tmp_path / f"result{suffix}"
    out.write_bytes(b"precious")
    method = "to_parquet" if suffix == ".parquet" else "to_file"

    def half_write(self: gpd.GeoDataFrame, path: Path, *args: object, **kwargs: object) -> None:
        Path(path).write_bytes(b"partial")
        if suffix == ".shp":
            Path(path).with_suffix(".dbf").write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(gpd.GeoDataFrame, method, half_write)
    with pytest.raises(OSError, match="disk full"):
        write_vectors(result_frame(), out, overwrite=True)
    assert files_in(tmp_path) == [out.name]
    assert out.read_bytes() == b"precious"
