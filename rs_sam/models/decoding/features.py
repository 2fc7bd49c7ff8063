"""What an image encoder produced for a chip that a SAM decoder needs."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor


@dataclass(frozen=True)
class ChipFeatures:
    """The image side of SAM decoding, for ``B`` chips (usually one).

    Attributes:
        embedding: ``(B, C, E, E)`` SAM image embedding (:meth:`FrozenEncoder.embed`).
        interm: ``(B, D, E, E)`` early-layer features HQ-SAM's decoder fuses with the
            embedding (:meth:`FrozenEncoder.embed_hq`), or None.
        high_res: SAM 2's stride-4 and stride-8 maps ``(B, C/8, 4E, 4E)``, ``(B, C/4, 2E, 2E)``
            that its mask decoder adds while upscaling (:meth:`FrozenEncoder.embed_high_res`),
            or None for decoders without them.
        hq_features: HQ-SAM's fused features ``(B, C/8, 4E, 4E)``, filled once per chip by
            :meth:`SamDecoder.prepare` (they depend on the decoder's weights); None until then.
    """

    embedding: Tensor
    interm: Tensor | None = None
    high_res: tuple[Tensor, ...] | None = None
    hq_features: Tensor | None = None

    def with_hq_features(self, hq_features: Tensor) -> ChipFeatures:
        """A copy carrying HQ-SAM's fused features."""
        return replace(self, hq_features=hq_features)

    def row(self, index: int) -> ChipFeatures:
        """The features of chip ``index`` alone (batch of one)."""
        part = slice(index, index + 1)
        return ChipFeatures(
            self.embedding[part],
            None if self.interm is None else self.interm[part],
            None if self.high_res is None else tuple(h[part] for h in self.high_res),
            None if self.hq_features is None else self.hq_features[part],
        )


#: Most estimated activation bytes of one encoder pass when choosing how many images to batch.
PASS_BYTES = 256 * 2**20


def images_per_pass(encoder: Any, count: int) -> int:
    """How many of ``count`` images to encode together: a choice by memory.

    Batching saves a little time but holds every image's activations at once. Encoders that
    estimate their per-image activations (``encoder.activation_bytes``: the SAM ViTs, about
    280 MB for ViT-B at 1024 px; MobileSAM, about 100 MB) batch as many images as fit in
    :data:`PASS_BYTES`, at least one: ViT-B/L/H one at a time, MobileSAM two at once. Others
    (SAM 2, FastSAM) batch all ``count``.
    """
    per_image = getattr(encoder, "activation_bytes", None)
    if not per_image:
        return count
    return max(1, min(count, PASS_BYTES // int(per_image)))


def encoder_features(
    encoder: Any, images: Tensor, *, trainable: bool = False, per_pass: int | None = None
) -> ChipFeatures:
    """What plain (not HQ) SAM decoding needs of RGB chips ``(B, 3, H, W)``.

    The embedding, and for SAM 2 encoders (``encoder.has_high_res``) the high-resolution
    features, from one pass through the encoder, or from passes of ``per_pass`` images
    (see :func:`images_per_pass`; the result is the same). Without ``trainable`` the encoder
    runs under ``no_grad`` as its contract says (any object with ``embed(images)`` will do);
    with it, autograd runs through the encoder (LoRA training).
    """
    if per_pass is not None and per_pass < len(images):
        parts = [encoder_features(encoder, x, trainable=trainable) for x in images.split(per_pass)]
        return _concat(parts)
    high_res = bool(getattr(encoder, "has_high_res", False))
    if not trainable:
        if high_res:
            embedding, maps = encoder.embed_high_res(images)
            return ChipFeatures(embedding, high_res=tuple(maps))
        return ChipFeatures(encoder.embed(images))
    with torch.enable_grad():
        x = encoder.preprocess(images)
        if high_res:
            embedding, maps = encoder._embed_high_res(x)
            return ChipFeatures(embedding, high_res=tuple(maps))
        return ChipFeatures(encoder._embed(x))


def _concat(parts: list[ChipFeatures]) -> ChipFeatures:
    """The features of several passes as one batch (embedding and SAM 2's maps)."""
    embedding = torch.cat([p.embedding for p in parts])
    maps = [p.high_res for p in parts]
    if any(m is None for m in maps):
        return ChipFeatures(embedding)
    levels = zip(*(m for m in maps if m is not None), strict=True)
    return ChipFeatures(embedding, high_res=tuple(torch.cat(level) for level in levels))
