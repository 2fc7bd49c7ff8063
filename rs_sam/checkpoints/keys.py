"""Comparing a state dict with a module's, and the one wording of every key mismatch."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from torch import Tensor, nn

from rs_sam.checkpoints.identify import checkpoint_hint
from rs_sam.checkpoints.messages import listed
from rs_sam.errors import CheckpointError


@dataclass(frozen=True)
class KeyMismatch:
    """How a state dict differs from a module's: the one wording of every key check."""

    missing: tuple[str, ...] = ()
    unexpected: tuple[str, ...] = ()
    reshaped: tuple[str, ...] = ()  # "name (found shape) != (expected shape)"

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected or self.reshaped)

    def __str__(self) -> str:
        parts = [
            f"{len(keys)} {what} ({listed(keys)})"
            for what, keys in (
                ("missing keys", self.missing),
                ("unexpected keys", self.unexpected),
                ("shape mismatches", self.reshaped),
            )
            if keys
        ]
        return "; ".join(parts) or "keys match"


def compare_keys(expected: Mapping[str, Tensor], found: Mapping[str, Tensor]) -> KeyMismatch:
    """Keys of ``expected`` absent from ``found``, extra keys, and shapes that differ."""
    return KeyMismatch(
        missing=tuple(k for k in expected if k not in found),
        unexpected=tuple(k for k in found if k not in expected),
        reshaped=tuple(
            f"{k} {tuple(v.shape)} != {tuple(expected[k].shape)}"
            for k, v in found.items()
            if k in expected and tuple(v.shape) != tuple(expected[k].shape)
        ),
    )


def load_into_model(
    module: nn.Module,
    state_dict: Mapping[str, Tensor],
    *,
    encoder: str,
    source: str | Path,
    ignore: Callable[[str], bool] | None = None,
) -> None:
    """Load a state dict strictly, with a one-line error naming what the file really is.

    Args:
        module: Model to fill in place.
        state_dict: Tensors to load.
        encoder: rs-sam name of the model (for the message).
        source: File the tensors came from (for the message).
        ignore: Keys for which this returns True are dropped before loading (e.g. the FastSAM
            head, which rs-sam does not use); they still count for identification.

    Raises:
        CheckpointError: Missing or unexpected keys, or shape mismatches; the message lists
            the first few of each and the encoder the file seems to belong to.
    """
    wanted = {k: v for k, v in state_dict.items() if not (ignore and ignore(k))}
    mismatch = compare_keys(module.state_dict(), wanted)
    if mismatch:
        hint = checkpoint_hint(state_dict, encoder)
        raise CheckpointError(
            f"checkpoint {source} does not fit encoder '{encoder}': {mismatch}; {hint}"
        )
    module.load_state_dict(wanted, strict=True)
