"""SAM-CD and UNetFormer on SAM 2.1's Hiera pyramid (tiny random build): one short training
run each, then inference with the checkpoint (the encoder rebuilt from its record)."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from PIL import Image

from rs_sam.cli.main import cli
from rs_sam.models.head_file import read_head_checkpoint
from tests.helpers.synthetic import texture, write_raster
from tests.helpers.train_configs import segment_config

pytestmark = pytest.mark.filterwarnings("ignore::rs_sam.models.encoders.base.RandomWeightsWarning")


def run(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result.exit_code, result.output


def _change_config(tmp_path: Path) -> Path:
    root = tmp_path / "levir"
    for folder in ("A", "B", "label", "list"):
        (root / folder).mkdir(parents=True)
    names = []
    for i in range(4):
        base = (texture(64, 64, seed=i) * 120 + 40).astype(np.uint8)
        later, label = base.copy(), np.zeros((64, 64), np.uint8)
        later[:, 10 + 8 * i : 30 + 8 * i, 12:32] = 240
        label[10 + 8 * i : 30 + 8 * i, 12:32] = 255
        name = f"pair_{i}.png"
        Image.fromarray(base.transpose(1, 2, 0)).save(root / "A" / name)
        Image.fromarray(later.transpose(1, 2, 0)).save(root / "B" / name)
        Image.fromarray(label).save(root / "label" / name)
        names.append(name)
    (root / "list" / "train.txt").write_text("\n".join(names[:3]) + "\n")
    (root / "list" / "val.txt").write_text(names[3] + "\n")
    config = {
        "seed": 0,
        "model": {"encoder": "sam2_hiera_tiny", "weights": "random", "tiny_encoder": True,
                  "residual_blocks": 1},
        "data": {
            "train": [{"layout": "folder", "root": str(root), "split": "train"}],
            "val": [{"layout": "folder", "root": str(root), "split": "val"}],
            "chip_size": 64,
            "batch_size": 2,
        },
        "trainer": {"max_epochs": 1, "accelerator": "cpu", "log_every_n_steps": 1,
                    "default_root_dir": str(tmp_path / "run")},
    }  # fmt: skip
    path = tmp_path / "change.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_samcd_trains_and_detects_change(pair_paths, tmp_path: Path) -> None:
    code, text = run("train", "change", "--config", _change_config(tmp_path), "-q")
    assert code == 0, text
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert read_head_checkpoint(last)[0].encoder == "sam2_hiera_tiny"
    out = tmp_path / "change.gpkg"
    code, text = run("detect-change", *pair_paths, "--model", last, "-o", out, "-q")
    assert code == 0, text
    assert gpd.read_file(out).crs.to_epsg() == 32633


def test_unetformer_trains_and_segments(tmp_path: Path) -> None:
    config = segment_config(tmp_path, encoder="sam2_hiera_tiny")
    code, text = run("train", "segment", "--config", config, "-q")
    assert code == 0, text
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert read_head_checkpoint(last)[0].encoder == "sam2_hiera_tiny"
    raster = write_raster(
        tmp_path / "scene.tif", (texture(80, 70, seed=3) * 60 + 100).astype(np.uint8)
    )
    out = tmp_path / "cover.gpkg"
    code, text = run("segment", raster, "--model", last, "-o", out, "-q")
    assert code == 0, text
    assert len(gpd.read_file(out)) > 0
