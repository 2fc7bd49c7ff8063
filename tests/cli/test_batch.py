"""``rs-sam batch``: many scenes, a manifest naming failures, resume, and scenes on a cluster."""

from __future__ import annotations

import csv
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
from click.testing import CliRunner

from rs_sam.batch import read_scenes
from rs_sam.cli.main import cli
from rs_sam.errors import ConfigError
from tests.helpers.synthetic import paint_change, texture, write_raster

FAST = ["--weights", "random", "--chip-size", "64", "--overlap", "8", "--points-per-side", "4",
        "--pred-iou-thresh", "0", "--stability-thresh", "0", "--threshold", "20", "-q"]  # fmt: skip


def run(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result.exit_code, result.output


def manifest(out: Path) -> dict[str, dict[str, str]]:
    with open(out / "manifest.csv", newline="") as handle:
        return {row["scene"]: row for row in csv.DictReader(handle)}


@pytest.fixture
def pairs(tmp_path: Path) -> Path:
    """Three scene pairs; the second one's later date is not a raster."""
    rows = []
    for i in range(3):
        image = (texture(96, 112, seed=i) * 200 + 20).astype(np.uint8)
        changed = paint_change(image, slice(20, 60), slice(30, 80), 250)
        a = write_raster(tmp_path / f"a{i}.tif", image)
        b = write_raster(tmp_path / f"b{i}.tif", changed)
        rows.append((a.name, b.name, f"scene {i}"))
    (tmp_path / "b1.tif").write_text("not a raster")
    table = tmp_path / "pairs.csv"
    with open(table, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["a", "b", "name"])
        writer.writerows(rows)  # relative to the CSV's folder
    return table


def test_one_corrupt_scene_is_recorded_and_a_rerun_skips_the_done_ones(
    pairs: Path, tmp_path: Path, tiny_encoder
) -> None:
    out = tmp_path / "out"
    code, text = run("batch", "detect-change", pairs, "-o", out, *FAST)
    assert code == 1 and "2 scenes done, 0 skipped (done before), 1 FAILED" in text
    assert sorted(p.name for p in out.iterdir()) == [
        "manifest.csv", "scene 0.gpkg", "scene 2.gpkg",
    ]  # fmt: skip
    rows = manifest(out)
    assert list(rows) == ["scene 0", "scene 1", "scene 2"]
    assert [rows[s]["status"] for s in rows] == ["ok", "failed", "ok"]
    assert "b1.tif" in rows["scene 1"]["error"] and "\n" not in rows["scene 1"]["error"]
    assert rows["scene 1"]["polygons"] == ""
    for scene in ("scene 0", "scene 2"):
        written = gpd.read_file(out / f"{scene}.gpkg")
        assert int(rows[scene]["polygons"]) == len(written) > 0
        assert float(rows[scene]["seconds"]) > 0
    before = {p: p.stat().st_mtime_ns for p in out.glob("*.gpkg")}

    code, text = run("batch", "detect-change", pairs, "-o", out, *FAST)
    assert code == 1 and "0 scenes done, 2 skipped (done before), 1 FAILED" in text
    assert {p: p.stat().st_mtime_ns for p in out.glob("*.gpkg")} == before  # not rewritten
    rows = manifest(out)
    assert [rows[s]["status"] for s in rows] == ["skipped", "failed", "skipped"]
    assert rows["scene 0"]["polygons"] == str(len(gpd.read_file(out / "scene 0.gpkg")))


def test_all_scenes_done_exits_zero_and_overwrite_runs_them_again(
    pairs: Path, tmp_path: Path, tiny_encoder
) -> None:
    (tmp_path / "b1.tif").unlink()
    write_raster(tmp_path / "b1.tif", (texture(96, 112, seed=9) * 200).astype(np.uint8))
    out = tmp_path / "out"
    code, text = run("batch", "detect-change", pairs, "-o", out, "--format", "geojson", *FAST)
    assert code == 0, text
    assert sorted(p.suffix for p in out.glob("scene*")) == [".geojson"] * 3
    code, _ = run("batch", "detect-change", pairs, "-o", out, "--format", "geojson",
                  "--overwrite", *FAST)  # fmt: skip
    assert code == 0
    assert [r["status"] for r in manifest(out).values()] == ["ok"] * 3


def test_batch_segment(tmp_path: Path, tiny_encoder) -> None:
    for i in range(2):
        write_raster(tmp_path / f"img{i}.tif", (texture(80, 96, seed=i) * 250).astype(np.uint8))
    (tmp_path / "images.csv").write_text("image,name\nimg0.tif,first\nimg1.tif,second\n")
    out = tmp_path / "out"
    code, text = run("batch", "segment", tmp_path / "images.csv", "-o", out, *FAST[:-3])
    assert code == 0, text
    rows = manifest(out)
    assert [r["status"] for r in rows.values()] == ["ok", "ok"]
    assert int(rows["second"]["polygons"]) == len(gpd.read_file(out / "second.gpkg"))


def test_batch_on_local_workers_equals_the_local_run(pairs: Path, tmp_path: Path, tiny_encoder):
    pytest.importorskip("distributed", reason="the distributed extra is not installed")
    import dask

    local, remote = tmp_path / "local", tmp_path / "remote"
    code, _ = run("batch", "detect-change", pairs, "-o", local, *FAST)
    assert code == 1
    with dask.config.set({"distributed.worker.preload": ["tests.helpers.tiny_worker"]}):
        code, text = run("batch", "detect-change", pairs, "-o", remote, "--workers", "2", *FAST)
    assert code == 1, text
    assert [r["status"] for r in manifest(remote).values()] == ["ok", "failed", "ok"]
    for scene in ("scene 0", "scene 2"):
        a, b = (gpd.read_file(folder / f"{scene}.gpkg") for folder in (local, remote))
        assert a.geometry.geom_equals_exact(b.geometry, 0).all() and len(a) == len(b)
        assert np.allclose(a.score_mean, b.score_mean, atol=1e-6)  # thread counts may differ


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a,name\nx.tif,one\n", "has no column(s) b"),
        ("a,b,name\n", "lists no scene"),
        ("a,b,name\nx.tif,y.tif,one\nx.tif,y.tif,one\n", "name 'one' is repeated"),
        ("a,b,name\nx.tif,y.tif,../up\n", "is not a file stem"),
        ("a,b,name\nx.tif,,one\n", "column b is empty"),
    ],
)
def test_bad_scene_lists_are_one_line(tmp_path: Path, text: str, message: str) -> None:
    table = tmp_path / "pairs.csv"
    table.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_scenes(table, "detect_change")
    code, output = run("batch", "detect-change", table, "-o", tmp_path / "out", "-q")
    assert code == 2 and output.count("\n") == 1 and message in output
    assert not (tmp_path / "out" / "manifest.csv").exists()


def test_bad_option_values_fail_before_any_scene(pairs: Path, tmp_path: Path) -> None:
    code, output = run("batch", "detect-change", pairs, "-o", tmp_path / "o", "--threshold",
                       "999", "-q")  # fmt: skip
    assert code == 2 and "threshold 999" in output and output.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_per_scene_options_are_not_batch_options(pairs: Path, tmp_path: Path) -> None:
    code, output = run("batch", "detect-change", pairs, "-o", tmp_path / "o",
                       "--save-probability", "p.tif")  # fmt: skip
    assert code == 2 and "No such option '--save-probability'" in output
    code, output = run("batch", "detect-change", tmp_path / "nope.csv", "-o", tmp_path / "o")
    assert code == 2 and "nope.csv does not exist" in output
