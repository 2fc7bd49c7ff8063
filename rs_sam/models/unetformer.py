"""UNetFormer: a UNet-like transformer decoder for semantic segmentation of remote sensing images.

The network of Wang et al. (ISPRS J. Photogramm. 2022), written from the paper for two
encoders: a (frozen) SAM-family :class:`~rs_sam.models.encoders.FrozenEncoder` behind conv
adapters, or the paper's ResNet-18. Every channel count is derived from the encoder's.

Data flow (``S`` = model input side: the encoder's ``input_size`` for SAM, the chip for ResNet;
``D`` = ``decoder_channels``)::

    sam:      chip (B, 3, H, H) 0..255 -> encoder.preprocess (resize to S, normalise)
              -> 4 maps at strides 4/8/16/32 of S (C_0..C_3 = encoder.channels)
              -> adapters: 1x1 conv-BN-ReLU to A_i = max(8, C_i // adapter_reduction)
    resnet18: chip (B, 3, H, W) 0..255 -> ImageNet normalisation -> ResNet-18 stages 1..4
              -> A = (64, 128, 256, 512) at strides 4/8/16/32

    stride 32: 1x1 conv-BN (A_3 -> D) -> GLTB                         -> x4  (aux)
    stride 16: WF(up2(x4), A_2 skip)  -> GLTB                         -> x3  (aux)
    stride 8:  WF(up2(x3), A_1 skip)  -> GLTB                         -> x2  (aux)
    stride 4:  FRH(up2(x2), A_0 skip): WF fusion, then spatial + channel attention
    head:      3x3 conv-BN-ReLU6, dropout, 1x1 conv to num_classes -> bilinear to (H, W)
    aux head (training, ``aux_head=True``): up(x4) + up(x3) + x2 at stride 8 -> 3x3
               conv-BN-ReLU6, dropout, 1x1 conv -> bilinear to (H, W)

The decoder blocks (GLTB, weighted fusion, feature refinement head) are in
:mod:`rs_sam.models.unetformer_blocks`; this module assembles them with an encoder.

Choices where the paper is silent or its code is specific to one setup:

* The SAM path adds 1x1 conv-BN-ReLU adapters in front of the decoder (frozen features need
  a trainable nonlinearity; as SAM-CD). ``adapter_reduction`` narrows them like SAM-CD's
  (default 1: the encoder widths; for ViT-B, (768, 768, 256, 256), 4 saves compute).
* ``freeze_encoder=True`` with ``backbone="resnet18"`` is allowed only with ImageNet weights:
  a frozen random ResNet learns nothing and is not in the head checkpoint.

Auxiliary head: with ``aux_head=True`` the model in training mode returns
``(logits, aux_logits)``, both ``(B, num_classes, H, W)``. Train with
``CE(logits) + aux_weight * CE(aux_logits)`` (0.4 in the paper;
:class:`rs_sam.losses.segment.SegmentationLoss` takes ``aux_logits``); the SAM losses apply to
the main logits only. In eval mode the model returns the logits alone; the aux head's weights
are part of :meth:`UNetFormer.head_state_dict`, so build the inference model with the same
``aux_head`` before loading.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Self

import torch
from torch import Tensor, nn

from rs_sam.errors import CheckpointError, CheckpointNotFoundError, ConfigError, InputRasterError
from rs_sam.models.encoders import FrozenEncoder
from rs_sam.models.head_state import HeadState
from rs_sam.models.samcd import adapter_channels
from rs_sam.models.unetformer_blocks import ConvBNReLU, UNetFormerDecoder

__all__ = ["UNetFormer"]

Backbone = Literal["sam", "resnet18"]

#: ImageNet statistics of 0..1 RGB (scaled to 0..255 in the model).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# --------------------------------------------------------------------------- the model


def _check_int(name: str, value: object, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name}={value!r} must be an integer >= {minimum}")
    return value


def _resnet18(imagenet_weights: bool) -> tuple[nn.Module, tuple[int, ...]]:
    """smp's ResNet-18 encoder (random or ImageNet) and its channels at strides 4..32."""
    from segmentation_models_pytorch import encoders as smp_encoders

    try:
        resnet = smp_encoders.get_encoder(
            "resnet18", weights="imagenet" if imagenet_weights else None
        )
    except Exception as error:  # network, hub and file errors differ between hub versions
        raise CheckpointNotFoundError(
            f"could not get the ImageNet ResNet-18 weights ({type(error).__name__}: {error}); "
            "pre-populate the Hugging Face hub cache (HF_HOME) with smp-hub/resnet18.imagenet "
            "on a connected machine, or pass imagenet_weights=False"
        ) from error
    # out_channels: (input, stride 2, 4, 8, 16, 32); the decoder takes strides 4..32.
    return resnet, tuple(int(c) for c in resnet.out_channels[2:])


class UNetFormer(HeadState):
    """UNetFormer semantic segmentation on a SAM-family pyramid or a ResNet-18.

    Args:
        encoder: A :class:`FrozenEncoder` from :func:`~rs_sam.models.encoders.load_encoder`
            (required for ``backbone="sam"``, None for ``"resnet18"``).
        backbone: ``"sam"`` (the encoder's pyramid behind adapters) or ``"resnet18"`` (the
            paper's setting).
        num_classes: Output classes (>= 2; softmax/cross-entropy over them).
        decoder_channels: Decoder width ``D`` (64 in the paper).
        window_size: Side of the attention windows (8 in the paper).
        num_heads: Attention heads; must divide ``decoder_channels`` (8 in the paper).
        dropout: Dropout before the classifier, in ``[0, 1)``.
        adapter_reduction: SAM adapters' widths are ``max(8, C_i // adapter_reduction)``;
            must be 1 for ResNet-18 (no adapters).
        freeze_encoder: True keeps the encoder frozen and in eval mode (only the head
            trains); False fine-tunes it. For ResNet-18, True needs ``imagenet_weights``.
        aux_head: Add the auxiliary head; in training mode ``forward`` then returns
            ``(logits, aux_logits)`` (see the module docstring).
        imagenet_weights: ResNet-18 only: load smp's ImageNet weights (downloaded through the
            Hugging Face hub, or found in its cache).

    Example:
        >>> model = UNetFormer(load_encoder("mobile_sam"), num_classes=6)
        >>> logits = model(chips)                  # (B, 3, H, H) RGB 0..255 -> (B, 6, H, H)
    """

    state_error = CheckpointError
    state_hint = (
        "build it with the backbone, encoder and options (aux_head, widths) it was trained with"
    )

    imagenet_mean: Tensor  # (1, 3, 1, 1), 0..255 scale, non-persistent (ResNet only)
    imagenet_std: Tensor

    def __init__(
        self,
        encoder: FrozenEncoder | None = None,
        *,
        backbone: Backbone = "sam",
        num_classes: int,
        decoder_channels: int = 64,
        window_size: int = 8,
        num_heads: int = 8,
        dropout: float = 0.1,
        adapter_reduction: int = 1,
        freeze_encoder: bool = True,
        aux_head: bool = False,
        imagenet_weights: bool = False,
    ) -> None:
        super().__init__()
        _check_int("num_classes", num_classes, minimum=2)
        _check_int("decoder_channels", decoder_channels)
        _check_int("window_size", window_size, minimum=2)
        _check_int("num_heads", num_heads)
        _check_int("adapter_reduction", adapter_reduction)
        if decoder_channels % num_heads:
            raise ConfigError(
                f"num_heads={num_heads} must divide decoder_channels={decoder_channels}: "
                "pick e.g. num_heads=8 with decoder_channels=64"
            )
        if isinstance(dropout, bool) or not isinstance(dropout, int | float):
            raise ConfigError(f"dropout={dropout!r} must be a number in [0, 1)")
        if not 0 <= dropout < 1:
            raise ConfigError(f"dropout={dropout!r} must be in [0, 1)")
        self.backbone = backbone
        self.num_classes = num_classes
        self.freeze_encoder = bool(freeze_encoder)
        self.aux_head = bool(aux_head)
        self.adapters: nn.ModuleList | None = None
        self.encoder: nn.Module
        if backbone == "sam":
            if not isinstance(encoder, FrozenEncoder):
                raise ConfigError(
                    "backbone='sam' needs encoder= a FrozenEncoder (from "
                    f"rs_sam.models.encoders.load_encoder); got {type(encoder).__name__}"
                )
            if imagenet_weights:
                raise ConfigError(
                    "imagenet_weights=True applies to backbone='resnet18' only; the SAM "
                    "encoder brings its own weights"
                )
            self.encoder = encoder
            self.encoder_channels: tuple[int, ...] = tuple(int(c) for c in encoder.channels)
            widths = adapter_channels(self.encoder_channels, adapter_reduction)
            # Plain ReLU in the adapters (as SAM-CD): frozen features are not bounded by 6.
            self.adapters = nn.ModuleList(
                ConvBNReLU(c, a, 1, relu6=False)
                for c, a in zip(self.encoder_channels, widths, strict=True)
            )
            decoder_inputs: tuple[int, ...] = widths
        elif backbone == "resnet18":
            if encoder is not None:
                raise ConfigError(
                    "backbone='resnet18' builds its own encoder: pass encoder=None "
                    "(or backbone='sam' to use the given FrozenEncoder)"
                )
            if adapter_reduction != 1:
                raise ConfigError(
                    f"adapter_reduction={adapter_reduction} applies to backbone='sam' only "
                    "(ResNet-18 feeds the decoder directly): leave it at 1"
                )
            if self.freeze_encoder and not imagenet_weights:
                raise ConfigError(
                    "backbone='resnet18' with freeze_encoder=True needs imagenet_weights=True "
                    "(a frozen random ResNet learns nothing): pass freeze_encoder=False to "
                    "train it from scratch"
                )
            self.encoder, self.encoder_channels = _resnet18(bool(imagenet_weights))
            decoder_inputs = self.encoder_channels
            mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255
            std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255
            self.register_buffer("imagenet_mean", mean, persistent=False)
            self.register_buffer("imagenet_std", std, persistent=False)
        else:
            raise ConfigError(f"backbone={backbone!r} is not one of 'sam', 'resnet18'")

        self.decoder = UNetFormerDecoder(
            decoder_inputs,
            dim=decoder_channels,
            num_heads=num_heads,
            window_size=window_size,
            num_classes=num_classes,
            dropout=float(dropout),
            aux_head=self.aux_head,
        )
        self._init_head()
        if self.freeze_encoder:
            for parameter in self.encoder.parameters():
                parameter.requires_grad_(False)
        elif isinstance(self.encoder, FrozenEncoder):
            # The pyramid never uses SAM's prompt encoder and mask decoder: keep them fixed.
            sam = self.encoder
            unused = [m for m in (sam.prompt_encoder, sam.mask_decoder) if m is not None]
            skip = {id(p) for module in unused for p in module.parameters()}
            for parameter in self.encoder.parameters():
                parameter.requires_grad_(id(parameter) not in skip)
        self.train()

    def _init_head(self) -> None:
        head = [self.decoder] if self.adapters is None else [self.decoder, self.adapters]
        for part in head:
            for module in part.modules():
                if isinstance(module, nn.Conv2d):
                    nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                    if module.bias is not None:
                        nn.init.zeros_(module.bias)

    # ------------------------------------------------------------------ modes
    def train(self, mode: bool = True) -> Self:
        """Set train/eval mode; a frozen encoder stays in eval mode whatever ``mode`` says."""
        super().train(mode)
        if self.freeze_encoder:
            nn.Module.train(self.encoder, False)
        elif isinstance(self.encoder, FrozenEncoder):
            # FrozenEncoder.train pins eval; a fine-tuned one follows the parent. No grad while
            # switching: TinyViT caches its attention biases on train(False).
            with torch.no_grad():
                nn.Module.train(self.encoder, mode)
        return self

    # ------------------------------------------------------------------ forward
    def forward(self, images: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        """Class logits of RGB chips.

        Args:
            images: ``(B, 3, H, W)`` RGB in 0..255 (square for ``backbone="sam"``).

        Returns:
            ``(B, num_classes, H, W)`` logits; with ``aux_head`` in training mode the tuple
            ``(logits, aux_logits)`` of two such tensors.
        """
        size = (int(images.shape[-2]), int(images.shape[-1]))
        return self.forward_features(self._encode(images), size)

    def forward_features(
        self, features: Sequence[Tensor], size: tuple[int, int]
    ) -> Tensor | tuple[Tensor, Tensor]:
        """The head alone, on precomputed (cached) encoder maps.

        Args:
            features: Four maps ``(B, C_i, h_i, w_i)`` at strides 4, 8, 16, 32 with
                ``C_i = encoder_channels[i]``: ``encoder(images).features`` for SAM, the
                ResNet stages 1..4 of the normalised chips for ResNet-18.
            size: ``(H, W)`` of the outputs (the chips).

        Returns:
            As :meth:`forward`, equal to it on the chips the features came from.
        """
        self._check_features(features)
        size = _check_size(size)
        maps = list(features)
        if self.adapters is not None:
            maps = [adapter(f) for adapter, f in zip(self.adapters, maps, strict=True)]
        logits, aux = self.decoder(maps, size)
        if aux is None:
            return logits
        return logits, aux

    def _encode(self, images: Tensor) -> list[Tensor]:
        """Pyramid of ``(B, 3, H, W)`` chips: frozen (no grad) or fine-tuned (with grad)."""
        if isinstance(self.encoder, FrozenEncoder):
            if self.freeze_encoder:
                return self.encoder(images).features
            # FrozenEncoder.forward runs under no_grad; fine-tuning needs the graph.
            self.encoder._warn_if_random()
            return self.encoder._encode(self.encoder.preprocess(images)).features
        if images.ndim != 4 or images.shape[1] != 3 or images.shape[0] == 0:
            raise InputRasterError(
                f"images must be a (B, 3, H, W) RGB batch with B >= 1; got shape "
                f"{tuple(images.shape)}: select or convert to three bands first"
            )
        if images.is_complex() or images.dtype == torch.bool:
            raise InputRasterError(
                f"images must hold real RGB values in 0..255; got {images.dtype}"
            )
        x = images.to(device=self.imagenet_mean.device, dtype=torch.float32)
        x = (x - self.imagenet_mean) / self.imagenet_std
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_encoder):
            return list(self.encoder(x)[2:])

    def _check_features(self, features: Sequence[Tensor]) -> None:
        if len(features) != 4:
            raise ConfigError(
                f"features has {len(features)} maps; UNetFormer needs the four maps at strides "
                "4, 8, 16, 32 (EncoderOutput.features)"
            )
        got = tuple(f.shape[1] if f.ndim == 4 else -1 for f in features)
        if got != self.encoder_channels:
            raise ConfigError(
                f"features have channels {got} but this model was built for "
                f"{self.encoder_channels}: build it on the encoder that produced the features"
            )
        batches = {f.shape[0] for f in features}
        if len(batches) != 1:
            raise ConfigError(f"the four maps have different batch sizes {sorted(batches)}")


def _check_size(size: Sequence[int]) -> tuple[int, int]:
    if len(size) != 2 or any(isinstance(s, bool) or int(s) != s or s < 1 for s in size):
        raise ConfigError(f"size={tuple(size)} must be (H, W) of the input chips, two ints >= 1")
    return int(size[0]), int(size[1])
