"""Synthesised SAM 2.1 state dicts in the official layouts (no real weights on this machine).

* :func:`meta_state_dict`: the keys and shapes of Meta's ``sam2.1_hiera_*.pt`` (``SAM2Base``
  of the research code, video model included), written here from Meta's module definitions
  (``hieradet.Hiera``, ``FpnNeck``, ``PromptEncoder``, ``MaskDecoder``, ``TwoWayTransformer``)
  and the ``sam2.1_hiera_{t,s,b+,l}.yaml`` configurations, independently of rs-sam's renaming.
* :func:`transformers_state_dict`: those of transformers' ``Sam2VideoModel`` (what a Hugging
  Face ``model.safetensors`` in transformers' layout holds), built on the meta device.

``device="meta"`` gives shapes without memory (key checks of the full sizes); ``"cpu"`` gives
random tensors (files to load).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

# Meta's trunk settings per size (sam2.1 YAMLs; base+ uses Hiera's defaults). "test" is
# rs-sam's tiny test variant (encoders.sam2 "tiny"): stem 16, decoder width 32, one layer.
ARCH: dict[str, dict[str, Any]] = {
    "sam2_hiera_tiny": dict(width=96, heads=1, stages=(1, 2, 7, 2), global_att=(5, 7, 9),
                            bkg=(7, 7), windows=(8, 4, 14, 7), dim=256, depth=2, mlp=2048,
                            iou_hidden=256, mask_chans=16, size=1024),
    "sam2_hiera_small": dict(width=96, heads=1, stages=(1, 2, 11, 2), global_att=(7, 10, 13),
                             bkg=(7, 7), windows=(8, 4, 14, 7), dim=256, depth=2, mlp=2048,
                             iou_hidden=256, mask_chans=16, size=1024),
    "sam2_hiera_base_plus": dict(width=112, heads=2, stages=(2, 3, 16, 3),
                                 global_att=(12, 16, 20), bkg=(14, 14), windows=(8, 4, 14, 7),
                                 dim=256, depth=2, mlp=2048, iou_hidden=256, mask_chans=16,
                                 size=1024),
    "sam2_hiera_large": dict(width=144, heads=2, stages=(2, 6, 36, 4), global_att=(23, 33, 43),
                             bkg=(7, 7), windows=(8, 4, 16, 8), dim=256, depth=2, mlp=2048,
                             iou_hidden=256, mask_chans=16, size=1024),
    "test": dict(width=16, heads=1, stages=(1, 1, 2, 1), global_att=(3,), bkg=(4, 4),
                 windows=(8, 4, 4, 2), dim=32, depth=1, mlp=64, iou_hidden=32, mask_chans=4,
                 size=256),
}  # fmt: skip


def _linear(sd: dict, name: str, out: int, inp: int, make) -> None:
    sd[f"{name}.weight"] = make(out, inp)
    sd[f"{name}.bias"] = make(out)


def _norm(sd: dict, name: str, dim: int, make) -> None:
    sd[f"{name}.weight"] = make(dim)
    sd[f"{name}.bias"] = make(dim)


def _mlp(sd: dict, name: str, dims: list[int], make) -> None:
    """Meta's ``MLP``: ``layers.<i>`` Linears between consecutive ``dims``."""
    for i in range(len(dims) - 1):
        _linear(sd, f"{name}.layers.{i}", dims[i + 1], dims[i], make)


def _attention(sd: dict, name: str, dim: int, inner: int, make) -> None:
    for proj in ("q_proj", "k_proj", "v_proj"):
        _linear(sd, f"{name}.{proj}", inner, dim, make)
    _linear(sd, f"{name}.out_proj", dim, inner, make)


def meta_state_dict(size: str, device: str = "meta") -> dict[str, Tensor]:
    """Keys and shapes of Meta's checkpoint of ``size`` (a key of :data:`ARCH`)."""
    a = ARCH[size]

    def make(*shape: int) -> Tensor:
        return torch.randn(*shape, device=device) * 0.02

    sd: dict[str, Tensor] = {}
    trunk = "image_encoder.trunk"
    width = a["width"]
    sd[f"{trunk}.pos_embed"] = make(1, width, *a["bkg"])
    sd[f"{trunk}.pos_embed_window"] = make(1, width, a["windows"][0], a["windows"][0])
    sd[f"{trunk}.patch_embed.proj.weight"] = make(width, 3, 7, 7)
    sd[f"{trunk}.patch_embed.proj.bias"] = make(width)
    stage_ends = [sum(a["stages"][: i + 1]) - 1 for i in range(4)]
    dim = width
    for i in range(sum(a["stages"])):
        dim_out = dim * 2 if i - 1 in stage_ends else dim
        block = f"{trunk}.blocks.{i}"
        _norm(sd, f"{block}.norm1", dim, make)
        _linear(sd, f"{block}.attn.qkv", 3 * dim_out, dim, make)
        _linear(sd, f"{block}.attn.proj", dim_out, dim_out, make)
        _norm(sd, f"{block}.norm2", dim_out, make)
        _mlp(sd, f"{block}.mlp", [dim_out, 4 * dim_out, dim_out], make)
        if dim != dim_out:
            _linear(sd, f"{block}.proj", dim_out, dim, make)
        dim = dim_out
    d = a["dim"]
    for i, channels in enumerate([width * 8, width * 4, width * 2, width]):
        sd[f"image_encoder.neck.convs.{i}.conv.weight"] = make(d, channels, 1, 1)
        sd[f"image_encoder.neck.convs.{i}.conv.bias"] = make(d)
    pe = "sam_prompt_encoder"
    sd[f"{pe}.pe_layer.positional_encoding_gaussian_matrix"] = make(2, d // 2)
    for i in range(4):
        sd[f"{pe}.point_embeddings.{i}.weight"] = make(1, d)
    sd[f"{pe}.not_a_point_embed.weight"] = make(1, d)
    m = a["mask_chans"]
    sd[f"{pe}.mask_downscaling.0.weight"] = make(m // 4, 1, 2, 2)
    sd[f"{pe}.mask_downscaling.0.bias"] = make(m // 4)
    _norm(sd, f"{pe}.mask_downscaling.1", m // 4, make)
    sd[f"{pe}.mask_downscaling.3.weight"] = make(m, m // 4, 2, 2)
    sd[f"{pe}.mask_downscaling.3.bias"] = make(m)
    _norm(sd, f"{pe}.mask_downscaling.4", m, make)
    sd[f"{pe}.mask_downscaling.6.weight"] = make(d, m, 1, 1)
    sd[f"{pe}.mask_downscaling.6.bias"] = make(d)
    sd[f"{pe}.no_mask_embed.weight"] = make(1, d)
    md = "sam_mask_decoder"
    for i in range(a["depth"]):
        layer = f"{md}.transformer.layers.{i}"
        _attention(sd, f"{layer}.self_attn", d, d, make)
        _attention(sd, f"{layer}.cross_attn_token_to_image", d, d // 2, make)
        _attention(sd, f"{layer}.cross_attn_image_to_token", d, d // 2, make)
        for n in range(1, 5):
            _norm(sd, f"{layer}.norm{n}", d, make)
        _mlp(sd, f"{layer}.mlp", [d, a["mlp"], d], make)
    _attention(sd, f"{md}.transformer.final_attn_token_to_image", d, d // 2, make)
    _norm(sd, f"{md}.transformer.norm_final_attn", d, make)
    sd[f"{md}.iou_token.weight"] = make(1, d)
    sd[f"{md}.mask_tokens.weight"] = make(4, d)
    sd[f"{md}.obj_score_token.weight"] = make(1, d)
    sd[f"{md}.output_upscaling.0.weight"] = make(d, d // 4, 2, 2)
    sd[f"{md}.output_upscaling.0.bias"] = make(d // 4)
    _norm(sd, f"{md}.output_upscaling.1", d // 4, make)
    sd[f"{md}.output_upscaling.3.weight"] = make(d // 4, d // 8, 2, 2)
    sd[f"{md}.output_upscaling.3.bias"] = make(d // 8)
    sd[f"{md}.conv_s0.weight"] = make(d // 8, d, 1, 1)
    sd[f"{md}.conv_s0.bias"] = make(d // 8)
    sd[f"{md}.conv_s1.weight"] = make(d // 4, d, 1, 1)
    sd[f"{md}.conv_s1.bias"] = make(d // 4)
    for i in range(4):
        _mlp(sd, f"{md}.output_hypernetworks_mlps.{i}", [d, d, d, d // 8], make)
    _mlp(sd, f"{md}.iou_prediction_head", [d, a["iou_hidden"], a["iou_hidden"], 4], make)
    _mlp(sd, f"{md}.pred_obj_score_head", [d, d, d, 1], make)
    sd["no_mem_embed"] = make(1, 1, d)
    # the video model (memory, object pointers): a sample of each part
    sd["no_mem_pos_enc"] = make(1, 1, d)
    sd["maskmem_tpos_enc"] = make(7, 1, 1, 64)
    sd["no_obj_ptr"] = make(1, d)
    sd["no_obj_embed_spatial"] = make(1, 64)
    sd["mask_downsample.weight"] = make(1, 1, 4, 4)
    sd["mask_downsample.bias"] = make(1)
    _mlp(sd, "obj_ptr_proj", [d, d, d, d], make)
    _linear(sd, "obj_ptr_tpos_proj", 64, d, make)
    _attention(sd, "memory_attention.layers.0.self_attn", d, d, make)
    _norm(sd, "memory_attention.norm", d, make)
    _linear(sd, "memory_encoder.out_proj", 64, d, make)
    sd["memory_encoder.mask_downsampler.encoder.0.weight"] = make(4, 1, 3, 3)
    return sd


def transformers_state_dict(size: str) -> dict[str, Tensor]:
    """Keys and shapes (meta tensors) of transformers' ``Sam2VideoModel`` of ``size``."""
    from transformers import Sam2VideoModel
    from transformers.models.sam2.configuration_sam2 import Sam2HieraDetConfig, Sam2VisionConfig
    from transformers.models.sam2_video.configuration_sam2_video import Sam2VideoConfig

    a = ARCH[size]
    width = a["width"]
    backbone = Sam2HieraDetConfig(
        hidden_size=width,
        num_attention_heads=a["heads"],
        blocks_per_stage=list(a["stages"]),
        embed_dim_per_stage=[width * 2**i for i in range(4)],
        num_attention_heads_per_stage=[a["heads"] * 2**i for i in range(4)],
        window_size_per_stage=list(a["windows"]),
        global_attention_blocks=list(a["global_att"]),
        window_positional_embedding_background_size=list(a["bkg"]),
    )
    vision = Sam2VisionConfig(
        backbone_config=backbone, backbone_channel_list=[width * 2**i for i in (3, 2, 1, 0)]
    )
    with torch.device("meta"):
        model = Sam2VideoModel(Sam2VideoConfig(vision_config=vision))
    return dict(model.state_dict())
