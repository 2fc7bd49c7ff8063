"""SAM 2.1 (Hiera tiny, small, base+, large) as frozen encoders, on transformers' SAM 2 code.

The model is :class:`Sam2Parts`: transformers' ``Sam2VisionModel`` (Hiera backbone and FPN
neck), ``Sam2PromptEncoder`` and ``Sam2MaskDecoder``, the image-wide positional encoding and
``no_memory_embedding``, named as transformers' ``Sam2Model`` except for the image encoder
(``image_encoder``, as in every rs-sam SAM model). Meta's ``sam2.1_hiera_*.pt``, transformers'
``model.safetensors`` (a file or a Hugging Face model folder) and rs-sam's own state dicts load
into it strictly (:mod:`~rs_sam.models.encoders.sam2_keys`); the video model's tensors in the
official files are dropped, single images never use them.

What the encoder gives (input 1024 px, ImageNet mean/std as SAM 1's, so the same
``pixel_mean``/``pixel_std`` in 0..255):

* the pyramid: the outputs of Hiera's four stages, strides 4/8/16/32, channels ``C, 2C, 4C,
  8C`` for stem width ``C`` (96 tiny/small, 112 base+, 144 large);
* the SAM image embedding: the FPN neck's stride-16 level (256 channels) plus
  ``no_memory_embedding``, as SAM 2 does for a single image (transformers'
  ``Sam2Model.get_image_embeddings``, Meta's ``directly_add_no_mem_embed``);
* the high-resolution features SAM 2's mask decoder adds while upscaling
  (:meth:`FrozenEncoder.embed_high_res`): the neck's stride-4 and stride-8 levels through the
  decoder's ``conv_s0``/``conv_s1``, computed once per image as transformers and Meta do.

The neck is run here on its lateral convolutions (top-down sum at strides 32 -> 16 only, as
``fpn_top_down_levels`` = [2, 3] says) without computing its sine position encodings, which
nothing on a single image uses. ``tiny=True`` builds a small random variant (input 256, stem 16,
five blocks, decoder width 32) for fast tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rs_sam.checkpoints import load_into_model, load_state_dict
from rs_sam.models.encoders.base import EncoderOutput, FrozenEncoder, HighResEmbedding
from rs_sam.models.encoders.sam2_keys import to_rs_sam

if TYPE_CHECKING:
    from rs_sam.models.encoders.registry import EncoderSpec

_PATCH_SIZE = 16  # the SAM embedding's stride (the prompt encoder's "patch size")

# Hiera backbones (Meta's sam2.1_hiera_{t,s,b+,l}.yaml; base+ takes Hiera's defaults). Per stage
# the width and the heads double. "tiny" is rs-sam's test variant.
_HIERA: dict[str, dict[str, Any]] = {
    "sam2_hiera_tiny": dict(
        width=96, heads=1, blocks=(1, 2, 7, 2), global_blocks=(5, 7, 9),
        pos_embed=(7, 7), windows=(8, 4, 14, 7), image_size=1024, decoder="full",
    ),
    "sam2_hiera_small": dict(
        width=96, heads=1, blocks=(1, 2, 11, 2), global_blocks=(7, 10, 13),
        pos_embed=(7, 7), windows=(8, 4, 14, 7), image_size=1024, decoder="full",
    ),
    "sam2_hiera_base_plus": dict(
        width=112, heads=2, blocks=(2, 3, 16, 3), global_blocks=(12, 16, 20),
        pos_embed=(14, 14), windows=(8, 4, 14, 7), image_size=1024, decoder="full",
    ),
    "sam2_hiera_large": dict(
        width=144, heads=2, blocks=(2, 6, 36, 4), global_blocks=(23, 33, 43),
        pos_embed=(7, 7), windows=(8, 4, 16, 8), image_size=1024, decoder="full",
    ),
    "tiny": dict(
        width=16, heads=1, blocks=(1, 1, 2, 1), global_blocks=(3,),
        pos_embed=(4, 4), windows=(8, 4, 4, 2), image_size=256, decoder="tiny",
    ),
}  # fmt: skip

# FPN width (= SAM embedding channels) and prompt encoder / mask decoder sizes (SAM2Base's).
_DECODERS: dict[str, dict[str, int]] = {
    "full": dict(width=256, mlp_dim=2048, depth=2, heads=8, iou_hidden=256, mask_channels=16),
    "tiny": dict(width=32, mlp_dim=64, depth=1, heads=2, iou_hidden=32, mask_channels=4),
}


def hiera_channels(variant: str) -> tuple[int, int, int, int]:
    """Channels of a Hiera variant's four stages: (C, 2C, 4C, 8C)."""
    width = _HIERA[variant]["width"]
    return (width, 2 * width, 4 * width, 8 * width)


def _configs(variant: str) -> tuple[Any, Any, Any]:
    """transformers' vision, prompt-encoder and mask-decoder configurations of a variant."""
    from transformers.models.sam2.configuration_sam2 import (
        Sam2HieraDetConfig,
        Sam2MaskDecoderConfig,
        Sam2PromptEncoderConfig,
        Sam2VisionConfig,
    )

    cfg = _HIERA[variant]
    dec = _DECODERS[cfg["decoder"]]
    size = cfg["image_size"]
    channels = list(hiera_channels(variant))
    backbone = Sam2HieraDetConfig(
        hidden_size=cfg["width"],
        num_attention_heads=cfg["heads"],
        image_size=[size, size],
        blocks_per_stage=list(cfg["blocks"]),
        embed_dim_per_stage=channels,
        num_attention_heads_per_stage=[cfg["heads"] * 2**i for i in range(4)],
        window_size_per_stage=list(cfg["windows"]),
        global_attention_blocks=list(cfg["global_blocks"]),
        window_positional_embedding_background_size=list(cfg["pos_embed"]),
    )
    vision = Sam2VisionConfig(
        backbone_config=backbone,
        backbone_channel_list=channels[::-1],
        backbone_feature_sizes=[[size // s, size // s] for s in (4, 8, 16)],
        fpn_hidden_size=dec["width"],
    )
    prompt = Sam2PromptEncoderConfig(
        hidden_size=dec["width"],
        image_size=size,
        patch_size=_PATCH_SIZE,
        mask_input_channels=dec["mask_channels"],
    )
    decoder = Sam2MaskDecoderConfig(
        hidden_size=dec["width"],
        mlp_dim=dec["mlp_dim"],
        num_hidden_layers=dec["depth"],
        num_attention_heads=dec["heads"],
        iou_head_hidden_dim=dec["iou_hidden"],
    )
    decoder._attn_implementation = "sdpa"  # what Sam2Model gives its decoder by default
    return vision, prompt, decoder


class Sam2Parts(nn.Module):
    """SAM 2's single-image model, from transformers' modules (see the module docstring)."""

    def __init__(self, vision: Any, prompt: Any, decoder: Any) -> None:
        from transformers.models.sam2.modeling_sam2 import (
            Sam2MaskDecoder,
            Sam2PositionalEmbedding,
            Sam2PromptEncoder,
            Sam2VisionModel,
        )

        super().__init__()
        self.image_encoder = Sam2VisionModel(vision)
        self.prompt_encoder = Sam2PromptEncoder(prompt)
        self.mask_decoder = Sam2MaskDecoder(decoder)
        self.shared_image_embedding = Sam2PositionalEmbedding(prompt)
        self.no_memory_embedding = nn.Parameter(torch.zeros(1, 1, vision.fpn_hidden_size))

    def dense_pe(self) -> Tensor:
        """The image-wide positional encoding ``(1, C, E, E)`` of the embedding's cells."""
        side = self.prompt_encoder.image_embedding_size[0]
        fourier = self.shared_image_embedding
        centres = (torch.arange(side, device=fourier.positional_embedding.device) + 0.5) / side
        ys, xs = torch.meshgrid(centres, centres, indexing="ij")
        grid = torch.stack([xs, ys], dim=-1).to(fourier.positional_embedding.dtype)
        return fourier(grid).permute(2, 0, 1)[None]

    def stages(self, x: Tensor) -> list[Tensor]:
        """Hiera's four stage outputs ``(B, H, W, C_i)`` (channels last), strides 4..32."""
        return list(self.image_encoder.backbone(x).intermediate_hidden_states)

    def neck(self, stages: list[Tensor], levels: tuple[int, ...]) -> dict[int, Tensor]:
        """FPN outputs ``(B, 256, H, W)`` of stage ``levels`` (0 = stride 4 ... 2 = stride 16).

        transformers' ``Sam2VisionNeck`` without its position encodings: from the coarsest
        stage down to the finest level asked, a lateral 1x1 convolution (``convs[0]`` is the
        stride-32 one), plus the coarser output upsampled 2x (nearest) on the
        ``fpn_top_down_levels`` (SAM 2: strides 16 and 32).
        """
        neck = self.image_encoder.neck
        top = len(stages) - 1
        out: dict[int, Tensor] = {}
        previous: Tensor | None = None
        for level in range(top, min(levels) - 1, -1):
            lateral = neck.convs[top - level](stages[level].permute(0, 3, 1, 2))
            if previous is not None and level in neck.fpn_top_down_levels:
                lateral = lateral + F.interpolate(previous, scale_factor=2.0, mode="nearest")
            previous = lateral
            if level in levels:
                out[level] = lateral
        return out

    def embedding(self, fpn_16: Tensor) -> Tensor:
        """The SAM image embedding: the stride-16 FPN level plus ``no_memory_embedding``."""
        return fpn_16 + self.no_memory_embedding.view(1, -1, 1, 1)


class Sam2Encoder(FrozenEncoder):
    """A SAM 2.1 encoder: Hiera pyramid, SAM embedding and SAM 2's high-resolution features.

    Args:
        spec: Registry entry.
        sam: The :class:`Sam2Parts` model.
        input_size, channels, embedding_dim: See :class:`FrozenEncoder`.
    """

    sam: Sam2Parts

    def __init__(
        self,
        spec: EncoderSpec,
        sam: Sam2Parts,
        *,
        input_size: int,
        channels: tuple[int, int, int, int],
        embedding_dim: int,
    ) -> None:
        super().__init__(
            spec, input_size=input_size, channels=channels, embedding_dim=embedding_dim
        )
        self.sam = sam

    @property
    def prompt_encoder(self) -> nn.Module:
        """transformers' ``Sam2PromptEncoder`` (frozen)."""
        return self.sam.prompt_encoder

    @property
    def mask_decoder(self) -> nn.Module:
        """transformers' ``Sam2MaskDecoder`` (frozen)."""
        return self.sam.mask_decoder

    @property
    def has_high_res(self) -> bool:
        """SAM 2's decoder takes high-resolution features (:meth:`embed_high_res`)."""
        return True

    def _encode(self, x: Tensor) -> EncoderOutput:
        stages = self.sam.stages(x)
        embedding = self.sam.embedding(self.sam.neck(stages, (2,))[2])
        features = [stage.permute(0, 3, 1, 2) for stage in stages]
        return EncoderOutput(features=features, embedding=embedding)

    def _embed(self, x: Tensor) -> Tensor:
        return self.sam.embedding(self.sam.neck(self.sam.stages(x), (2,))[2])

    def _embed_high_res(self, x: Tensor) -> HighResEmbedding:
        fpn = self.sam.neck(self.sam.stages(x), (0, 1, 2))
        decoder = self.sam.mask_decoder
        high_res = (decoder.conv_s0(fpn[0]), decoder.conv_s1(fpn[1]))
        return HighResEmbedding(embedding=self.sam.embedding(fpn[2]), high_res=high_res)

    def load_checkpoint(self, path: Path) -> None:
        """Load Meta's, transformers' or rs-sam's SAM 2.1 state dict strictly.

        The video model's tensors of the official files are dropped; anything else that does
        not match (another size, another generation) is refused with one line naming it.
        """
        load_into_model(
            self.sam, to_rs_sam(load_state_dict(path)), encoder=self.spec.name, source=path
        )


def build_sam2(spec: EncoderSpec, *, tiny: bool = False) -> Sam2Encoder:
    """Random-weight SAM 2.1 encoder of ``spec`` (or the tiny test variant)."""
    variant = "tiny" if tiny else spec.name
    vision, prompt, decoder = _configs(variant)
    sam = Sam2Parts(vision, prompt, decoder)
    return Sam2Encoder(
        spec,
        sam,
        input_size=_HIERA[variant]["image_size"],
        channels=hiera_channels(variant),
        embedding_dim=vision.fpn_hidden_size,
    )
