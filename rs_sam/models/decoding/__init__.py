"""SAM decoding: the only code that calls a SAM prompt encoder and mask decoder.

An encoder produces :class:`ChipFeatures` for a chip; a :class:`SamDecoder` built once from
the encoder (:meth:`SamDecoder.for_encoder`) turns them and prompts into
:class:`DecodedMasks`. Whether a call takes the fast exact CPU path
(:mod:`rs_sam.models.fast_decoder`) or the official forward is decided here only. A new SAM
generation adds one decoder implementation here (and one encoder); pipelines and training
tasks keep calling ``decode``/``decode_train``. SAM 2.1 is :mod:`~rs_sam.models.decoding.sam2`.
"""

from __future__ import annotations

from rs_sam.models.decoding.features import ChipFeatures, encoder_features
from rs_sam.models.decoding.hq import DEFAULT_HQ_CHUNK, HqLogits, decode_hq, hq_features
from rs_sam.models.decoding.modes import HQ_MODES, HqMode, hq_encoder_error
from rs_sam.models.decoding.sam import DecodedMasks, SamDecoder
from rs_sam.models.decoding.sam2 import DEFAULT_SAM2_CHUNK, Sam2Heads

__all__ = [
    "DEFAULT_HQ_CHUNK",
    "DEFAULT_SAM2_CHUNK",
    "HQ_MODES",
    "ChipFeatures",
    "DecodedMasks",
    "HqLogits",
    "HqMode",
    "Sam2Heads",
    "SamDecoder",
    "decode_hq",
    "encoder_features",
    "hq_encoder_error",
    "hq_features",
]
