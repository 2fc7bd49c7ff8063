"""``rs-sam train segment`` / ``evaluate segment`` / ``segment --model`` end to end.

Tiny random encoders and synthetic folders: these tests check the machinery (training with
the SSRS losses, checkpoints, resume, evaluation, georeferenced inference), not quality.
"""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import yaml
from click.testing import CliRunner
from PIL import Image

from rs_sam.cli.main import cli
from rs_sam.models.head_file import read_head_checkpoint
from tests.helpers.synthetic import texture, write_raster
from tests.helpers.train_configs import COLOURS, segment_config, segment_folder


def run(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp_path = tmp_path_factory.mktemp("segment")
    config = segment_config(tmp_path)
    code, text = run("train", "segment", "--config", config, "-q")
    assert code == 0, text
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert last.exists() and (tmp_path / "run" / "checkpoints" / "best.ckpt").exists()
    return config, last


def test_training_logs_the_sam_losses_and_checkpoint_is_self_describing(trained) -> None:
    _, last = trained
    logged = (last.parent.parent / "logs" / "version_0" / "metrics.csv").read_text()
    for column in ("train/ce", "train/object", "train/boundary", "train/aux", "val/miou"):
        assert column in logged.splitlines()[0]
    metadata, _, state = read_head_checkpoint(last)
    assert metadata.task == "segment" and metadata.chip_size == 64
    assert [c["name"] for c in metadata.class_table["classes"]] == list(COLOURS)
    assert any(k.startswith("model.decoder") for k in state)


def test_ablation_without_sam_losses(tmp_path: Path) -> None:
    config = segment_config(tmp_path, object_weight=0.0, boundary_weight=0.0)
    code, text = run("train", "segment", "--config", config, "-q")
    assert code == 0, text
    header = (tmp_path / "run" / "logs" / "version_0" / "metrics.csv").read_text().splitlines()[0]
    assert "train/ce" in header and "train/object" not in header


def test_evaluate_segment_reports_classes_and_baseline(trained, tmp_path: Path) -> None:
    config, last = trained
    root = Path(yaml.safe_load(config.read_text())["data"]["train"][0]["images"]).parent
    report = tmp_path / "report.json"
    code, text = run("evaluate", "segment", "--model", last, "--data", root / "images",
                     "--labels", root / "masks", "--names", "tile_4,tile_5",
                     "--json", report, "-q")  # fmt: skip
    assert code == 0, text
    assert "building" in text and "mIoU" in text and "majority class" in text
    values = json.loads(report.read_text())
    assert values["pixels"] == 2 * 64 * 64 and len(values["iou"]) == 3
    assert 0 <= values["mean_iou"] <= 1 and values["majority_accuracy"] > 0.5


def test_segment_with_a_model_on_a_georeferenced_raster(trained, tmp_path: Path) -> None:
    _, last = trained
    image = (texture(100, 90, seed=3) * 60 + 100).astype(np.uint8)
    image[:, 20:50, 30:60] = 40
    raster = write_raster(tmp_path / "scene.tif", image)
    out, classes, prob = tmp_path / "cover.gpkg", tmp_path / "classes.tif", tmp_path / "p.tif"
    code, text = run("segment", raster, "--model", last, "-o", out, "--save-classes", classes,
                     "--save-probability", prob, "--overlap", "16", "-q")  # fmt: skip
    assert code == 0, text
    polygons = gpd.read_file(out)
    assert list(polygons.columns) == [
        "id", "class_id", "class_name", "area_m2", "score_mean", "geometry"
    ]  # fmt: skip
    assert polygons.crs.to_epsg() == 32633 and set(polygons["class_name"]) <= set(COLOURS)
    with rasterio.open(classes) as src, rasterio.open(prob) as p:
        assert src.colormap(1)[0][:3] == COLOURS["ground"]
        class_map = src.read(1)
        assert p.count == 3 and np.allclose(p.read().sum(0), 1, atol=1e-4)
    # the polygons cover each pixel once, with its class
    assert polygons.area.sum() == pytest.approx(100 * 90 * 100.0)
    pixels = polygons.assign(px=polygons.area / 100).groupby("class_id")["px"].sum()
    assert pixels.round().astype(int).to_dict() == {
        int(c): int((class_map == c).sum()) for c in np.unique(class_map)
    }


def test_resnet18_backbone_and_config_errors(tmp_path: Path) -> None:
    config = segment_config(tmp_path, backbone="resnet18", freeze_encoder=False)
    code, text = run("train", "segment", "--config", config, "-q")
    assert code == 0, text
    values = yaml.safe_load(config.read_text())
    values["model"]["classes"] = values["data"]["classes"]
    config.write_text(yaml.safe_dump(values))
    code, text = run("train", "segment", "--config", config, "--resume", "never", "-q")
    assert code == 2 and "data.classes" in text
    values["model"].pop("classes")
    values["data"]["train"][0]["images_dir"] = "x"
    config.write_text(yaml.safe_dump(values))
    code, text = run("train", "segment", "--config", config, "-q")
    assert code == 2 and "images_dir" in text and "valid:" in text


def test_training_with_the_feature_cache(tmp_path: Path) -> None:
    config = segment_config(tmp_path)
    values = yaml.safe_load(config.read_text())
    values["data"]["cache_features"] = True
    config.write_text(yaml.safe_dump(values))
    code, text = run("train", "segment", "--config", config, "-q")
    assert code == 0, text
    entries = list((tmp_path / "cache").glob("*/*.pt"))
    assert len(entries) == 6  # 4 training + 2 validation tiles, one image each
    values["model"]["freeze_encoder"] = False
    config.write_text(yaml.safe_dump(values))
    code, text = run("train", "segment", "--config", config, "--resume", "never", "-q")
    assert code == 2 and "cache_features needs a frozen" in text


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("colour", "#010203"),  # an RGB colour that is not in the class table
        ("size", "32x32"),  # a label of another size than its image
    ],
)
def test_bad_labels_are_one_line_errors(trained, tmp_path: Path, damage: str, message: str):
    _, last = trained
    root = segment_folder(tmp_path / "bad", 1)
    label = root / "masks" / "tile_0.png"
    if damage == "colour":
        pixels = np.asarray(Image.open(label)).copy()
        pixels[:3, :3] = (1, 2, 3)
        Image.fromarray(pixels).save(label)
    else:
        Image.open(label).resize((32, 32)).save(label)
    code, text = run("evaluate", "segment", "--model", last, "--data", root / "images",
                     "--labels", root / "masks", "-q")  # fmt: skip
    assert code == 2, text
    assert message in text and len(text.strip().splitlines()) == 1


def test_lora_adapted_encoder_is_recorded_and_rebuilt(tmp_path: Path) -> None:
    import warnings

    import torch

    from rs_sam.models.encoders import load_encoder
    from rs_sam.models.lora import LoraSettings, apply_lora, save_adapter

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        base = load_encoder("mobile_sam", weights="random", tiny=True)
    apply_lora(base, LoraSettings(rank=2))
    with torch.no_grad():
        for name, value in base.named_parameters():
            if "lora_B" in name:
                value.fill_(0.01)
    adapter = save_adapter(tmp_path / "adapter.pt", base)
    config = segment_config(tmp_path, lora=str(adapter))
    code, text = run("train", "segment", "--config", config, "-q")
    assert code == 0, text
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    metadata = read_head_checkpoint(last)[0]
    assert metadata.lora_adapter == str(adapter.resolve()) and metadata.lora_sha256
    raster = write_raster(tmp_path / "scene.tif", (texture(70, 60) * 200).astype(np.uint8))
    code, text = run("segment", raster, "--model", last, "-o", tmp_path / "a.gpkg", "-q")
    assert code == 0, text
    adapter.rename(tmp_path / "moved.pt")
    code, text = run("segment", raster, "--model", last, "-o", tmp_path / "b.gpkg", "-q")
    assert code == 1 and "put the adapter back" in text
