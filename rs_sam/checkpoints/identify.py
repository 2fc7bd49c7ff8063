"""Naming the model a state dict belongs to, from its key names and shapes alone.

Every name :func:`identify_checkpoint` returns is listed in :data:`IDENTIFIABLE` and is the
name of an rs-sam encoder (a test checks this against the encoder registry), so the hint can
tell the user which encoder to use without this layer knowing the registry. Checkpoints of
models rs-sam has no encoder for (SAM 3) are only described (:func:`foreign_model`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from torch import Tensor

_VIT_WIDTHS = {768: "vit_b", 1024: "vit_l", 1280: "vit_h"}
_TINYVIT_STEM = "image_encoder.patch_embed.seq.2.c.weight"  # TinyViT stem conv, 64 out in MobileSAM
_YOLO_STEM_WIDTHS = {32: "fastsam_s", 80: "fastsam_x"}  # YOLOv8 width 0.5 / 1.25 of 64
_YOLO_PROTO = re.compile(r"model\.\d+\.proto\.")

# SAM 2 / 2.1 Hiera image encoders: (stem width, number of blocks) -> size. The stem and the
# blocks have these prefixes in Meta's files, in transformers' (Hugging Face) files and in
# rs-sam's own module tree.
_HIERA_SIZES = {(96, 12): "tiny", (96, 16): "small", (112, 24): "base_plus", (144, 48): "large"}
_HIERA_LAYOUTS = (
    ("image_encoder.trunk.", "patch_embed.proj.weight"),  # Meta (sam2.1_hiera_*.pt)
    ("vision_encoder.backbone.", "patch_embed.projection.weight"),  # transformers
    ("image_encoder.backbone.", "patch_embed.projection.weight"),  # rs-sam
)
_SAM3_PREFIXES = ("detector.", "detector_model.", "geometry_encoder.", "detr_decoder.")

IDENTIFIABLE: frozenset[str] = frozenset(
    [f"sam_{vit}" for vit in _VIT_WIDTHS.values()]
    + [f"sam_hq_{vit}" for vit in _VIT_WIDTHS.values()]
    + ["mobile_sam", "sam_hq_vit_tiny", *_YOLO_STEM_WIDTHS.values()]
    + [f"sam2_hiera_{size}" for size in _HIERA_SIZES.values()]
)


def identify_checkpoint(state_dict: Mapping[str, Tensor]) -> str | None:
    """Name the model a state dict belongs to, from its key names and shapes.

    Returns an rs-sam encoder name (``sam_vit_b/l/h``, ``mobile_sam``, ``fastsam_s/x``,
    ``sam2_hiera_tiny/small/base_plus/large`` for SAM 2.1 and SAM 2 files, in Meta's or
    transformers' layout), an HQ-SAM name (``sam_hq_vit_b/l/h``, ``sam_hq_vit_tiny``: HQ-only
    keys such as ``mask_decoder.hf_token.weight``), or None when nothing matches.
    """
    hq = any(key.startswith("mask_decoder.hf_token.") for key in state_dict)
    patch = state_dict.get("image_encoder.patch_embed.proj.weight")
    if patch is not None and patch.ndim == 4:
        vit = _VIT_WIDTHS.get(int(patch.shape[0]))
        return None if vit is None else (f"sam_hq_{vit}" if hq else f"sam_{vit}")
    stem = state_dict.get(_TINYVIT_STEM)
    if stem is not None and "image_encoder.neck.0.weight" in state_dict:
        if int(stem.shape[0]) != 64:
            return None
        return "sam_hq_vit_tiny" if hq else "mobile_sam"
    yolo_stem = state_dict.get("model.0.conv.weight")
    if yolo_stem is not None and any(_YOLO_PROTO.match(key) for key in state_dict):
        return _YOLO_STEM_WIDTHS.get(int(yolo_stem.shape[0]))
    return _identify_hiera(state_dict)


def _identify_hiera(state_dict: Mapping[str, Tensor]) -> str | None:
    """``sam2_hiera_<size>`` from the Hiera stem width and block count, in any layout."""
    for prefix, stem_key in _HIERA_LAYOUTS:
        stem = state_dict.get(prefix + stem_key)
        if stem is None or stem.ndim != 4:
            continue
        blocks = re.compile(re.escape(prefix) + r"blocks\.(\d+)\.")
        indices = {int(m.group(1)) for key in state_dict if (m := blocks.match(key))}
        size = _HIERA_SIZES.get((int(stem.shape[0]), max(indices, default=-1) + 1))
        return None if size is None else f"sam2_hiera_{size}"
    return None


def foreign_model(state_dict: Mapping[str, Tensor]) -> str | None:
    """What a state dict of a model without an rs-sam encoder is ("SAM 3"), else None."""
    if any(key.startswith(_SAM3_PREFIXES) for key in state_dict):
        return "SAM 3"
    return None


def identified_hint(identified: str | None, encoder: str) -> str:
    """What to tell a user whose file for ``encoder`` was identified as ``identified``."""
    if identified is None:
        return "it matches no known checkpoint: check that the file is the right one"
    if identified == encoder:
        return f"it looks like a '{identified}' checkpoint, but partial or modified"
    return f"it looks like a '{identified}' checkpoint: use encoder '{identified}'"


def checkpoint_hint(state_dict: Mapping[str, Tensor], encoder: str) -> str:
    """:func:`identified_hint` for a state dict, naming models rs-sam has no encoder for."""
    identified = identify_checkpoint(state_dict)
    foreign = None if identified is not None else foreign_model(state_dict)
    if foreign is not None:
        return (
            f"it looks like a {foreign} checkpoint, which no rs-sam encoder loads "
            "(SAM 3 is the concept model 'sam3': text and example-box prompts)"
        )
    return identified_hint(identified, encoder)
