"""HQ-SAM decoding modes, where the pipelines and faces import them from.

HQ-SAM decoding itself lives in :mod:`rs_sam.models.decoding` (:mod:`~rs_sam.models.decoding.hq`);
these names are defined in :mod:`rs_sam.models.decoding.modes`.
"""

from __future__ import annotations

from rs_sam.models.decoding.modes import HQ_MODES, HqMode, hq_encoder_error

__all__ = ["HQ_MODES", "HqMode", "hq_encoder_error"]
