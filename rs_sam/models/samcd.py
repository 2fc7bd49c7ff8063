"""SAM-CD: supervised change detection on a (frozen) SAM-family feature pyramid.

The method of Ding et al. (TGRS 2024, code ggsDing/SAM-CD), written for any encoder that
meets the :class:`~rs_sam.models.encoders.FrozenEncoder` contract. Every channel count below
is derived from ``encoder.channels``; nothing is written for one checkpoint.

Data flow, for each date (the same weights for both)::

    encoder -> 4 maps at strides 4/8/16/32 (C_0..C_3)
            -> adapters: 1x1 conv-BN-ReLU to A_i = max(8, C_i // adapter_reduction)
            -> decoder:  32 -> 16 -> 8 -> 4, each step a 2x upsample of the coarser map,
                         concat of the adapted skip, two 3x3 conv-BN-ReLU
                         (A_3 + A_2 -> A_1, A_1 + A_1 -> A_0, A_0 + A_0 -> decoder_channels)
            -> semantic head: 1x1 conv to k latent classes            (B, k, S/4, S/4)

Change branch: both dates' decoder features concatenated ``(B, 2D, S/4, S/4)`` ->
``residual_blocks`` residual blocks -> 1x1 conv-BN-ReLU to ``change_channels`` -> times an
attention map from both dates' semantic logits (concat, 1x1 conv to 2k // 4, BN, ReLU, 1x1
conv, sigmoid) -> 1x1 conv -> change logit, bilinearly upsampled to the input size.

With FastSAM-x channels (160, 320, 640, 640) and the defaults this is the published head:
adapters 640->160, 640->160, 320->80, 160->40; decoder 160+160->80, 80+80->40, 40+40->64.

Choices where the published code is silent or specific to one setup:

* Upsampling in the decoder is a 2x2 stride-2 transposed convolution as published
  (``upsample="transposed"``); ``upsample="bilinear"`` is a parameter-free alternative.
  When the upsampled map and the skip differ by a pixel (cached features of odd sizes) the
  upsampled map is bilinearly resized onto the skip.
* Semantic logits are returned at the input resolution (bilinear, like the change logit);
  the attention uses them at the decoder resolution ``S/4`` before upsampling.
* Both dates go through the encoder and the decoder as one batch of ``2B``: one call instead
  of two, and in training mode the decoder's BatchNorm statistics are those of both dates.
* The attention has ``change_channels`` outputs by default (one gate per change channel and
  pixel, as the published code); ``attention_channels=1`` gives one gate per pixel shared by
  all channels.
* ``freeze_encoder=False`` fine-tunes the encoder: its parameters (except the SAM prompt
  encoder and mask decoder, which the pyramid never uses) require grad, its forward runs with
  gradients, and it follows the parent's train/eval mode like any submodule (BatchNorm
  statistics adapt; TinyViT's attention-bias cache is only refreshed that way).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Self

import torch
import torch.nn.functional as F
from segmentation_models_pytorch.base.modules import Conv2dReLU
from torch import Tensor, nn

from rs_sam.errors import ConfigError, InputRasterError
from rs_sam.models.encoders import FrozenEncoder
from rs_sam.models.head_state import HeadState

__all__ = ["SamCD", "SamCDHead", "SamCDOutput", "adapter_channels"]

Upsample = Literal["transposed", "bilinear"]

#: Narrowest adapter output, whatever the encoder channels and reduction.
MIN_ADAPTER_CHANNELS = 8


@dataclass(frozen=True)
class SamCDOutput:
    """What :class:`SamCD` returns for a batch of image pairs of size ``H x W``.

    Attributes:
        change: ``(B, 1, H, W)`` change logits (sigmoid gives the change probability).
        semantic_a: ``(B, k, H, W)`` latent-class logits of date a (``k = latent_classes``).
        semantic_b: ``(B, k, H, W)`` latent-class logits of date b.
    """

    change: Tensor
    semantic_a: Tensor
    semantic_b: Tensor


def adapter_channels(channels: Sequence[int], reduction: int = 4) -> tuple[int, int, int, int]:
    """Output widths of the four adapters: ``max(8, C_i // reduction)`` per scale.

    Args:
        channels: Channels of the encoder maps at strides 4, 8, 16, 32.
        reduction: Channel reduction of the adapters (4 in SAM-CD).
    """
    widths = [max(MIN_ADAPTER_CHANNELS, int(c) // reduction) for c in channels]
    return (widths[0], widths[1], widths[2], widths[3])


def _check_positive(name: str, value: int, *, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name}={value!r} must be an integer >= {minimum}")


class _UpBlock(nn.Module):
    """2x upsample of the coarser map, concat the skip, two 3x3 conv-BN-ReLU.

    Args:
        in_channels: Channels of the coarser map.
        skip_channels: Channels of the skip (finer) map.
        out_channels: Channels of the output.
        upsample: ``"transposed"`` (2x2 stride-2 transposed conv keeping ``in_channels``) or
            ``"bilinear"``.
    """

    def __init__(
        self, in_channels: int, skip_channels: int, out_channels: int, *, upsample: Upsample
    ) -> None:
        super().__init__()
        self.up: nn.Module | None = None
        if upsample == "transposed":
            self.up = nn.ConvTranspose2d(in_channels, in_channels, kernel_size=2, stride=2)
        self.conv1 = Conv2dReLU(in_channels + skip_channels, out_channels, 3, padding=1)
        self.conv2 = Conv2dReLU(out_channels, out_channels, 3, padding=1)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        """``(N, C_in, h, w)`` and ``(N, C_skip, ~2h, ~2w)`` -> ``(N, C_out, *skip.shape[-2:])``."""
        size = skip.shape[-2:]
        if self.up is not None:
            x = self.up(x)
        if x.shape[-2:] != size:
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return self.conv2(self.conv1(torch.cat([x, skip], dim=1)))


class _ResidualBlock(nn.Module):
    """Two 3x3 conv-BN with an identity shortcut, ReLU after the sum (ResNet basic block)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = Conv2dReLU(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: Tensor) -> Tensor:
        """``(N, C, h, w)`` -> ``(N, C, h, w)``."""
        return F.relu(x + self.bn2(self.conv2(self.conv1(x))))


class SamCDHead(nn.Module):
    """Everything of SAM-CD after the encoder: adapters, decoder, semantic and change heads.

    Args:
        channels: Channels of the encoder maps at strides 4, 8, 16, 32.
        latent_classes: ``k``, latent semantic classes per date (8 in SAM-CD).
        adapter_reduction: Channel reduction of the adapters.
        decoder_channels: Width ``D`` of the finest decoder features (64 in SAM-CD).
        residual_blocks: Residual blocks of the change branch (6 in SAM-CD; 0 allowed).
        change_channels: Channels of the change features gated by the attention.
        attention_channels: Outputs of the attention: None (= ``change_channels``, as
            published) or 1 (one gate per pixel).
        upsample: Decoder upsampling, ``"transposed"`` (published) or ``"bilinear"``.
    """

    def __init__(
        self,
        channels: Sequence[int],
        *,
        latent_classes: int = 8,
        adapter_reduction: int = 4,
        decoder_channels: int = 64,
        residual_blocks: int = 6,
        change_channels: int = 16,
        attention_channels: int | None = None,
        upsample: Upsample = "transposed",
    ) -> None:
        super().__init__()
        if len(channels) != 4:
            raise ConfigError(
                f"channels={tuple(channels)} must give the four channel counts of the maps at "
                "strides 4, 8, 16, 32 (encoder.channels)"
            )
        for index, value in enumerate(channels):
            _check_positive(f"channels[{index}]", value)
        _check_positive("latent_classes", latent_classes, minimum=2)
        _check_positive("adapter_reduction", adapter_reduction)
        _check_positive("decoder_channels", decoder_channels)
        _check_positive("residual_blocks", residual_blocks, minimum=0)
        _check_positive("change_channels", change_channels)
        gates = change_channels if attention_channels is None else attention_channels
        if gates not in (1, change_channels):
            raise ConfigError(
                f"attention_channels={attention_channels!r} must be None (= change_channels, "
                f"{change_channels}) or 1"
            )
        if upsample not in ("transposed", "bilinear"):
            raise ConfigError(f"upsample={upsample!r} is not one of 'transposed', 'bilinear'")

        self.channels = tuple(int(c) for c in channels)
        self.latent_classes = latent_classes
        self.decoder_channels = decoder_channels
        widths = adapter_channels(self.channels, adapter_reduction)
        self.adapter_widths = widths
        self.adapters = nn.ModuleList(
            Conv2dReLU(c, w, 1) for c, w in zip(self.channels, widths, strict=True)
        )
        # Strides 32 -> 16, 16 -> 8, 8 -> 4; each block narrows to the next finer adapter width.
        self.decoder = nn.ModuleList(
            [
                _UpBlock(widths[3], widths[2], widths[1], upsample=upsample),
                _UpBlock(widths[1], widths[1], widths[0], upsample=upsample),
                _UpBlock(widths[0], widths[0], decoder_channels, upsample=upsample),
            ]
        )
        self.semantic = nn.Conv2d(decoder_channels, latent_classes, kernel_size=1)
        fused = 2 * decoder_channels
        self.change_blocks = nn.Sequential(*(_ResidualBlock(fused) for _ in range(residual_blocks)))
        self.change_proj = Conv2dReLU(fused, change_channels, 1)
        hidden = max(1, 2 * latent_classes // 4)
        self.attention = nn.Sequential(
            nn.Conv2d(2 * latent_classes, hidden, kernel_size=1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, gates, kernel_size=1),
            nn.Sigmoid(),
        )
        self.change_classifier = nn.Conv2d(change_channels, 1, kernel_size=1)
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def decode(self, features: Sequence[Tensor]) -> Tensor:
        """Adapters and decoder on one pyramid.

        Args:
            features: Four maps ``(N, C_i, S/s_i, S/s_i)``, strides 4, 8, 16, 32.

        Returns:
            ``(N, D, S/4, S/4)`` decoder features, ``D = decoder_channels``.
        """
        adapted = [adapter(f) for adapter, f in zip(self.adapters, features, strict=True)]
        x = adapted[3]
        for block, skip in zip(self.decoder, (adapted[2], adapted[1], adapted[0]), strict=True):
            x = block(x, skip)
        return x

    def forward(
        self, features_a: Sequence[Tensor], features_b: Sequence[Tensor], size: tuple[int, int]
    ) -> SamCDOutput:
        """Change and latent-class logits from both dates' pyramids.

        Args:
            features_a: Four maps ``(B, C_i, S/s_i, S/s_i)`` of date a (strides 4..32).
            features_b: The same for date b, same shapes.
            size: ``(H, W)`` of the outputs (the input images).

        Returns:
            :class:`SamCDOutput` with every map at ``size``.
        """
        self._check_features(features_a, features_b)
        size = _check_size(size)
        batch = features_a[0].shape[0]
        # Both dates through the shared adapters/decoder/semantic head in one 2B batch.
        both = [torch.cat([a, b], dim=0) for a, b in zip(features_a, features_b, strict=True)]
        decoded = self.decode(both)  # (2B, D, S/4, S/4)
        semantic = self.semantic(decoded)  # (2B, k, S/4, S/4)
        dec_a, dec_b = decoded[:batch], decoded[batch:]
        sem_a, sem_b = semantic[:batch], semantic[batch:]

        fused = self.change_blocks(torch.cat([dec_a, dec_b], dim=1))  # (B, 2D, S/4, S/4)
        gate = self.attention(torch.cat([sem_a, sem_b], dim=1))  # (B, 1 or C_c, S/4, S/4)
        change = self.change_classifier(self.change_proj(fused) * gate)  # (B, 1, S/4, S/4)
        return SamCDOutput(
            change=_resize(change, size),
            semantic_a=_resize(sem_a, size),
            semantic_b=_resize(sem_b, size),
        )

    def _check_features(self, features_a: Sequence[Tensor], features_b: Sequence[Tensor]) -> None:
        for name, features in (("features_a", features_a), ("features_b", features_b)):
            if len(features) != 4:
                raise ConfigError(
                    f"{name} has {len(features)} maps; SAM-CD needs the four maps at strides "
                    "4, 8, 16, 32 (EncoderOutput.features)"
                )
            got = tuple(f.shape[1] if f.ndim == 4 else -1 for f in features)
            if got != self.channels:
                raise ConfigError(
                    f"{name} has channels {got} but this head was built for {self.channels}: "
                    "build SamCD on the encoder that produced the features"
                )
        for index, (a, b) in enumerate(zip(features_a, features_b, strict=True)):
            if a.shape != b.shape:
                raise ConfigError(
                    f"features_a[{index}] {tuple(a.shape)} and features_b[{index}] "
                    f"{tuple(b.shape)} differ: encode both dates at the same size"
                )
        batches = {f.shape[0] for f in features_a}
        if len(batches) != 1:
            raise ConfigError(f"the four maps have different batch sizes {sorted(batches)}")


def _check_size(size: Sequence[int]) -> tuple[int, int]:
    if len(size) != 2 or any(isinstance(s, bool) or int(s) != s or s < 1 for s in size):
        raise ConfigError(f"size={tuple(size)} must be (H, W) of the input images, two ints >= 1")
    return int(size[0]), int(size[1])


def _resize(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear resize of ``(N, C, h, w)`` to ``size`` (no-op when already there)."""
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class SamCD(HeadState):
    """SAM-CD change detector: an encoder shared by both dates and a :class:`SamCDHead`.

    Args:
        encoder: A frozen encoder from :func:`~rs_sam.models.encoders.load_encoder`.
        latent_classes: ``k``, latent semantic classes per date.
        adapter_reduction: Channel reduction of the adapters (widths ``max(8, C_i // r)``).
        residual_blocks: Residual blocks of the change branch.
        change_channels: Channels of the gated change features.
        decoder_channels: Width of the finest decoder features.
        attention_channels: None (= ``change_channels``, as published) or 1.
        upsample: Decoder upsampling, ``"transposed"`` (published) or ``"bilinear"``.
        freeze_encoder: True keeps the encoder frozen and in eval mode (only the head
            trains); False fine-tunes it (see the module docstring).

    Example:
        >>> encoder = load_encoder("mobile_sam")
        >>> model = SamCD(encoder)
        >>> out = model(image_a, image_b)        # (B, 3, H, H) RGB in 0..255 each
        >>> out.change.shape                     # (B, 1, H, H) logits
    """

    state_error = ConfigError
    state_hint = "build SamCD with the encoder and options the checkpoint was trained with"

    def __init__(
        self,
        encoder: FrozenEncoder,
        *,
        latent_classes: int = 8,
        adapter_reduction: int = 4,
        residual_blocks: int = 6,
        change_channels: int = 16,
        decoder_channels: int = 64,
        attention_channels: int | None = None,
        upsample: Upsample = "transposed",
        freeze_encoder: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(encoder, FrozenEncoder):
            raise ConfigError(
                f"encoder must be a FrozenEncoder (from rs_sam.models.encoders.load_encoder); "
                f"got {type(encoder).__name__}"
            )
        self.encoder = encoder
        self.head = SamCDHead(
            encoder.channels,
            latent_classes=latent_classes,
            adapter_reduction=adapter_reduction,
            decoder_channels=decoder_channels,
            residual_blocks=residual_blocks,
            change_channels=change_channels,
            attention_channels=attention_channels,
            upsample=upsample,
        )
        self.freeze_encoder = bool(freeze_encoder)
        if self.freeze_encoder:
            encoder.freeze()
        else:
            unused = [m for m in (encoder.prompt_encoder, encoder.mask_decoder) if m is not None]
            skip = {id(p) for module in unused for p in module.parameters()}
            for parameter in encoder.parameters():
                parameter.requires_grad_(id(parameter) not in skip)
        self.train()

    # ------------------------------------------------------------------ modes
    def train(self, mode: bool = True) -> Self:
        """Set train/eval mode; a frozen encoder stays in eval mode whatever ``mode`` says."""
        super().train(mode)  # FrozenEncoder.train keeps the encoder in eval mode
        if not self.freeze_encoder:
            # A fine-tuned encoder follows the parent like any submodule. No grad while
            # switching: TinyViT caches its attention biases on train(False).
            with torch.no_grad():
                nn.Module.train(self.encoder, mode)
        return self

    # ------------------------------------------------------------------ forward
    def forward(self, image_a: Tensor, image_b: Tensor) -> SamCDOutput:
        """Change and latent-class logits of image pairs.

        Args:
            image_a: ``(B, 3, H, H)`` RGB in 0..255, date a.
            image_b: ``(B, 3, H, H)`` RGB in 0..255, date b, same shape.

        Returns:
            :class:`SamCDOutput`, every map at ``(H, H)``.
        """
        if image_a.shape != image_b.shape:
            raise InputRasterError(
                f"image_a {tuple(image_a.shape)} and image_b {tuple(image_b.shape)} differ: "
                "pass co-registered chips of the same size (e.g. from a BitemporalPair)"
            )
        batch = image_a.shape[0]
        features = self._encode(torch.cat([image_a, image_b], dim=0))
        features_a = [f[:batch] for f in features]
        features_b = [f[batch:] for f in features]
        size = (int(image_a.shape[-2]), int(image_a.shape[-1]))
        return self.head(features_a, features_b, size)

    def forward_features(
        self, features_a: Sequence[Tensor], features_b: Sequence[Tensor], size: tuple[int, int]
    ) -> SamCDOutput:
        """The head alone, on cached encoder features (``encoder(images).features``).

        Args:
            features_a: Four maps ``(B, C_i, S/s_i, S/s_i)`` of date a, strides 4..32.
            features_b: The same for date b.
            size: ``(H, W)`` of the outputs.

        Returns:
            :class:`SamCDOutput`, equal to ``forward`` on the images the features came from.
        """
        return self.head(features_a, features_b, size)

    def _encode(self, images: Tensor) -> list[Tensor]:
        """Pyramid of ``(N, 3, H, H)`` chips: frozen (no grad) or fine-tuned (with grad)."""
        if self.freeze_encoder:
            return self.encoder(images).features
        # FrozenEncoder.forward runs under no_grad; fine-tuning needs the graph.
        self.encoder._warn_if_random()
        return self.encoder._encode(self.encoder.preprocess(images)).features
