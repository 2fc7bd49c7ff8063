"""SAM 2.1 checkpoint layouts and their key names in rs-sam's SAM 2 module tree.

rs-sam's SAM 2 model (:class:`~rs_sam.models.encoders.sam2.Sam2Parts`) is made of transformers'
modules and named as transformers' ``Sam2Model`` except for its image encoder, called
``image_encoder`` as in every rs-sam SAM model (LoRA and training tasks address it so). Three
layouts load into it:

* **Meta's** ``sam2.1_hiera_*.pt`` (``{"model": state_dict}`` of the research code's
  ``SAM2Base``): ``image_encoder.trunk.*``, ``image_encoder.neck.*``, ``sam_prompt_encoder.*``,
  ``sam_mask_decoder.*``, ``no_mem_embed``; renamed by :data:`_META_RULES`, with the four
  ``point_embeddings.<i>`` stacked into one ``point_embed`` and the prompt encoder's random
  Fourier matrix also used as the image-wide one (``shared_image_embedding``), as transformers'
  conversion does.
* **transformers'** (a Hugging Face ``model.safetensors`` of ``Sam2Model`` or
  ``Sam2VideoModel``): ``vision_encoder.*`` becomes ``image_encoder.*``.
* **rs-sam's own** (a state dict of :class:`Sam2Parts`): as is.

Both official layouts also hold the video model (memory attention and encoder, object
pointers...), which single images never use: those tensors are dropped by name
(:data:`_VIDEO_ONLY`), so what remains must match the image model key for key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Literal

import torch
from torch import Tensor

Layout = Literal["meta", "transformers", "rs_sam"]

# Each layout's Hiera stem, which no other layout (nor any other model) has.
_STEMS: dict[Layout, str] = {
    "meta": "image_encoder.trunk.patch_embed.proj.weight",
    "transformers": "vision_encoder.backbone.patch_embed.projection.weight",
    "rs_sam": "image_encoder.backbone.patch_embed.projection.weight",
}

# Video-model tensors of Meta's SAM2Base and of transformers' Sam2VideoModel.
_VIDEO_ONLY: dict[Layout, re.Pattern[str]] = {
    "meta": re.compile(
        r"(memory_attention|memory_encoder|mask_downsample|obj_ptr_proj|obj_ptr_tpos_proj)\.|"
        r"(maskmem_tpos_enc|no_mem_pos_enc|no_obj_ptr|no_obj_embed_spatial)$"
    ),
    "transformers": re.compile(
        r"(memory_\w+|mask_downsample|object_pointer_proj|"
        r"temporal_positional_encoding_projection_layer)\.|"
        r"(memory_\w+|no_memory_positional_encoding|no_object_pointer|"
        r"occlusion_spatial_embedding_parameter)$"
    ),
    "rs_sam": re.compile(r"(?!)"),  # nothing
}

_MLP3 = r"(output_hypernetworks_mlps\.\d+|iou_prediction_head|pred_obj_score_head)"
_ATTN = r"(self_attn|cross_attn_token_to_image|cross_attn_image_to_token|final_attn_token_to_image)"

# Meta's names -> rs-sam's, applied in order to every kept key (first the top-level prefixes).
_META_RULES: tuple[tuple[str, str], ...] = (
    (r"^image_encoder\.trunk\.", "image_encoder.backbone."),
    (r"^sam_prompt_encoder\.", "prompt_encoder."),
    (r"^sam_mask_decoder\.", "mask_decoder."),
    (r"^no_mem_embed$", "no_memory_embedding"),
    # Hiera: patch embedding, block norms, two-layer MLPs
    (r"^(image_encoder\.backbone\.patch_embed)\.proj\.", r"\1.projection."),
    (r"^(image_encoder\.backbone\.blocks\.\d+)\.norm(\d)\.", r"\1.layer_norm\2."),
    (r"^(image_encoder\.backbone\.blocks\.\d+\.mlp)\.layers\.0\.", r"\1.proj_in."),
    (r"^(image_encoder\.backbone\.blocks\.\d+\.mlp)\.layers\.1\.", r"\1.proj_out."),
    # FPN neck: each lateral conv sits in a Sequential
    (r"^(image_encoder\.neck\.convs\.\d+)\.conv\.", r"\1."),
    # prompt encoder
    (r"^prompt_encoder\.pe_layer\.positional_encoding_gaussian_matrix$",
     "prompt_encoder.shared_embedding.positional_embedding"),
    (r"^prompt_encoder\.mask_downscaling\.0\.", "prompt_encoder.mask_embed.conv1."),
    (r"^prompt_encoder\.mask_downscaling\.1\.", "prompt_encoder.mask_embed.layer_norm1."),
    (r"^prompt_encoder\.mask_downscaling\.3\.", "prompt_encoder.mask_embed.conv2."),
    (r"^prompt_encoder\.mask_downscaling\.4\.", "prompt_encoder.mask_embed.layer_norm2."),
    (r"^prompt_encoder\.mask_downscaling\.6\.", "prompt_encoder.mask_embed.conv3."),
    # mask decoder: two-way transformer, upscaling, three-layer MLPs
    (rf"^(mask_decoder\.transformer\.(layers\.\d+\.)?{_ATTN})\.out_proj\.", r"\1.o_proj."),
    (r"^(mask_decoder\.transformer\.layers\.\d+)\.norm(\d)\.", r"\1.layer_norm\2."),
    (r"^mask_decoder\.transformer\.norm_final_attn\.",
     "mask_decoder.transformer.layer_norm_final_attn."),
    (r"^(mask_decoder\.transformer\.layers\.\d+\.mlp)\.layers\.0\.", r"\1.proj_in."),
    (r"^(mask_decoder\.transformer\.layers\.\d+\.mlp)\.layers\.1\.", r"\1.proj_out."),
    (r"^mask_decoder\.output_upscaling\.0\.", "mask_decoder.upscale_conv1."),
    (r"^mask_decoder\.output_upscaling\.1\.", "mask_decoder.upscale_layer_norm."),
    (r"^mask_decoder\.output_upscaling\.3\.", "mask_decoder.upscale_conv2."),
    (rf"^(mask_decoder\.{_MLP3})\.layers\.0\.", r"\1.proj_in."),
    (rf"^(mask_decoder\.{_MLP3})\.layers\.1\.", r"\1.layers.0."),
    (rf"^(mask_decoder\.{_MLP3})\.layers\.2\.", r"\1.proj_out."),
)  # fmt: skip
_POINT_EMBEDDING = re.compile(r"^prompt_encoder\.point_embeddings\.(\d+)\.weight$")
_FOURIER = "prompt_encoder.shared_embedding.positional_embedding"
_IMAGE_FOURIER = "shared_image_embedding.positional_embedding"


def layout_of(state_dict: Mapping[str, Tensor]) -> Layout | None:
    """Which SAM 2 layout a state dict is in (by its Hiera stem), or None (not SAM 2)."""
    return next((layout for layout, stem in _STEMS.items() if stem in state_dict), None)


def to_rs_sam(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """A SAM 2 state dict in rs-sam's names, without the video model's tensors.

    A state dict in no SAM 2 layout is returned as is (its keys then fail the strict check,
    which names what the file is).
    """
    layout = layout_of(state_dict)
    if layout is None:
        return dict(state_dict)
    video = _VIDEO_ONLY[layout]
    kept = {k: v for k, v in state_dict.items() if not video.match(k)}
    if layout == "transformers":
        return {re.sub(r"^vision_encoder\.", "image_encoder.", k): v for k, v in kept.items()}
    if layout == "rs_sam":
        return kept
    return _from_meta(kept)


def _from_meta(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    out: dict[str, Tensor] = {}
    points: dict[int, Tensor] = {}
    for key, value in state_dict.items():
        for pattern, replacement in _META_RULES:
            key = re.sub(pattern, replacement, key)
        match = _POINT_EMBEDDING.match(key)
        if match:
            points[int(match.group(1))] = value
        else:
            out[key] = value
    if points:  # four (1, C) embeddings -> one (4, C) table, in label order
        out["prompt_encoder.point_embed.weight"] = torch.cat([points[i] for i in sorted(points)])
    if _FOURIER in out:  # one random Fourier matrix for prompts and the image-wide encoding
        out[_IMAGE_FOURIER] = out[_FOURIER]
    return out
