"""A run's outputs (:mod:`rs_sam.inference.outputs`): checked up front, published together."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import geopandas as gpd
import pytest
from shapely.geometry import box

from rs_sam.errors import OutputExistsError, OutputPathError
from rs_sam.inference import outputs as outputs_module
from rs_sam.inference.outputs import WORK_PREFIX, RunOutputs
from rs_sam.vector.io import write_vector_file


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every file and folder under ``folder`` (hidden ones too) with its bytes."""
    return {
        str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None
        for p in sorted(folder.rglob("*"))
    }


def frame(n: int = 2) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {"id": list(range(1, n + 1))},
        geometry=[box(i, i, i + 1, i + 1) for i in range(n)],
        crs="EPSG:32633",
    )


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    """Two output folders with one existing output each."""
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    (one / "old.tif").write_bytes(b"old raster")
    (two / "out.gpkg").write_bytes(b"old vector")
    return one, two


def test_outputs_are_published_together_and_work_folders_removed(
    tmp_path: Path, folders: tuple[Path, Path]
) -> None:
    one, two = folders
    outputs = RunOutputs(overwrite=True)
    vector = outputs.vector(two / "out.gpkg")
    raster = outputs.raster(one / "new.tif", what="probability raster")
    assert raster is not None
    with outputs.staging() as stage:
        write_vector_file(frame(), stage.path(vector))
        stage.path(raster).write_bytes(b"new raster")
        assert not raster.exists()  # nothing is published before the block ends
        assert (two / "out.gpkg").read_bytes() == b"old vector"
    assert sorted(os.listdir(one)) == ["new.tif", "old.tif"]
    assert sorted(os.listdir(two)) == ["out.gpkg"]
    assert len(gpd.read_file(vector)) == 2
    assert raster.read_bytes() == b"new raster"


def test_a_failed_run_leaves_no_new_output_and_existing_ones_untouched(
    tmp_path: Path, folders: tuple[Path, Path]
) -> None:
    one, two = folders
    before = snapshot(tmp_path)
    outputs = RunOutputs(overwrite=True)
    vector = outputs.vector(two / "out.gpkg")
    raster = outputs.raster(one / "new.tif", what="probability raster")
    with pytest.raises(RuntimeError, match="chip failed"), outputs.staging() as stage:
        write_vector_file(frame(), stage.path(vector))
        stage.path(raster).write_bytes(b"half")  # type: ignore[arg-type]
        raise RuntimeError("chip failed")
    assert snapshot(tmp_path) == before


def test_a_failure_while_publishing_restores_what_was_published(
    tmp_path: Path, folders: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    one, two = folders
    before = snapshot(tmp_path)
    outputs = RunOutputs(overwrite=True)
    vector = outputs.vector(two / "out.gpkg")
    old = outputs.raster(one / "old.tif", what="probability raster")
    new = outputs.raster(one / "new.tif", what="class raster")
    replace = os.replace

    def fail_on_new(src: object, dst: object) -> None:
        if Path(str(dst)).name == "new.tif":
            raise OSError(errno.EIO, "I/O error", str(dst))
        replace(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(outputs_module.os, "replace", fail_on_new)
    with pytest.raises(OSError, match="I/O error"), outputs.staging() as stage:
        write_vector_file(frame(), stage.path(vector))
        stage.path(old).write_bytes(b"replacement")  # type: ignore[arg-type]
        stage.path(new).write_bytes(b"new")  # type: ignore[arg-type]
    assert snapshot(tmp_path) == before


def test_shapefile_sidecars_are_published_and_stale_ones_restored_on_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "out.shp").write_bytes(b"old shp")
    (tmp_path / "out.qix").write_bytes(b"old index")
    outputs = RunOutputs(overwrite=True)
    shp = outputs.vector(tmp_path / "out.shp")
    with outputs.staging() as stage:
        write_vector_file(frame(3), stage.path(shp))
    assert "out.qix" not in os.listdir(tmp_path)  # stale sidecar of the replaced shapefile
    assert len(gpd.read_file(shp)) == 3

    before = snapshot(tmp_path)
    (tmp_path / "out.qix").write_bytes(b"index")
    before = snapshot(tmp_path)
    outputs = RunOutputs(overwrite=True)
    shp = outputs.vector(tmp_path / "out.shp")
    replace = os.replace

    def fail_on_main(src: object, dst: object) -> None:
        if str(dst).endswith(".shp"):
            raise OSError(errno.EIO, "I/O error", str(dst))
        replace(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(outputs_module.os, "replace", fail_on_main)
    with pytest.raises(OSError), outputs.staging() as stage:
        write_vector_file(frame(1), stage.path(shp))
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("second", ["./o.tif", "link.tif", "sub/../o.tif", "hard.tif"])
def test_two_outputs_that_are_one_file_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, second: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    (tmp_path / "o.tif").write_bytes(b"existing")
    (tmp_path / "link.tif").symlink_to(tmp_path / "o.tif")
    os.link(tmp_path / "o.tif", tmp_path / "hard.tif")
    before = snapshot(tmp_path)
    outputs = RunOutputs(overwrite=True)
    outputs.raster("o.tif", what="object map")
    with pytest.raises(OutputPathError, match="are the same file"):
        outputs.raster(second, what="boundary map")
    assert snapshot(tmp_path) == before


def test_a_symlink_to_a_file_not_yet_written_is_the_same_file(tmp_path: Path) -> None:
    (tmp_path / "link.tif").symlink_to(tmp_path / "o.tif")  # dangling until o.tif exists
    outputs = RunOutputs(overwrite=True)
    outputs.raster(tmp_path / "o.tif", what="object map")
    with pytest.raises(OutputPathError, match=r"boundary map .*link\.tif and object map"):
        outputs.raster(tmp_path / "link.tif", what="boundary map")


def test_output_checks(tmp_path: Path) -> None:
    (tmp_path / "dir.tif").mkdir()
    (tmp_path / "exists.tif").write_bytes(b"x")
    outputs = RunOutputs(overwrite=False)
    with pytest.raises(OutputPathError, match="is a folder"):
        outputs.raster(tmp_path / "dir.tif", what="probability raster")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        outputs.raster(tmp_path / "exists.tif", what="probability raster")
    with pytest.raises(OutputPathError, match="is a file"):
        outputs.folder(tmp_path / "exists.tif", what="object map folder")
    with pytest.raises(OutputPathError, match="at least one output"), outputs.staging():
        pass


def test_folders_made_for_a_failed_run_are_removed(tmp_path: Path) -> None:
    before = snapshot(tmp_path)
    outputs = RunOutputs(overwrite=False)
    maps = outputs.folder(tmp_path / "new" / "maps", what="object map folder")
    target = outputs.raster(maps / "a.tif", what="object map")
    with pytest.raises(RuntimeError), outputs.staging() as stage:
        stage.path(target).write_bytes(b"x")  # type: ignore[arg-type]
        raise RuntimeError("failed")
    assert snapshot(tmp_path) == before


def test_no_space_left_is_reported_as_such(tmp_path: Path) -> None:
    (tmp_path / "out.gpkg").write_bytes(b"old")
    before = snapshot(tmp_path)
    outputs = RunOutputs(overwrite=True)
    vector = outputs.vector(tmp_path / "out.gpkg")
    with (
        pytest.raises(OutputPathError, match=r"^no space left on device /\S* writing .*out\.gpkg;"),
        outputs.staging() as stage,
    ):
        stage.path(vector).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert snapshot(tmp_path) == before


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_work_folders_of_killed_runs_are_removed_by_the_next_run(tmp_path: Path) -> None:
    before = snapshot(tmp_path)
    dead = tmp_path / f"{WORK_PREFIX}{_dead_pid()}-0a1b2c3d"
    (dead / "work").mkdir(parents=True)
    (dead / "owner.lock").write_bytes(b"")
    (dead / "work" / "accumulator.tif").write_bytes(b"stale")
    unlocked = tmp_path / f"{WORK_PREFIX}{_dead_pid()}-4e5f6a7b"  # killed before its lock
    unlocked.mkdir()
    foreign = tmp_path / ".rs-sam-notours"
    foreign.mkdir()
    live = RunOutputs(overwrite=False)
    live_out = live.vector(tmp_path / "live.gpkg")
    with live.staging() as stage:  # a run in progress in the same folder is left alone
        other = RunOutputs(overwrite=False)
        other_out = other.vector(tmp_path / "other.gpkg")
        assert not dead.exists() and not unlocked.exists()
        assert foreign.exists()
        with other.staging() as other_stage:
            write_vector_file(frame(), other_stage.path(other_out))
        assert stage.workdir.parent.exists()
        write_vector_file(frame(), stage.path(live_out))
    foreign.rmdir()
    assert sorted(snapshot(tmp_path)) == sorted([*before, "live.gpkg", "other.gpkg"])
