"""The inference entry of ``--lora``: an encoder with an adapter loaded (and merged)."""

from __future__ import annotations

from pathlib import Path

from rs_sam.models.encoders.base import FrozenEncoder
from rs_sam.models.lora.adapter_file import load_adapter
from rs_sam.models.lora.merge import merge_lora


def adapt_encoder(
    encoder: FrozenEncoder,
    adapter: str | Path | None,
    *,
    base_checkpoint: str | Path | None = None,
    merge: bool = False,
) -> FrozenEncoder:
    """``encoder`` with a LoRA adapter loaded (and merged into its weights when ``merge``).

    The inference entry of ``--lora`` (``segment``, ``detect-change``): without an adapter
    the encoder is returned as it is. Merging gives the same outputs at the base model's
    speed; unmerged, the low-rank updates run beside the base weights.
    """
    if adapter is None:
        return encoder
    load_adapter(adapter, encoder, base_checkpoint=base_checkpoint)
    if merge:
        merge_lora(encoder)
    return encoder
