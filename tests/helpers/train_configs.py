"""Synthetic training data and configs shared by the training and QGIS tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from tests.helpers.synthetic import texture

COLOURS = {"ground": (200, 180, 120), "water": (30, 60, 200), "building": (220, 30, 30)}


def segment_folder(root: Path, count: int) -> Path:
    """Tiles with a water square and a building square; RGB colour labels, SAM-like objects."""
    rng = np.random.default_rng(0)
    for sub in ("images", "masks", "objects", "boundaries"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        image = (texture(64, 64, seed=i) * 60 + 100).astype(np.uint8)
        label = np.zeros((64, 64, 3), np.uint8)
        label[:] = COLOURS["ground"]
        objects = np.zeros((64, 64), np.uint32)
        for value, (name, paint) in enumerate((("water", 40), ("building", 230)), start=1):
            r, c = rng.integers(0, 40, size=2)
            image[:, r : r + 20, c : c + 20] = paint
            label[r : r + 20, c : c + 20] = COLOURS[name]
            objects[r : r + 20, c : c + 20] = value
        edges = np.zeros((64, 64), np.uint8)
        edges[1:] |= objects[1:] != objects[:-1]
        edges[:-1] |= objects[1:] != objects[:-1]
        Image.fromarray(image.transpose(1, 2, 0)).save(root / "images" / f"tile_{i}.jpg")
        Image.fromarray(label).save(root / "masks" / f"tile_{i}.png")
        Image.fromarray(objects.astype(np.uint16)).save(root / "objects" / f"tile_{i}.png")
        Image.fromarray(edges).save(root / "boundaries" / f"tile_{i}.png")
    return root


def segment_config(tmp_path: Path, **model) -> Path:
    root = segment_folder(tmp_path / "data", 6)
    source = {
        "layout": "folders",
        "images": str(root / "images"),
        "labels": str(root / "masks"),
        "objects": str(root / "objects"),
        "boundaries": str(root / "boundaries"),
    }
    classes = [{"name": name, "colour": "#{:02X}{:02X}{:02X}".format(*rgb)}
               for name, rgb in COLOURS.items()]  # fmt: skip
    tiny = {"encoder": "mobile_sam", "weights": "random", "tiny_encoder": True,
            "decoder_channels": 16, "num_heads": 2, "window_size": 4, "lr": 0.003}  # fmt: skip
    config = {
        "seed": 0,
        "model": {**tiny, **model},
        "data": {
            "classes": {"classes": classes},
            "train": [{**source, "names": [f"tile_{i}" for i in range(4)]}],
            "val": [{**source, "names": ["tile_4", "tile_5"]}],
            "chip_size": 64,
            "batch_size": 2,
            "cache_dir": str(tmp_path / "cache"),
        },
        "trainer": {
            "max_epochs": 1,
            "accelerator": "cpu",
            "default_root_dir": str(tmp_path / "run"),
            "log_every_n_steps": 1,
        },
    }
    path = tmp_path / "segment.yaml"
    path.write_text(yaml.safe_dump(config))
    return path
