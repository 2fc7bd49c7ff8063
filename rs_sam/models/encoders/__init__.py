"""Frozen image encoders of the Segment Anything family (SAM, MobileSAM, HQ-SAM, FastSAM, SAM 2.1).

>>> from rs_sam.models.encoders import load_encoder
>>> encoder = load_encoder("mobile_sam")            # official weights, cached or downloaded
>>> out = encoder(images)                            # images: (B, 3, H, H) RGB in 0..255
>>> out.features[0].shape, out.embedding.shape       # strides 4..32, SAM embedding
"""

from __future__ import annotations

from rs_sam.models.encoders.base import (
    EncoderOutput,
    FrozenEncoder,
    HighResEmbedding,
    HqEmbedding,
    RandomWeightsWarning,
)
from rs_sam.models.encoders.registry import (
    DEFAULT_ENCODER,
    ENCODERS,
    EncoderSpec,
    encoder_fingerprint,
    get_encoder,
    list_encoders,
    load_encoder,
)
from rs_sam.models.encoders.verify import verify_checkpoint

__all__ = [
    "DEFAULT_ENCODER",
    "ENCODERS",
    "EncoderOutput",
    "EncoderSpec",
    "FrozenEncoder",
    "HighResEmbedding",
    "HqEmbedding",
    "RandomWeightsWarning",
    "encoder_fingerprint",
    "get_encoder",
    "list_encoders",
    "load_encoder",
    "verify_checkpoint",
]
