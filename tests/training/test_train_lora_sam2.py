"""``rs-sam train lora`` on SAM 2.1's Hiera (tiny random build): q/v LoRA in every Hiera
attention, one short run, the adapter saved and reloaded into a fresh encoder."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner
from PIL import Image

from rs_sam.cli.main import cli
from rs_sam.models.encoders import load_encoder
from rs_sam.models.lora import LoraSettings, apply_lora, load_adapter, read_adapter_metadata
from rs_sam.models.lora.qkv import LoraQKV
from tests.helpers.synthetic import texture

pytestmark = pytest.mark.filterwarnings("ignore::rs_sam.models.encoders.base.RandomWeightsWarning")

BUILDING = (220, 30, 30)


def _tiny() -> object:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_encoder("sam2_hiera_tiny", weights="random", tiny=True)


def _data(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True)
    for i in range(3):
        image = (texture(48, 48, seed=i) * 60 + 100).astype(np.uint8)
        label = np.full((48, 48, 3), (200, 180, 120), np.uint8)
        r, c = rng.integers(0, 32, size=2)
        image[:, r : r + 14, c : c + 14] = 230
        label[r : r + 14, c : c + 14] = BUILDING
        Image.fromarray(image.transpose(1, 2, 0)).save(root / "images" / f"tile_{i}.png")
        Image.fromarray(label).save(root / "masks" / f"tile_{i}.png")
    return root


def test_lora_targets_q_and_v_of_every_hiera_attention() -> None:
    encoder = _tiny()
    images = torch.rand(1, 3, 64, 64) * 255
    before = encoder.embed(images)
    info = apply_lora(encoder, LoraSettings(decoder=True))
    layers = [m for m in encoder.sam.image_encoder.modules() if isinstance(m, LoraQKV)]
    assert len(layers) == len(encoder.sam.image_encoder.backbone.blocks) == 5
    for layer in layers:  # q and v rows: the first and last third of [q | k | v]
        width = layer.out_features // 3
        assert layer.rows("q").tolist() == list(range(width))
        assert layer.rows("v").tolist() == list(range(2 * width, 3 * width))
    assert info.image_encoder > 0 and info.mask_decoder > 0 and info.decoder_layers > 0
    torch.testing.assert_close(encoder.embed(images), before)  # B = 0: unchanged


def test_train_lora_cli_saves_an_adapter_a_fresh_encoder_loads(tmp_path: Path) -> None:
    root = _data(tmp_path / "data")
    source = {"layout": "folders", "images": str(root / "images"), "labels": str(root / "masks")}
    config = {
        "seed": 0,
        "model": {"encoder": "sam2_hiera_tiny", "weights": "random", "tiny_encoder": True,
                  "decoder": True},
        "data": {
            "classes": {"classes": [
                {"name": "ground", "colour": "#C8B478"}, {"name": "building", "colour": "#DC1E1E"},
            ]},
            "target": "building",
            "train": [{**source, "names": ["tile_0", "tile_1"]}],
            "val": [{**source, "names": ["tile_2"]}],
            "chip_size": 48,
            "batch_size": 2,
        },
        "trainer": {"max_epochs": 1, "accelerator": "cpu", "log_every_n_steps": 1,
                    "default_root_dir": str(tmp_path / "run")},
    }  # fmt: skip
    path = tmp_path / "lora.yaml"
    path.write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(cli, ["train", "lora", "--config", str(path), "-q"])
    assert result.exit_code == 0, result.output
    adapter = tmp_path / "run" / "adapter.pt"
    record = read_adapter_metadata(adapter)
    assert record["base_encoder"] == "sam2_hiera_tiny" and record["tiny"] is True
    saved = torch.load(adapter, weights_only=True)["state_dict"]
    assert any(k.startswith("image_encoder.backbone.blocks.") and ".lora_B." in k for k in saved)
    assert any(k.startswith("mask_decoder.") and "lora_" in k for k in saved)
    fresh = _tiny()
    settings = load_adapter(adapter, fresh)
    assert settings.decoder is True and settings.targets == ("q", "v")
    own = fresh.sam.state_dict()
    assert all(torch.equal(own[k], v) for k, v in saved.items() if k in own)
