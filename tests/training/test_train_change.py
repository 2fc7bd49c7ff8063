"""``rs-sam train change`` / ``evaluate change`` / ``detect-change --model`` end to end.

Tiny random encoder, synthetic LEVIR-style folders: these tests check the machinery
(training steps, checkpoints, resume, evaluation, inference), not model quality.
"""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import torch
import yaml
from click.testing import CliRunner
from PIL import Image
from rasterio.features import rasterize

from rs_sam.cli.main import cli
from rs_sam.models.head_file import read_head_checkpoint
from tests.helpers.synthetic import texture, write_raster


def _levir_folder(root: Path, count: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    for folder in ("A", "B", "label", "list"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(count):
        base = (texture(64, 64, seed=seed * 100 + i) * 120 + 40).astype(np.uint8)
        later, label = base.copy(), np.zeros((64, 64), np.uint8)
        r, c = rng.integers(4, 36, size=2)
        later[:, r : r + 20, c : c + 20] = 240
        label[r : r + 20, c : c + 20] = 255
        name = f"pair_{i}.png"
        Image.fromarray(base.transpose(1, 2, 0)).save(root / "A" / name)
        Image.fromarray(later.transpose(1, 2, 0)).save(root / "B" / name)
        Image.fromarray(label).save(root / "label" / name)
        names.append(name)
    (root / "list" / "train.txt").write_text("\n".join(names[:-2]) + "\n")
    (root / "list" / "val.txt").write_text("\n".join(names[-2:]) + "\n")
    return root


def _config(tmp_path: Path, *, encoder: str = "mobile_sam", cache: bool = False) -> Path:
    root = _levir_folder(tmp_path / "levir", 6, seed=1)
    config = {
        "seed": 0,
        "model": {
            "encoder": encoder,
            "weights": "random",
            "tiny_encoder": True,
            "residual_blocks": 1,
            "optimizer": "adamw",
            "lr": 0.003,
        },
        "data": {
            "train": [{"layout": "folder", "root": str(root), "split": "train"}],
            "val": [{"layout": "folder", "root": str(root), "split": "val"}],
            "chip_size": 64,
            "batch_size": 2,
            "cache_features": cache,
            "cache_dir": str(tmp_path / "cache"),
        },
        "trainer": {
            "max_epochs": 1,
            "accelerator": "cpu",
            "default_root_dir": str(tmp_path / "run"),
            "log_every_n_steps": 1,
        },
    }
    path = tmp_path / f"{encoder}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """One short training run shared by the tests below: (config, last checkpoint)."""
    tmp_path = tmp_path_factory.mktemp("train")
    config = _config(tmp_path)
    code, text = run("train", "change", "--config", config, "-q")
    assert code == 0, text
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert last.exists() and (tmp_path / "run" / "checkpoints" / "best.ckpt").exists()
    return config, last


def test_checkpoint_is_self_describing(trained: tuple[Path, Path]) -> None:
    _, last = trained
    metadata, hparams, state = read_head_checkpoint(last)
    assert metadata.encoder == "mobile_sam" and metadata.chip_size == 64
    assert metadata.latent_classes == 8 and metadata.temperature == 3.0
    assert hparams["residual_blocks"] == 1
    assert any(k.startswith("model.head.") for k in state)
    # Random weights cannot be rebuilt, so this run keeps its encoder in the checkpoint.
    assert metadata.encoder_weights == "random" and metadata.encoder_sha256 is None


@pytest.mark.slow
def test_resume_continues_the_run(trained: tuple[Path, Path]) -> None:
    config, last = trained
    steps = torch.load(last, weights_only=True)["global_step"]
    code, text = run("train", "change", "--config", config, "--max-epochs", "2", "-q")
    assert code == 0, text
    assert torch.load(last, weights_only=True)["global_step"] == 2 * steps  # one more epoch


def test_resume_with_another_encoder_is_refused(trained: tuple[Path, Path], tmp_path: Path) -> None:
    _, last = trained
    other = _config(tmp_path, encoder="sam_vit_b")
    code, text = run("train", "change", "--config", other, "--resume", last, "-q")
    assert code == 2
    assert "trained with encoder 'mobile_sam'" in text and "sam_vit_b" in text


def test_evaluate_reports_metrics_and_protocol(trained, tmp_path: Path) -> None:
    config, last = trained
    root = yaml.safe_load(config.read_text())["data"]["val"][0]["root"]
    report = tmp_path / "report.json"
    code, text = run("evaluate", "change", "--model", last, "--data", root, "--split", "val",
                     "--json", report, "-q")  # fmt: skip
    assert code == 0, text
    assert "change class: precision" in text and "protocol: sliding 64x64" in text
    values = json.loads(report.read_text())
    assert values["pixels"] == 2 * 64 * 64
    assert 0.0 <= values["f1"] <= 1.0 and 0.0 <= values["mean_iou"] <= 1.0


def _square_appears(tmp_path: Path) -> tuple[Path, Path]:
    """A textured pair in which a bright square appears."""
    image = (texture(100, 90, seed=5) * 150 + 40).astype(np.uint8)
    later = image.copy()
    later[:, 30:60, 20:50] = 240
    return write_raster(tmp_path / "a.tif", image), write_raster(tmp_path / "b.tif", later)


def test_detect_change_with_a_trained_model(trained, tmp_path: Path) -> None:
    _, last = trained
    a, b = _square_appears(tmp_path)
    out, prob = tmp_path / "changes.gpkg", tmp_path / "p.tif"
    code, text = run("detect-change", a, b, "--model", last, "-o", out,
                     "--save-probability", prob, "-q")  # fmt: skip
    assert code == 0, text
    assert gpd.read_file(out).crs.to_epsg() == 32633
    assert prob.exists()


def test_trained_model_with_the_openvino_encoder_runtime(trained, tmp_path, monkeypatch) -> None:
    pytest.importorskip("openvino", reason="the openvino extra is not installed")
    import rasterio

    from rs_sam.models.encoders import openvino_runtime

    graph_calls = []
    real_call = openvino_runtime._Graph.__call__
    monkeypatch.setattr(
        openvino_runtime._Graph, "__call__", lambda g, x: graph_calls.append(1) or real_call(g, x)
    )
    _, last = trained
    a, b = _square_appears(tmp_path)
    scores = {}
    for runtime in ("torch", "openvino"):
        out, prob = tmp_path / f"{runtime}.gpkg", tmp_path / f"{runtime}.tif"
        code, text = run("detect-change", a, b, "--model", last, "-o", out, "--save-probability",
                         prob, "--encoder-runtime", runtime, "-q")  # fmt: skip
        assert code == 0, text
        with rasterio.open(prob) as src:
            scores[runtime] = src.read().astype(np.float64)
    assert len(graph_calls) >= 2  # the check against torch, then the chips
    assert np.abs(scores["openvino"] - scores["torch"]).max() <= 1e-3


def test_detect_change_semantic_classes_and_latent_raster(trained, tmp_path: Path) -> None:
    _, last = trained
    image = (texture(100, 90, seed=6) * 150 + 40).astype(np.uint8)
    later = image.copy()
    later[:, 30:60, 20:50] = 240
    a = write_raster(tmp_path / "a.tif", image)
    b = write_raster(tmp_path / "b.tif", later)
    out, latent = tmp_path / "changes.gpkg", tmp_path / "latent.tif"
    # A barely trained head: a low threshold makes sure there are polygons to label.
    code, text = run("detect-change", a, b, "--model", last, "-o", out, "--semantic",
                     "--threshold", "0.02", "--save-latent", latent, "-q")  # fmt: skip
    assert code == 0, text
    polygons = gpd.read_file(out)
    assert len(polygons) > 0 and {"class_a", "class_b"} <= set(polygons.columns)
    with rasterio.open(latent) as src, rasterio.open(a) as ref:
        assert src.count == 2 and src.dtypes[0] == "uint8"
        assert src.transform == ref.transform and src.crs == ref.crs
        classes = src.read()
    k = read_head_checkpoint(last)[0].latent_classes
    assert classes.max() < k
    # each polygon's class is the most frequent latent class under it
    shapes = zip(polygons.geometry, polygons.index + 1, strict=True)
    ids = rasterize(shapes, out_shape=classes.shape[1:], transform=src.transform)
    for index, row in polygons.iterrows():
        for band, column in ((0, "class_a"), (1, "class_b")):
            inside = classes[band][ids == index + 1]
            if inside.size:
                assert row[column] == np.bincount(inside).argmax()


def test_semantic_options_need_a_model(pair_paths, tmp_path: Path) -> None:
    a, b = pair_paths
    code, text = run("detect-change", a, b, "-o", tmp_path / "o.gpkg", "--semantic", "-q")
    assert code == 2 and "semantic output needs a SAM-CD model" in text
    code, text = run("detect-change", a, b, "-o", tmp_path / "o.gpkg",
                     "--save-latent", tmp_path / "l.tif", "-q")  # fmt: skip
    assert code == 2 and "--save-latent needs --semantic" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tif", "b.tif"]


def test_checkpoint_without_metadata_is_refused(pair_paths, tmp_path: Path) -> None:
    a, b = pair_paths
    plain = tmp_path / "plain.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, plain)
    code, text = run("detect-change", a, b, "--model", plain, "-o", tmp_path / "o.gpkg", "-q")
    assert code == 2 and "has no rs-sam metadata" in text


def test_training_with_the_feature_cache(tmp_path: Path) -> None:
    config = _config(tmp_path, cache=True)
    code, text = run("train", "change", "--config", config, "-q")
    assert code == 0, text
    entries = list((tmp_path / "cache").rglob("*.pt"))
    assert len(entries) == 6  # 4 train + 2 val chips, computed once
