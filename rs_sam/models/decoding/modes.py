"""HQ-SAM decoding modes and the one error for asking them of a plain SAM encoder."""

from __future__ import annotations

from typing import Literal

from rs_sam.errors import ConfigError

__all__ = ["HQ_MODES", "HqMode", "hq_encoder_error"]

#: ``off``: SAM's decoder; ``add``: SAM's logits plus the HQ token's; ``only``: the HQ token's.
HqMode = Literal["off", "add", "only"]
HQ_MODES: tuple[str, ...] = ("off", "add", "only")


def hq_encoder_error(encoder: str, flag: str = "--hq/--hq-only") -> ConfigError:
    """The one-line error for HQ decoding (``flag``) asked of an encoder that is not HQ-SAM."""
    has = "SAM's plain decoder"
    if encoder.startswith("sam2_"):
        has = "SAM 2's decoder, without HQ-SAM's"
    return ConfigError(
        f"{flag} needs an HQ-SAM encoder: --encoder sam_hq_vit_b (or sam_hq_vit_tiny, "
        f"sam_hq_vit_l, sam_hq_vit_h); '{encoder}' has {has}"
    )
