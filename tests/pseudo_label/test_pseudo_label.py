"""``rs-sam pseudo-label``: proposals -> label raster, review file and training config.

Proposals come from a polygon file over a synthetic pair with known changes (exact pixels),
or from the tiny random models (the mechanics); the review loop edits the file in place as
QGIS does (attribute updates in the GeoPackage, features appended), then rebuilds.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
import yaml
from click.testing import CliRunner

from rs_sam.cli.main import cli
from rs_sam.data.change_datasets import GeoChangeDataset
from rs_sam.data.labels import IGNORE
from rs_sam.pseudo_label.label_raster import write_label_raster
from rs_sam.pseudo_label.review import LAYER
from tests.helpers.synthetic import UTM33
from tests.pseudo_label.scenes import Scene, box_polygon, change_scene, proposals_file

#: Scores of the scene's four changes: two labels, one uncertain (ignore), one background.
SCORES = [0.9, 0.7, 0.45, 0.2]


def run(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result.exit_code, result.output


def read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1)


def box_mask(scene: Scene, index: int) -> np.ndarray:
    row, col, height, width = scene.boxes[index]
    mask = np.zeros_like(scene.truth, dtype=bool)
    mask[row : row + height, col : col + width] = True
    return mask


@pytest.fixture
def labelled(tmp_path: Path) -> tuple[Scene, Path]:
    """The scene's changes as proposals (in EPSG:4326) turned into labels in tmp/labels."""
    scene = change_scene(tmp_path / "scene")
    vectors = proposals_file(tmp_path / "proposals.gpkg", scene.boxes, SCORES)
    out = tmp_path / "labels"
    code, text = run("pseudo-label", scene.a, scene.b, "--vectors", vectors, "-o", out, "-q")
    assert code == 0, text
    return scene, out


def test_scores_decide_label_ignore_and_background(labelled) -> None:
    scene, out = labelled
    label = read(out / "label.tif")
    expected = np.zeros_like(scene.truth)
    expected[box_mask(scene, 0) | box_mask(scene, 1)] = 1
    expected[box_mask(scene, 2)] = IGNORE  # 0.45: from --uncertain-score (0.4) to 0.5
    np.testing.assert_array_equal(label, expected)  # box 3 (0.2) is background
    with rasterio.open(out / "label.tif") as lab, rasterio.open(scene.a) as a:
        assert (lab.crs, lab.transform, lab.shape) == (a.crs, a.transform, a.shape)
        assert lab.nodata == IGNORE and lab.dtypes[0] == "uint8"
    review = gpd.read_file(out / "review.gpkg", layer=LAYER)
    assert review.crs == UTM33 and list(review["status"]) == ["proposed"] * 4
    assert list(review["auto"]) == ["label", "label", "ignore", "background"]
    np.testing.assert_allclose(review["score"], SCORES)


def test_thresholds_move_objects_between_classes(tmp_path: Path) -> None:
    scene = change_scene(tmp_path / "scene")
    vectors = proposals_file(tmp_path / "p.gpkg", scene.boxes, SCORES, crs=UTM33)
    out = tmp_path / "strict"
    code, text = run("pseudo-label", scene.a, scene.b, "--vectors", vectors, "-o", out,
                     "--min-score", "0.8", "--uncertain-score", "0.1", "-q")  # fmt: skip
    assert code == 0, text
    label = read(out / "label.tif")
    assert (label[box_mask(scene, 0)] == 1).all()
    for index in (1, 2, 3):  # 0.7, 0.45, 0.2: all between 0.1 and 0.8
        assert (label[box_mask(scene, index)] == IGNORE).all()


def test_written_config_reads_the_labels(labelled) -> None:
    scene, out = labelled
    config = yaml.safe_load((out / "train_change.yaml").read_text())
    assert set(config) == {"seed", "model", "data", "trainer"}
    source = config["data"]["train"][0]
    assert source["layout"] == "geo" and Path(source["label"]) == out / "label.tif"
    assert Path(source["image_a"]) == scene.a.resolve()
    dataset = GeoChangeDataset(source["image_a"], source["image_b"], source["label"],
                               chip_size=config["data"]["chip_size"])  # fmt: skip
    mask = dataset[0]["mask"].numpy()[: scene.truth.shape[0], : scene.truth.shape[1]]
    np.testing.assert_array_equal(mask, read(out / "label.tif").astype(np.int64))
    assert "rs-sam train change --config" in (out / "train_change.yaml").read_text()


def _geometry(blob: bytes | None) -> shapely.Geometry | None:
    """A GeoPackage geometry blob: header, envelope (size from the flags), then WKB."""
    if blob is None:
        return None
    envelope = (0, 32, 48, 48, 64)[(blob[3] >> 1) & 7]
    return shapely.from_wkb(bytes(blob[8 + envelope :]))


def _set_status(review: Path, status: dict[int, str | None]) -> None:
    """Attribute edits in place, as QGIS saves them (the layer metadata stays).

    The GeoPackage's R-tree triggers call the ST_* functions GDAL gives SQLite; here they
    are rebuilt from the blobs.
    """
    with sqlite3.connect(review) as db:
        db.create_function("ST_IsEmpty", 1, lambda g: int(_geometry(g).is_empty))
        for i, name in enumerate(("ST_MinX", "ST_MinY", "ST_MaxX", "ST_MaxY")):
            db.create_function(name, 1, lambda g, i=i: float(_geometry(g).bounds[i]))
        for fid, value in status.items():
            db.execute(f"UPDATE {LAYER} SET status = ? WHERE fid = ?", (value, fid))


def _append(review: Path, polygon, status: str, class_name: str = "change") -> None:
    columns = {"id": [None], "status": [status], "score": [None], "auto": [None],
               "class_name": [class_name]}  # fmt: skip
    extra = gpd.GeoDataFrame(columns, geometry=[shapely.MultiPolygon([polygon])], crs=UTM33)
    extra.to_file(review, layer=LAYER, engine="pyogrio", append=True)


def test_review_rebuilds_from_accepted_and_added(labelled) -> None:
    scene, out = labelled
    review = out / "review.gpkg"
    # box 0 rejected, box 1 left unreviewed, box 2 accepted, box 3 redrawn (a new, smaller
    # polygon, accepted; the proposal rejected), and one change drawn where none was proposed
    _set_status(review, {1: "rejected", 3: "accepted", 4: "rejected"})
    row, col, height, width = scene.boxes[3]
    _append(review, box_polygon(row, col, height, width // 2), "accepted")
    _append(review, box_polygon(2, 2, 6, 6), "added")
    code, text = run("pseudo-label", "--from-review", review, "-o", out, "--overwrite", "-q")
    assert code == 0, text
    label = read(out / "label.tif")
    assert (label[box_mask(scene, 0)] == 0).all()
    assert (label[box_mask(scene, 1)] == IGNORE).all()
    assert (label[box_mask(scene, 2)] == 1).all()
    half = np.zeros_like(box_mask(scene, 3))
    half[row : row + height, col : col + width // 2] = True
    assert (label[half] == 1).all() and (label[box_mask(scene, 3) & ~half] == 0).all()
    assert (label[2:8, 2:8] == 1).all()
    assert set(np.unique(label)) == {0, 1, IGNORE}
    assert review.exists()  # the person's file is never rewritten


@pytest.mark.parametrize(
    ("status", "message"),
    [("acepted", "unknown status 'acepted' (fid 2); use one of proposed, accepted, rejected, "
      "added"), (None, "1 feature(s) have no status (fid 2); set it to added")],
)  # fmt: skip
def test_bad_status_is_one_line_and_writes_nothing(labelled, status, message) -> None:
    _, out = labelled
    _set_status(out / "review.gpkg", {2: status})
    before = (out / "label.tif").read_bytes()
    code, text = run("pseudo-label", "--from-review", out / "review.gpkg", "-o", out,
                     "--overwrite", "-q")  # fmt: skip
    assert code == 2 and message in text and len(text.strip().splitlines()) == 1, text
    assert (out / "label.tif").read_bytes() == before


def test_review_copy_without_record_is_refused(labelled, tmp_path: Path) -> None:
    _, out = labelled
    copy = tmp_path / "copy.gpkg"
    gpd.read_file(out / "review.gpkg").to_file(copy, layer=LAYER)  # "save as" drops metadata
    code, text = run("pseudo-label", "--from-review", copy, "-o", tmp_path / "new", "-q")
    assert code == 2 and "carries no rs-sam run record" in text
    assert not (tmp_path / "new").exists()


def test_existing_outputs_need_overwrite(labelled, tmp_path: Path) -> None:
    scene, out = labelled
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    vectors = proposals_file(tmp_path / "again.gpkg", scene.boxes, [1.0] * 4)
    code, text = run("pseudo-label", scene.a, scene.b, "--vectors", vectors, "-o", out, "-q")
    assert code == 2 and "exists; pass --overwrite" in text
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--uncertain-score", "0.7"], "--uncertain-score 0.7 is above --min-score 0.5"),
        (["--text", "building"], "drop --prompts/--text"),
        (["--score-field", "conf"], "has no column 'conf'"),
    ],
)
def test_bad_requests_are_one_line_errors(tmp_path: Path, extra, message) -> None:
    scene = change_scene(tmp_path / "scene")
    vectors = proposals_file(tmp_path / "p.gpkg", scene.boxes, SCORES)
    out = tmp_path / "out"
    code, text = run("pseudo-label", scene.a, scene.b, "--vectors", vectors, "-o", out, *extra)
    assert code == 2 and message in text and len(text.strip().splitlines()) == 1, text
    assert not out.exists()


def test_from_review_takes_no_rasters(labelled) -> None:
    scene, out = labelled
    code, text = run("pseudo-label", scene.a, "--from-review", out / "review.gpkg", "-o", out)
    assert code == 2 and "drop IMAGE" in text


def test_label_raster_is_written_by_blocks(tmp_path: Path) -> None:
    """Blocks smaller than the raster give the same pixels as one block (later wins)."""
    scene = change_scene(tmp_path / "scene", size=200)
    from rs_sam.data.rasters import open_date

    grid = open_date(scene.a)
    shapes = [box_polygon(*b) for b in scene.boxes] + [box_polygon(10, 10, 150, 30)]
    values = [1, 1, 1, 1, IGNORE]
    whole = write_label_raster(tmp_path / "whole.tif", grid, shapes, values, block=1024)
    tiled = write_label_raster(tmp_path / "tiled.tif", grid, shapes, values, block=64)
    np.testing.assert_array_equal(read(tmp_path / "whole.tif"), read(tmp_path / "tiled.tif"))
    assert whole == tiled and whole[IGNORE] == 150 * 30
    assert read(tmp_path / "tiled.tif")[100, 20] == IGNORE  # the later shape over the earlier


@pytest.mark.slow  # a tiny model run
def test_zero_shot_change_proposals(pair_paths, tmp_path: Path, tiny_encoder) -> None:
    """detect-change (tiny random model) proposes; every polygon it finds is in the review."""
    a, b = pair_paths
    fast = ["--weights", "random", "--points-per-side", "4", "--pred-iou-thresh", "0",
            "--stability-thresh", "0", "--threshold", "1", "--chip-size", "128", "-q"]  # fmt: skip
    code, text = run("detect-change", a, b, "-o", tmp_path / "changes.gpkg", *fast)
    assert code == 0, text
    out = tmp_path / "labels"
    code, text = run("pseudo-label", a, b, "-o", out, "--min-score", "0", *fast)
    assert code == 0, text
    changes = gpd.read_file(tmp_path / "changes.gpkg")
    review = gpd.read_file(out / "review.gpkg", layer=LAYER)
    assert len(review) == len(changes) > 0
    np.testing.assert_allclose(sorted(review["score"]), sorted(changes["score_mean"]))
    label = read(out / "label.tif")
    assert (label == 1).sum() > 0 and set(np.unique(label)) <= {0, 1}
    config = yaml.safe_load((out / "train_change.yaml").read_text())
    assert config["model"]["weights"] == "random" and config["model"]["encoder"] == "mobile_sam"


@pytest.mark.slow  # a tiny model run
def test_segment_anything_proposals(pair_paths, tmp_path: Path, tiny_encoder) -> None:
    a, _ = pair_paths
    out = tmp_path / "labels"
    code, text = run("pseudo-label", a, "-o", out, "--weights", "random", "--points-per-side",
                     "4", "--pred-iou-thresh", "0", "--stability-thresh", "0", "--chip-size",
                     "128", "--min-score", "0", "-q")  # fmt: skip
    assert code == 0, text
    review = gpd.read_file(out / "review.gpkg", layer=LAYER)
    assert len(review) > 0 and set(review["class_name"]) == {"object"}
    config = yaml.safe_load((out / "train_segment.yaml").read_text())
    assert config["data"]["train"][0]["layout"] == "raster"
    names = [c["name"] for c in config["data"]["classes"]["classes"]]
    assert names == ["background", "object"]
    assert set(np.unique(read(out / "label.tif"))) <= {0, 1, IGNORE}
