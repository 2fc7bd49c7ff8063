"""What an image encoder produced for a chip that a SAM decoder needs."""

from __future__ import annotations

from dataclasses import dataclass, replace

from torch import Tensor


@dataclass(frozen=True)
class ChipFeatures:
    """The image side of SAM decoding, for ``B`` chips (usually one).

    Attributes:
        embedding: ``(B, C, E, E)`` SAM image embedding (:meth:`FrozenEncoder.embed`).
        interm: ``(B, D, E, E)`` early-layer features HQ-SAM's decoder fuses with the
            embedding (:meth:`FrozenEncoder.embed_hq`), or None.
        high_res: Higher-resolution feature maps (e.g. SAM 2's stride-4 and stride-8 maps)
            for decoders that take them, or None. No decoder here uses them yet.
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
