"""HQ-SAM's weights: which parameters are HQ-only, freezing the rest, filling SAM's part.

HQ-SAM trains only what ``segment_anything_hq``'s ``MaskDecoderHQ`` adds to SAM's decoder
(:data:`HQ_MODULES`); its SAM part comes from a plain SAM checkpoint of the same backbone
(:func:`load_base_weights`) or from an HQ-SAM checkpoint of it.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from rs_sam.checkpoints import compare_keys, identify_checkpoint, load_state_dict
from rs_sam.errors import CheckpointError, ConfigError
from rs_sam.models.encoders import FrozenEncoder
from rs_sam.models.encoders.sam import HQ_BACKBONES

__all__ = ["HQ_MODULES", "is_hq_key", "load_base_weights", "set_hq_trainable"]

#: The submodules ``MaskDecoderHQ`` adds to SAM's decoder: what HQ-SAM trains.
HQ_MODULES = (
    "hf_token",
    "hf_mlp",
    "compress_vit_feat",
    "embedding_encoder",
    "embedding_maskfeature",
)


def is_hq_key(name: str) -> bool:
    """Whether a state-dict key of an HQ-SAM model (``mask_decoder.hf_token.weight``...),
    of its decoder (``hf_token.weight``) or of a task (``model.encoder.sam.mask_decoder...``)
    is one of the HQ-only parameters."""
    parts = name.split(".")
    if "mask_decoder" in parts:
        parts = parts[parts.index("mask_decoder") + 1 :]
    return bool(parts) and parts[0] in HQ_MODULES


def set_hq_trainable(encoder: FrozenEncoder) -> int:
    """Freeze all of an HQ-SAM encoder but its HQ parameters; return how many those are."""
    decoder = encoder.hq_decoder
    if decoder is None:
        raise ConfigError(f"encoder '{encoder.spec.name}' is not an HQ-SAM encoder")
    for parameter in encoder.parameters():
        parameter.requires_grad_(False)
    count = 0
    for name, parameter in decoder.named_parameters():
        if is_hq_key(name):
            parameter.requires_grad_(True)
            count += parameter.numel()
    return count


def load_base_weights(encoder: FrozenEncoder, path: str | Path) -> list[str]:
    """Fill an HQ-SAM encoder from a plain SAM checkpoint of its backbone (or an HQ one).

    Every key of the file must be a key of the HQ model with the same shape, and the keys it
    lacks must be exactly the HQ-only ones (a plain file) or none (an HQ-SAM file).

    Returns:
        The HQ keys the file did not hold (left at their initialisation); empty for an
        HQ-SAM file.

    Raises:
        CheckpointError: One line: the file is of another model or backbone (the message
            names what it looks like and the encoder to use).
    """
    name = encoder.spec.name
    plain = HQ_BACKBONES[name]
    sam: nn.Module = encoder.sam  # type: ignore[assignment]
    state = load_state_dict(path)
    expected = sam.state_dict()
    mismatch = compare_keys(expected, state)
    hq_keys = [k for k in expected if is_hq_key(k)]
    partial = bool(mismatch.missing) and sorted(mismatch.missing) != sorted(hq_keys)
    if mismatch.unexpected or mismatch.reshaped or partial:
        raise CheckpointError(
            f"model.base_checkpoint {path} does not fit '{name}', which starts from a plain "
            f"'{plain}' checkpoint ({mismatch}); {_hint(identify_checkpoint(state))}"
        )
    result = sam.load_state_dict(state, strict=False)
    if sorted(result.missing_keys) != sorted(mismatch.missing) or result.unexpected_keys:
        raise CheckpointError(  # pragma: no cover - guarded by the checks above
            f"model.base_checkpoint {path} did not load into '{name}' as expected"
        )
    encoder.random_weights = False
    encoder.train(False)
    return list(mismatch.missing)


def _hint(identified: str | None) -> str:
    if identified is None:
        return "it matches no known SAM checkpoint: check the file"
    plain_to_hq = {v: k for k, v in HQ_BACKBONES.items()}
    if identified in plain_to_hq:
        return (
            f"it looks like a '{identified}' checkpoint: use model.encoder "
            f"'{plain_to_hq[identified]}'"
        )
    if identified in HQ_BACKBONES:
        return f"it looks like a '{identified}' checkpoint: use model.encoder '{identified}'"
    return f"it looks like a '{identified}' checkpoint, which is not a SAM model"
