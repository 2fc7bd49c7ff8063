"""SAM ViT-B/L/H, MobileSAM (TinyViT) and HQ-SAM as frozen encoders.

All are assembled as the official ``segment_anything.modeling.Sam`` (image encoder,
PromptEncoder and mask decoder), so the official checkpoints load strictly, key for key:
``sam_vit_*.pth`` into the ViT builds, ``mobile_sam.pt`` into the TinyViT build (TinyViT from
``segment_anything_hq.modeling``, whose image-encoder keys are MobileSAM's), and
``sam_hq_vit_{b,l,h,tiny}.pth`` into the HQ-SAM builds: the same image encoders
(``segment_anything_hq``'s ViT, key for key SAM's, and TinyViT) with
``segment_anything_hq.modeling.MaskDecoderHQ``, as ``segment_anything_hq.build_sam`` builds
them. A plain file never loads into an HQ build, nor an HQ file into a plain one.

HQ-SAM keeps SAM's weights frozen and adds an HQ output token, its MLP and the fusion of the
embedding with early-layer features (``interm``): the output of the first global-attention
block for ViT, the input of TinyViT's third stage (stride 16) for ``sam_hq_vit_tiny``
(what ``segment_anything_hq`` uses). :meth:`FrozenEncoder.embed_hq` returns both;
``encoder.hq_decoder`` is the ``MaskDecoderHQ`` and ``encoder.mask_decoder`` a plain
``segment_anything`` ``MaskDecoder`` sharing its SAM weights (nothing copied, not registered
twice), so plain decoding with an HQ encoder is exactly SAM's.

Feature pyramids are parameter-free (nothing random is added to a frozen encoder):

* MobileSAM: TinyViT's own stages. The last map each stage produces at a stride, taken before
  the stage's downsampling: stride 4 = stage 0 (64 ch), stride 8 = stage 1 (128 ch), stride 16
  = stage 3 (320 ch; stage 2's merge keeps stride 16 in the MobileSAM configuration), stride 32
  = 2x max-pooled stride-16 map. The SAM embedding is the neck output (256 ch).
* SAM ViT (ViTDet-style simple pyramid): stride 16 = the neck embedding (256 ch), stride 32 =
  its 2x max pool, strides 8 and 4 = the tokens of the first global-attention block (an early
  block that has seen the whole image once; embed_dim ch) upsampled 2x and 4x bilinearly.

Every hyperparameter is written once, in ``_VIT_VARIANTS``, ``_TINYVIT_VARIANTS`` and
``_DECODERS``; ``tiny=True`` picks reduced variants (input 256, random weights only) so a CPU
forward pass takes well under a second.
"""

from __future__ import annotations

import warnings
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rs_sam.checkpoints import load_into_model, load_state_dict
from rs_sam.errors import ConfigError
from rs_sam.models.encoders.base import EncoderOutput, FrozenEncoder, HqEmbedding
from rs_sam.models.encoders.tinyvit_inference import speed_up_tinyvit
from rs_sam.models.encoders.vit_attention import MASK_BYTES, use_lean_attention

if TYPE_CHECKING:
    from rs_sam.models.encoders.registry import EncoderSpec

_PATCH_SIZE = 16  # SAM ViT patch size; the SAM embedding is at stride 16 in every variant

# Prompt encoder + mask decoder hyperparameters (segment_anything.build_sam values for "full").
# TinyViT's neck always emits 256 channels, so the tiny MobileSAM decoder keeps width 256.
_DECODERS: dict[str, dict[str, int]] = {
    "full": dict(
        embed_dim=256, depth=2, mlp_dim=2048, num_heads=8, iou_hidden=256, mask_in_chans=16
    ),
    "tiny": dict(embed_dim=32, depth=1, mlp_dim=64, num_heads=2, iou_hidden=32, mask_in_chans=4),
    "tiny_256": dict(
        embed_dim=256, depth=1, mlp_dim=256, num_heads=8, iou_hidden=64, mask_in_chans=16
    ),
}

# SAM ViT image encoders (segment_anything.build_sam values; "tiny" is rs-sam's test variant).
_VIT_VARIANTS: dict[str, dict[str, Any]] = {
    "sam_vit_b": dict(
        embed_dim=768, depth=12, num_heads=12, global_attn_indexes=(2, 5, 8, 11),
        image_size=1024, window_size=14, decoder="full",
    ),
    "sam_vit_l": dict(
        embed_dim=1024, depth=24, num_heads=16, global_attn_indexes=(5, 11, 17, 23),
        image_size=1024, window_size=14, decoder="full",
    ),
    "sam_vit_h": dict(
        embed_dim=1280, depth=32, num_heads=16, global_attn_indexes=(7, 15, 23, 31),
        image_size=1024, window_size=14, decoder="full",
    ),
    "tiny": dict(
        embed_dim=64, depth=4, num_heads=2, global_attn_indexes=(1, 3),
        image_size=256, window_size=4, decoder="tiny",
    ),
}  # fmt: skip

# TinyViT image encoders (MobileSAM values from segment_anything_hq.build_sam_vit_t). The last
# embed dim must be 320/448/576: TinyViT's last patch merge keeps stride 16 only for those.
_TINYVIT_VARIANTS: dict[str, dict[str, Any]] = {
    "mobile_sam": dict(
        embed_dims=(64, 128, 160, 320), depths=(2, 2, 6, 2), num_heads=(2, 4, 5, 10),
        window_sizes=(7, 7, 14, 7), image_size=1024, decoder="full",
    ),
    "tiny": dict(
        embed_dims=(16, 32, 64, 320), depths=(1, 1, 1, 1), num_heads=(1, 2, 2, 4),
        window_sizes=(4, 4, 8, 4), image_size=256, decoder="tiny_256",
    ),
}  # fmt: skip

_TINYVIT_NECK_DIM = 256  # fixed inside segment_anything_hq's TinyViT
_TINYVIT_HQ_STAGE = 2  # HQ-SAM tiny fuses the input of this TinyViT stage (stride 16)

# HQ-SAM variants and the plain variant whose image encoder and decoder sizes they share.
HQ_BACKBONES: dict[str, str] = {
    "sam_hq_vit_b": "sam_vit_b",
    "sam_hq_vit_l": "sam_vit_l",
    "sam_hq_vit_h": "sam_vit_h",
    "sam_hq_vit_tiny": "mobile_sam",
}


def vit_channels(variant: str) -> tuple[int, int, int, int]:
    """Pyramid channels of a SAM ViT variant: (embed, embed, neck, neck)."""
    cfg = _VIT_VARIANTS[variant]
    out = _DECODERS[cfg["decoder"]]["embed_dim"]
    return (cfg["embed_dim"], cfg["embed_dim"], out, out)


def tinyvit_channels(variant: str) -> tuple[int, int, int, int]:
    """Pyramid channels of a TinyViT variant: (stage 0, stage 1, last stage, last stage)."""
    dims = _TINYVIT_VARIANTS[variant]["embed_dims"]
    return (dims[0], dims[1], dims[-1], dims[-1])


def _import_hq() -> Any:
    """``segment_anything_hq.modeling``, imported without timm's deprecation noise."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"timm\.")
        warnings.filterwarnings("ignore", message=r"Overwriting tiny_vit_", category=UserWarning)
        import segment_anything_hq.modeling as hq_modeling
    return hq_modeling


def _sam_parts(
    decoder: str, image_size: int, *, hq_vit_dim: int | None = None
) -> tuple[nn.Module, nn.Module]:
    """Official PromptEncoder and mask decoder for an embedding of stride 16.

    The decoder is ``segment_anything``'s plain ``MaskDecoder``, or with ``hq_vit_dim`` (the
    channels of the early-layer features) ``segment_anything_hq``'s ``MaskDecoderHQ``.
    """
    from segment_anything.modeling import MaskDecoder, PromptEncoder, TwoWayTransformer

    cfg = _DECODERS[decoder]
    grid = image_size // _PATCH_SIZE
    prompt_encoder = PromptEncoder(
        embed_dim=cfg["embed_dim"],
        image_embedding_size=(grid, grid),
        input_image_size=(image_size, image_size),
        mask_in_chans=cfg["mask_in_chans"],
    )
    common: dict[str, Any] = dict(
        num_multimask_outputs=3,
        transformer=TwoWayTransformer(
            depth=cfg["depth"],
            embedding_dim=cfg["embed_dim"],
            mlp_dim=cfg["mlp_dim"],
            num_heads=cfg["num_heads"],
        ),
        transformer_dim=cfg["embed_dim"],
        iou_head_depth=3,
        iou_head_hidden_dim=cfg["iou_hidden"],
    )
    if hq_vit_dim is None:
        return prompt_encoder, MaskDecoder(**common)
    return prompt_encoder, _import_hq().MaskDecoderHQ(**common, vit_dim=hq_vit_dim)


def plain_decoder_view(hq_decoder: nn.Module) -> nn.Module:
    """A ``segment_anything`` ``MaskDecoder`` made of an HQ decoder's SAM submodules.

    Nothing is copied: the view holds the very modules of ``hq_decoder`` (transformer, SAM
    tokens, upscaling, hypernetwork MLPs, IoU head), so it follows every load, ``.to()`` or
    dtype change of them, and decodes exactly as SAM does (the HQ token takes no part).
    """
    from segment_anything.modeling import MaskDecoder

    view = MaskDecoder.__new__(MaskDecoder)
    nn.Module.__init__(view)
    view.transformer_dim = hq_decoder.transformer_dim
    view.num_multimask_outputs = hq_decoder.num_multimask_outputs
    view.num_mask_tokens = hq_decoder.num_multimask_outputs + 1  # without the HQ token
    for name in (
        "transformer",
        "iou_token",
        "mask_tokens",
        "output_upscaling",
        "output_hypernetworks_mlps",
        "iou_prediction_head",
    ):
        setattr(view, name, getattr(hq_decoder, name))
    return view.train(False)


def _assemble(
    spec: EncoderSpec,
    image_encoder: nn.Module,
    decoder: str,
    size: int,
    *,
    hq_vit_dim: int | None = None,
) -> nn.Module:
    from segment_anything.modeling import Sam

    prompt_encoder, mask_decoder = _sam_parts(decoder, size, hq_vit_dim=hq_vit_dim)
    return Sam(
        image_encoder=image_encoder,
        prompt_encoder=prompt_encoder,
        mask_decoder=mask_decoder,
        pixel_mean=list(spec.pixel_mean),
        pixel_std=list(spec.pixel_std),
    )


def _tokens_to_map(tokens: Tensor, resolution: tuple[int, int]) -> Tensor:
    """``(B, H*W, C)`` tokens -> ``(B, C, H, W)`` map."""
    batch, _, channels = tokens.shape
    return tokens.transpose(1, 2).reshape(batch, channels, *resolution)


class _SamFamilyEncoder(FrozenEncoder):
    """Common part of the SAM-family encoders: a whole official ``Sam`` module."""

    sam: Any  # segment_anything.modeling.Sam (the package ships no type information)

    def __init__(
        self,
        spec: EncoderSpec,
        sam: nn.Module,
        *,
        input_size: int,
        channels: tuple[int, int, int, int],
        embedding_dim: int,
    ) -> None:
        super().__init__(
            spec, input_size=input_size, channels=channels, embedding_dim=embedding_dim
        )
        self.sam = sam
        # HQ builds: a plain view of the HQ decoder's SAM part, kept out of the module tree
        # (its parameters are the HQ decoder's; registering it would list them twice).
        plain = None if not spec.hq else plain_decoder_view(sam.mask_decoder)
        object.__setattr__(self, "_plain_decoder", plain)

    @property
    def prompt_encoder(self) -> nn.Module:
        """The official ``segment_anything`` PromptEncoder (frozen)."""
        return self.sam.prompt_encoder

    @property
    def mask_decoder(self) -> nn.Module:
        """The official plain ``segment_anything`` MaskDecoder (frozen).

        For HQ-SAM encoders, a plain view sharing the HQ decoder's SAM weights: decoding
        through it is SAM's, without the HQ output token.
        """
        return self._plain_decoder if self._plain_decoder is not None else self.sam.mask_decoder

    @property
    def hq_decoder(self) -> nn.Module | None:
        """``segment_anything_hq``'s ``MaskDecoderHQ`` of HQ-SAM encoders, else None."""
        return self.sam.mask_decoder if self.spec.hq else None

    def load_checkpoint(self, path: Path) -> None:
        """Load an official SAM/MobileSAM/HQ-SAM state dict strictly into the ``Sam`` module."""
        load_into_model(self.sam, load_state_dict(path), encoder=self.spec.name, source=path)
        self.train(False)  # TinyViT caches its attention biases when switched to eval


class SamViTEncoder(_SamFamilyEncoder):
    """SAM ViT-B/L/H image encoder with a parameter-free ViTDet-style pyramid.

    Args:
        spec: Registry entry.
        sam: Official ``Sam`` whose ``image_encoder`` is an ``ImageEncoderViT``.
        early_block: Index of the block whose tokens give the stride-4/8 maps.
        input_size, channels, embedding_dim: See :class:`FrozenEncoder`.
    """

    def __init__(
        self,
        spec: EncoderSpec,
        sam: nn.Module,
        *,
        early_block: int,
        input_size: int,
        channels: tuple[int, int, int, int],
        embedding_dim: int,
    ) -> None:
        super().__init__(
            spec, sam, input_size=input_size, channels=channels, embedding_dim=embedding_dim
        )
        self.early_block = early_block

    @property
    def activation_bytes(self) -> int:
        """Estimated peak activation bytes of one image's pass (batching rule, features.py).

        About 20 token maps are alive at once in a block (input, residual, qkv and its
        per-head copies, attention output, the 4x MLP hidden before and after GELU), plus
        at most ``MASK_BYTES`` of rel-pos mask: ~280 MB for ViT-B at 1024 px.
        """
        vit = self.sam.image_encoder
        tokens = (self.input_size // _PATCH_SIZE) ** 2
        itemsize = vit.pos_embed.element_size()
        mask = min(MASK_BYTES, vit.blocks[0].attn.num_heads * tokens**2 * itemsize)
        return tokens * vit.pos_embed.shape[-1] * itemsize * 20 + mask

    def _tokens(self, x: Tensor, keep: int | None) -> tuple[Tensor, Tensor | None]:
        """Run the ViT; return its last tokens ``(B, S/16, S/16, D)`` and block ``keep``'s."""
        vit = self.sam.image_encoder
        tokens = vit.patch_embed(x)
        if vit.pos_embed is not None:
            tokens = tokens + vit.pos_embed
        kept = None
        for index, block in enumerate(vit.blocks):
            tokens = block(tokens)
            if index == keep:
                kept = tokens
        return tokens, kept

    def _encode(self, x: Tensor) -> EncoderOutput:
        tokens, early = self._tokens(x, self.early_block)
        if early is None:
            raise ConfigError(
                f"early_block {self.early_block} is past the last ViT block of '{self.spec.name}'"
            )
        embedding = self.sam.image_encoder.neck(tokens.permute(0, 3, 1, 2))  # (B, 256, S/16, S/16)
        early_map = early.permute(0, 3, 1, 2)  # (B, D, S/16, S/16)
        features = [
            F.interpolate(early_map, scale_factor=4.0, mode="bilinear", align_corners=False),
            F.interpolate(early_map, scale_factor=2.0, mode="bilinear", align_corners=False),
            embedding,
            F.max_pool2d(embedding, kernel_size=2, stride=2),
        ]
        return EncoderOutput(features=features, embedding=embedding)

    def _embed(self, x: Tensor) -> Tensor:
        tokens, _ = self._tokens(x, None)
        return self.sam.image_encoder.neck(tokens.permute(0, 3, 1, 2))

    def _embed_hq(self, x: Tensor) -> HqEmbedding:
        # segment_anything_hq's ImageEncoderViT returns the tokens of every global-attention
        # block; MaskDecoderHQ uses the first, which is early_block.
        tokens, early = self._tokens(x, self.early_block)
        assert early is not None  # early_block is a global-attention block of the ViT
        embedding = self.sam.image_encoder.neck(tokens.permute(0, 3, 1, 2))
        return HqEmbedding(embedding=embedding, interm=early.permute(0, 3, 1, 2))


class MobileSamEncoder(_SamFamilyEncoder):
    """MobileSAM (TinyViT) image encoder with a pyramid from TinyViT's own stages."""

    @property
    def activation_bytes(self) -> int:
        """Estimated peak activation bytes of one image's pass (batching rule, features.py).

        The peak is in stage 0's MBConvs at stride 4: about 6 maps of its width alive at
        once (the 4x expansion before and after GELU, the residual): ~100 MB at 1024 px.
        """
        stem = self.sam.image_encoder.patch_embed.seq[-1].c  # last conv of the stride-4 stem
        side = self.input_size // 4
        return side * side * stem.out_channels * stem.weight.element_size() * 6

    def _stages(self, x: Tensor) -> tuple[dict[int, Tensor], Tensor]:
        """Last map per stride ``{4, 8, 16: (B, C, S/s, S/s)}`` and the stage-2 input map."""
        vit = self.sam.image_encoder
        maps: dict[int, Tensor] = {}  # stride -> last map produced at that stride
        interm = None
        # channels last: the folded convolutions' layout (tinyvit_inference.py)
        h = vit.patch_embed(x.contiguous(memory_format=torch.channels_last))  # (B, C0, S/4, S/4)
        for index, layer in enumerate(vit.layers):
            resolution = tuple(layer.input_resolution)
            if index == _TINYVIT_HQ_STAGE:
                interm = _tokens_to_map(h, resolution)
            for block in layer.blocks:
                h = block(h)
            stride = self.input_size // resolution[0]
            maps[stride] = h if h.ndim == 4 else _tokens_to_map(h, resolution)
            if layer.downsample is not None:
                h = layer.downsample(h)  # tokens (B, L, C_next)
        assert interm is not None  # every TinyViT variant here has four stages
        return maps, interm

    def _encode(self, x: Tensor) -> EncoderOutput:
        maps, _ = self._stages(x)
        last = maps[16]  # (B, C3, S/16, S/16)
        embedding = self.sam.image_encoder.neck(last)  # (B, 256, S/16, S/16)
        features = [maps[4], maps[8], last, F.max_pool2d(last, kernel_size=2, stride=2)]
        return EncoderOutput(features=features, embedding=embedding)

    def _embed_hq(self, x: Tensor) -> HqEmbedding:
        # segment_anything_hq's TinyViT keeps the output of layers[1] (its patch merge into
        # stage 2, stride 16): the input of stage 2.
        maps, interm = self._stages(x)
        return HqEmbedding(embedding=self.sam.image_encoder.neck(maps[16]), interm=interm)


def _import_tiny_vit() -> type[nn.Module]:
    """TinyViT class of segment_anything_hq, importing it without timm's deprecation noise."""
    return _import_hq().TinyViT


def _variant(spec: EncoderSpec, tiny: bool) -> str:
    """Key of ``spec``'s hyperparameters: "tiny", or the (plain) variant name."""
    return "tiny" if tiny else HQ_BACKBONES.get(spec.name, spec.name)


def build_sam_vit(spec: EncoderSpec, *, tiny: bool = False) -> SamViTEncoder:
    """Random-weight SAM or HQ-SAM ViT encoder of ``spec`` (plain SAM's decoder, or HQ's).

    HQ builds (``spec.hq``) use ``segment_anything_hq``'s ``ImageEncoderViT`` (its keys are
    SAM's) and ``MaskDecoderHQ`` with ``vit_dim`` = the ViT width, as its ``build_sam`` does.
    """
    if spec.hq:
        image_encoder_vit = _import_hq().ImageEncoderViT
    else:
        from segment_anything.modeling import ImageEncoderViT as image_encoder_vit

    variant = _variant(spec, tiny)
    cfg = _VIT_VARIANTS[variant]
    out_chans = _DECODERS[cfg["decoder"]]["embed_dim"]
    image_encoder = image_encoder_vit(
        depth=cfg["depth"],
        embed_dim=cfg["embed_dim"],
        img_size=cfg["image_size"],
        mlp_ratio=4,
        norm_layer=partial(nn.LayerNorm, eps=1e-6),
        num_heads=cfg["num_heads"],
        patch_size=_PATCH_SIZE,
        qkv_bias=True,
        use_rel_pos=True,
        global_attn_indexes=cfg["global_attn_indexes"],
        window_size=cfg["window_size"],
        out_chans=out_chans,
    )
    # Same parameters and keys, no (heads, L, L) attention matrices (vit_attention.py).
    use_lean_attention(image_encoder)
    hq_vit_dim = cfg["embed_dim"] if spec.hq else None
    sam = _assemble(spec, image_encoder, cfg["decoder"], cfg["image_size"], hq_vit_dim=hq_vit_dim)
    return SamViTEncoder(
        spec,
        sam,
        early_block=cfg["global_attn_indexes"][0],
        input_size=cfg["image_size"],
        channels=vit_channels(variant),
        embedding_dim=out_chans,
    )


def build_mobile_sam(spec: EncoderSpec, *, tiny: bool = False) -> MobileSamEncoder:
    """Random-weight MobileSAM encoder: TinyViT + SAM prompt encoder and plain decoder.

    For ``sam_hq_vit_tiny`` (``spec.hq``, HQ-SAM's "Light HQ-SAM") the decoder is
    ``MaskDecoderHQ`` with ``vit_dim`` = the channels of TinyViT's stage 2 (160).
    """
    tiny_vit = _import_tiny_vit()
    variant = _variant(spec, tiny)
    cfg = _TINYVIT_VARIANTS[variant]
    image_encoder = tiny_vit(
        img_size=cfg["image_size"],
        in_chans=3,
        num_classes=1000,  # unused classifier head, kept so mobile_sam.pt loads strictly
        embed_dims=list(cfg["embed_dims"]),
        depths=list(cfg["depths"]),
        num_heads=list(cfg["num_heads"]),
        window_sizes=list(cfg["window_sizes"]),
        mlp_ratio=4.0,
        drop_rate=0.0,
        drop_path_rate=0.0,
        use_checkpoint=False,
        mbconv_expand_ratio=4.0,
        local_conv_size=3,
        layer_lr_decay=0.8,
    )
    speed_up_tinyvit(image_encoder)  # same keys; BN folded, GELUs in place (tinyvit_inference.py)
    hq_vit_dim = cfg["embed_dims"][_TINYVIT_HQ_STAGE] if spec.hq else None
    sam = _assemble(spec, image_encoder, cfg["decoder"], cfg["image_size"], hq_vit_dim=hq_vit_dim)
    return MobileSamEncoder(
        spec,
        sam,
        input_size=cfg["image_size"],
        channels=tinyvit_channels(variant),
        embedding_dim=_TINYVIT_NECK_DIM,
    )
