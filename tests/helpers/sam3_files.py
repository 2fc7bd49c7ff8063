"""Synthesised SAM 3 files (no real weights on this machine): tiny model folders, key sets.

* :func:`write_tokenizer_files`: ``vocab.json`` + ``merges.txt`` of the tiny letters-only
  CLIP tokenizer, written as files (what a model folder holds).
* :func:`tiny_state_dict`: a random tiny ``Sam3Model``'s tensors, in transformers' layout of
  ``facebook/sam3`` (``detector_model.`` keys plus a tracker key) or bare.
* :func:`write_tiny_folder`: a Hugging Face model folder of the tiny model.
* :func:`official_state_dict`: the key set and shapes of ``facebook/sam3``'s
  ``model.safetensors`` (transformers' ``Sam3VideoModel``), on the meta device.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import Tensor

from rs_sam.models.concepts.sam3_config import tiny_config, tiny_vocab


def write_tokenizer_files(folder: Path) -> Path:
    """The tiny tokenizer as ``vocab.json`` + ``merges.txt`` in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(tiny_vocab()), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    return folder


def tiny_state_dict(*, official_layout: bool = True, seed: int = 0) -> dict[str, Tensor]:
    """A random tiny SAM 3's tensors; in ``facebook/sam3``'s layout when ``official_layout``."""
    from transformers import Sam3Model

    torch.manual_seed(seed)
    state = {k: v.contiguous() for k, v in Sam3Model(tiny_config()).state_dict().items()}
    if not official_layout:
        return state
    out = {f"detector_model.{k}": v for k, v in state.items()}
    out["tracker_model.memory_encoder.proj.weight"] = torch.zeros(2, 2)  # dropped on load
    return out


def write_tiny_folder(folder: Path, *, seed: int = 0) -> Path:
    """A Hugging Face model folder of the tiny SAM 3: config, weights, tokenizer files."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(tiny_config().to_json_string(), encoding="utf-8")
    save_file(tiny_state_dict(seed=seed), str(folder / "model.safetensors"))
    write_tokenizer_files(folder)
    return folder


def official_state_dict() -> dict[str, Tensor]:
    """Keys and shapes of ``facebook/sam3``'s ``model.safetensors`` (meta tensors)."""
    from transformers import Sam3VideoConfig, Sam3VideoModel

    with torch.device("meta"):
        return dict(Sam3VideoModel(Sam3VideoConfig()).state_dict())


def sam2_tiny_like(device: str = "cpu") -> dict[str, Tensor]:
    """Enough of a SAM 2.1 Hiera-tiny file (transformers' layout) to be identified:
    the stem and one small tensor per block (12 blocks, width 96)."""
    prefix = "vision_encoder.backbone."
    sd = {prefix + "patch_embed.projection.weight": torch.zeros(96, 3, 7, 7, device=device)}
    for block in range(12):
        sd[f"{prefix}blocks.{block}.layer_norm1.weight"] = torch.ones(96, device=device)
    return sd


def sam1_vit_b_like() -> dict[str, Tensor]:
    """Enough of a SAM ViT-B file (Meta's layout) to be identified: its patch embedding."""
    return {
        "image_encoder.patch_embed.proj.weight": torch.zeros(768, 3, 16, 16),
        "image_encoder.neck.0.weight": torch.zeros(256, 768, 1, 1),
    }
