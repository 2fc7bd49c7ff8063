"""Labels without labelling, end to end: pseudo-labels -> ``train change`` -> ``evaluate``.

Synthetic: a known scene's changes, given as scored polygons, become labels; the config
written beside them trains a tiny head, which is evaluated on a held-out scene's true labels
against the trivial baselines. Real (RS_SAM_DATA_DIR): zero-shot change on OSCD Rennes
with random weights -> pseudo-labels -> training -> evaluation on the real labels: the
mechanics, not quality.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml
from click.testing import CliRunner
from PIL import Image

from rs_sam.cli.main import cli
from rs_sam.training.evaluate import evaluate_change
from tests.helpers.synthetic import write_raster
from tests.pseudo_label.scenes import change_scene, proposals_file

pytestmark = pytest.mark.slow  # training runs


def run(*args: object) -> str:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


def _truth_folder(root: Path, scenes) -> Path:
    """The scenes with their TRUE labels in the LEVIR layout that evaluate change reads."""
    for sub in ("A", "B", "label"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i, scene in enumerate(scenes):
        for sub, path in (("A", scene.a), ("B", scene.b)):
            with rasterio.open(path) as src:
                Image.fromarray(src.read().transpose(1, 2, 0)).save(root / sub / f"s{i}.png")
        Image.fromarray(scene.truth * 255).save(root / "label" / f"s{i}.png")
    return root


def test_pseudo_labels_train_a_head_that_beats_the_baselines(tmp_path: Path, tiny_encoder):
    scene = change_scene(tmp_path / "train", size=256, count=4, seed=1)
    # the four changes, confident, plus a decoy proposal where nothing changed (scored low:
    # background) and a doubtful one (ignored)
    boxes = [*scene.boxes, (5, 5, 20, 20), (200, 200, 20, 20)]
    vectors = proposals_file(tmp_path / "proposals.gpkg", boxes, [0.9, 0.85, 0.95, 0.8, 0.1, 0.45])
    out = tmp_path / "labels"
    run("pseudo-label", scene.a, scene.b, "--vectors", vectors, "-o", out, "-q")
    config = out / "train_change.yaml"
    written = yaml.safe_load(config.read_text())
    assert written["data"]["train"][0]["label"] == str(out / "label.tif")
    # the config as written, with a smaller head for a test's minute (its official encoder
    # is replaced by the tiny random one here); its data section is untouched
    written["model"].update(residual_blocks=1, decoder_channels=32, lr=0.003)
    written["data"].update(chip_size=128, batch_size=2, cache_features=True,
                           cache_dir=str(tmp_path / "cache"))  # fmt: skip
    (tmp_path / "small.yaml").write_text(yaml.safe_dump(written))
    run("train", "change", "--config", tmp_path / "small.yaml", "--max-epochs", "40", "-q")
    best = out / "run" / "checkpoints" / "best.ckpt"
    assert best.exists()
    held_out = change_scene(tmp_path / "test", size=256, count=4, seed=7)
    truth = _truth_folder(tmp_path / "truth", [held_out])
    report = tmp_path / "report.json"
    text = run("evaluate", "change", "--model", best, "--data", truth, "--json", report, "-q")
    metrics = json.loads(report.read_text())
    print(text)
    assert metrics["pixels"] == 256 * 256
    # both trivial baselines: all-change (its F1) and all-unchanged (F1 0; its accuracy)
    assert metrics["f1"] > metrics["all_change_f1"] + 0.2
    assert metrics["overall_accuracy"] > 1 - metrics["changed_fraction"]


def _oscd_rgb(city: Path, folder: str) -> str:
    by_band = {f.stem[-3:]: f for f in (city / folder).glob("*.tif")}
    return ",".join(str(by_band[band]) for band in ("B04", "B03", "B02"))


def test_real_pair_zero_shot_to_evaluation(data_dir: Path, tmp_path: Path, tiny_encoder):
    city = data_dir / "change" / "oscd" / "images" / "rennes"
    a, b = _oscd_rgb(city, "imgs_1"), _oscd_rgb(city, "imgs_2")
    out = tmp_path / "labels"
    run("pseudo-label", a, b, "-o", out, "--weights", "random", "--points-per-side", "4",
        "--pred-iou-thresh", "0", "--stability-thresh", "0", "--threshold", "1",
        "--chip-size", "256", "--min-score", "0", "-q")  # fmt: skip
    with rasterio.open(out / "label.tif") as lab, rasterio.open(a.split(",")[0]) as first:
        assert (lab.crs, lab.transform, lab.shape) == (first.crs, first.transform, first.shape)
        assert (lab.read(1) == 1).any()
    run("train", "change", "--config", out / "train_change.yaml", "--max-epochs", "1", "-q")
    # OSCD's label (1 = no change, 2 = change, no georeferencing) on imgs_1's grid as 0/1
    source = data_dir / "change" / "oscd" / "train_labels" / "rennes" / "cm" / "rennes-cm.tif"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(source) as src:
            cm = src.read()
    with rasterio.open(a.split(",")[0]) as src:
        truth = write_raster(tmp_path / "truth.tif", (cm - 1).astype(np.uint8), crs=src.crs,
                             transform=src.transform)  # fmt: skip
    best = out / "run" / "checkpoints" / "best.ckpt"
    metrics = evaluate_change(
        best, [{"layout": "geo", "image_a": a, "image_b": b, "label": str(truth)}],
        show_progress=False,
    )  # fmt: skip
    assert metrics.pixels == cm.size and 0.0 <= metrics.f1 <= 1.0
    assert metrics.changed_fraction == pytest.approx(float((cm == 2).mean()))
