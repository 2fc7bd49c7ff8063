"""Issue 12, items 1, 5 and 6 at the CLI: every output checked up front, published together.

Every test compares the whole folder listing (hidden files too) and the bytes of existing
files before and after a failed run.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

from rs_sam.cli.main import cli
from rs_sam.inference.mosaic import ProbabilityMosaic
from rs_sam.segmentation import sam_objects as sam_objects_module
from tests.helpers.synthetic import texture

FAST = ["--weights", "random", "--chip-size", "96", "--overlap", "16", "--points-per-side", "4",
        "--pred-iou-thresh", "0", "--stability-thresh", "0", "--threshold", "1", "-q"]  # fmt: skip
OBJECTS = ["--weights", "random", "--chip-size", "128", "--points-per-side", "4",
           "--pred-iou-thresh", "0", "--stability-thresh", "0", "--min-area", "0",
           "-q"]  # fmt: skip


def run(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result.exit_code, result.output


#: Name prefix of a run's hidden work folder beside its outputs.
WORK_PREFIX = ".rs-sam-"


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every file and folder under ``folder`` (hidden ones too) with its bytes."""
    return {
        str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None
        for p in sorted(folder.rglob("*"))
    }


def one_error_line(text: str) -> str:
    """The output's one line (warnings aside); fails on a traceback or a second line."""
    lines = [line for line in text.splitlines() if line and not line.startswith("WARNING")]
    assert len(lines) == 1 and "Traceback" not in text, text
    return lines[0]


@contextlib.contextmanager
def tmpfs(folder: Path, options: str) -> Iterator[Path]:
    """A small tmpfs mounted at ``folder`` (skips where mounting is not permitted)."""
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


@pytest.fixture
def existing(tmp_path: Path) -> tuple[Path, Path]:
    """An existing vector and probability raster that failed runs must leave as they are."""
    out, prob = tmp_path / "out.gpkg", tmp_path / "score.tif"
    out.write_bytes(b"precious vector")
    prob.write_bytes(b"precious raster")
    return out, prob


def test_a_failure_while_publishing_the_raster_leaves_the_old_outputs(
    tmp_path: Path, pair_paths, tiny_encoder, existing, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The vector is ready first; if the raster then cannot be put in place, neither is."""
    a, b = pair_paths
    out, prob = existing
    before = snapshot(tmp_path)
    replace, rename = os.replace, os.rename

    def full_at(name: str, real):  # type: ignore[no-untyped-def]
        def move(src: object, dst: object) -> None:
            if Path(str(dst)) == prob:
                raise OSError(errno.ENOSPC, "No space left on device", str(dst))
            real(src, dst)

        return move

    monkeypatch.setattr(os, "replace", full_at("replace", replace))
    monkeypatch.setattr(os, "rename", full_at("rename", rename))
    monkeypatch.setattr(shutil, "copyfile", full_at("copyfile", shutil.copyfile))
    code, text = run("detect-change", a, b, "-o", out, "--save-probability", prob,
                     "--overwrite", *FAST)  # fmt: skip
    assert code == 2, text
    assert one_error_line(text).startswith("Error: no space left on device ")
    assert f"writing {prob}" in text
    assert snapshot(tmp_path) == before


def test_no_space_in_a_writer_is_one_line_exit_2(
    tmp_path: Path, pair_paths, tiny_encoder, existing, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = pair_paths
    out, prob = existing
    before = snapshot(tmp_path)

    def full(self: ProbabilityMosaic, out_path: Path, **kwargs: object) -> Path:
        Path(out_path).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device", str(out_path))

    monkeypatch.setattr(ProbabilityMosaic, "finalize", full)
    code, text = run("detect-change", a, b, "-o", out, "--save-probability", prob,
                     "--overwrite", *FAST)  # fmt: skip
    assert code == 2, text
    assert "no space left on device" in one_error_line(text)
    assert snapshot(tmp_path) == before


def test_no_space_writing_the_vector_of_segment(
    tmp_path: Path, pair_paths, tiny_encoder, existing, monkeypatch: pytest.MonkeyPatch
) -> None:
    out, _ = existing
    before = snapshot(tmp_path)

    def full(self: gpd.GeoDataFrame, path: object, *args: object, **kwargs: object) -> None:
        Path(str(path)).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(gpd.GeoDataFrame, "to_file", full)
    code, text = run("segment", pair_paths[0], "-o", out, "--overwrite", *OBJECTS)
    assert code == 2, text
    assert f"writing {out}" in one_error_line(text)
    assert snapshot(tmp_path) == before


def test_a_full_file_system_for_the_raster(tmp_path: Path, pair_paths, tiny_encoder) -> None:
    """A real full tmpfs: the raster lives on another file system than the vector."""
    a, b = pair_paths
    with tmpfs(tmp_path / "small", "size=200k") as small:
        filler = small / "filler"
        free = shutil.disk_usage(small).free
        filler.write_bytes(b"\0" * max(free - 8192, 0))
        before, before_small = snapshot(tmp_path), snapshot(small)
        code, text = run("detect-change", a, b, "-o", tmp_path / "out.gpkg",
                         "--save-probability", small / "score.tif", *FAST)  # fmt: skip
        assert code == 2, text
        line = one_error_line(text)
        assert line.startswith(f"Error: no space left on device {small} writing "), line
        assert snapshot(small) == before_small
        assert snapshot(tmp_path) == before


def test_a_read_only_folder_is_refused_before_any_work(
    tmp_path: Path, pair_paths, tiny_encoder
) -> None:
    a, b = pair_paths
    with tmpfs(tmp_path / "ro", "ro,size=64k") as read_only:
        before = snapshot(tmp_path)
        code, text = run("detect-change", a, b, "-o", tmp_path / "out.gpkg",
                         "--save-probability", read_only / "score.tif", *FAST)  # fmt: skip
        assert code == 2, text
        assert "is not writable" in one_error_line(text)
        assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    ("boundary", "overwrite"),
    [("o.tif", False), ("./o.tif", False), ("o.tif", True), ("./o.tif", True), ("link.tif", True)],
)
def test_sam_objects_outputs_that_are_one_file(
    tmp_path: Path, pair_paths, tiny_encoder, monkeypatch: pytest.MonkeyPatch, boundary, overwrite
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "link.tif").symlink_to("o.tif")
    before = snapshot(tmp_path)
    flags = ["--overwrite"] if overwrite else []
    code, text = run("sam-objects", pair_paths[0], "-o", "o.tif", "--boundary", boundary,
                     *flags, *OBJECTS)  # fmt: skip
    assert code == 2, text
    assert "are the same file" in one_error_line(text)
    assert snapshot(tmp_path) == before


def test_sam_objects_folder_outputs_that_are_one_folder(
    tmp_path: Path, tiny_encoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    images = tmp_path / "images"
    images.mkdir()
    for name in ("x", "y"):
        pixels = (texture(64, 64, seed=3)[0] * 255).astype(np.uint8)
        with rasterio.open(images / f"{name}.tif", "w", driver="GTiff", width=64, height=64,
                           count=1, dtype="uint8") as dst:  # fmt: skip
            dst.write(pixels, 1)
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    code, text = run("sam-objects", images, "-o", "maps", "--boundary", "./maps/", *OBJECTS)
    assert code == 2, text
    assert "are the same file" in one_error_line(text)
    assert snapshot(tmp_path) == before

    calls = []
    write = sam_objects_module.write_object_maps

    def fail_on_second(*args: object) -> None:
        calls.append(args)
        if len(calls) == 2:
            raise OSError(errno.EIO, "I/O error")
        write(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(sam_objects_module, "write_object_maps", fail_on_second)
    code, text = run("sam-objects", images, "-o", "maps", "--boundary", "edges", *OBJECTS)
    assert code != 0 and len(calls) == 2
    assert snapshot(tmp_path) == before  # no first map left, no output folder made


def test_detect_change_outputs_that_are_one_file(tmp_path: Path, pair_paths, tiny_encoder) -> None:
    a, b = pair_paths
    (tmp_path / "out.gpkg").symlink_to("score.tif")  # dangling: -o would write score.tif
    before = snapshot(tmp_path)
    code, text = run("detect-change", a, b, "-o", tmp_path / "out.gpkg", "--save-probability",
                     tmp_path / "score.tif", "--overwrite", *FAST)  # fmt: skip
    assert code == 2, text
    assert "are the same file" in one_error_line(text)
    assert snapshot(tmp_path) == before


def test_segment_model_rasters_that_are_one_file(tmp_path: Path, pair_paths) -> None:
    (tmp_path / "model.ckpt").write_bytes(b"never read")
    before = snapshot(tmp_path)
    code, text = run("segment", pair_paths[0], "-o", tmp_path / "out.gpkg",
                     "--model", tmp_path / "model.ckpt", "--save-classes", tmp_path / "c.tif",
                     "--save-probability", f"{tmp_path}/./c.tif", "-q")  # fmt: skip
    assert code == 2, text
    assert "are the same file" in one_error_line(text)
    assert snapshot(tmp_path) == before


def test_successful_run_leaves_exactly_its_outputs(
    tmp_path: Path, pair_paths, tiny_encoder, existing
) -> None:
    a, b = pair_paths
    out, prob = existing
    before = snapshot(tmp_path)
    code, text = run("detect-change", a, b, "-o", out, "--save-probability", prob,
                     "--overwrite", *FAST)  # fmt: skip
    assert code == 0, text
    after = snapshot(tmp_path)
    assert sorted(after) == sorted(before)
    assert after[out.name] != before[out.name] and after[prob.name] != before[prob.name]
    assert len(gpd.read_file(out)) > 0
    assert not any(name.startswith(WORK_PREFIX) for name in os.listdir(tmp_path))
