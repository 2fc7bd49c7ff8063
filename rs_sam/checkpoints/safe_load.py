"""Reading state dicts without executing anything.

PyTorch files are only ever read with ``torch.load(..., map_location="cpu", weights_only=True)``:
a pickle that would construct arbitrary objects or call functions is refused, never executed.
safetensors files (and Hugging Face model folders, through their ``model.safetensors``) hold no
pickle at all (:mod:`~rs_sam.checkpoints.safetensors_file`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from rs_sam.checkpoints.messages import listed
from rs_sam.checkpoints.safetensors_file import is_safetensors, read_safetensors, weights_file
from rs_sam.checkpoints.torch_file import (
    TORCH_LOAD_ERRORS,
    TRUSTED_CHECKPOINT,
    code_refusal,
    read_torch_file,
)
from rs_sam.errors import CheckpointError

__all__ = [
    "TORCH_LOAD_ERRORS",
    "as_state_dict",
    "existing_file",
    "load_state_dict",
    "pickled_globals",
    "refusal",
    "torch_load",
]


def existing_file(path: str | Path) -> Path:
    """``path`` expanded (a Hugging Face model folder: its ``model.safetensors``); a file the
    user named that is missing is bad input (exit 2)."""
    return weights_file(path)


def pickled_globals(path: Path) -> list[str]:
    """Names of the classes/functions a checkpoint's pickle refers to beyond plain tensors.

    Reads the pickle opcodes statically (nothing is executed). Raises one of
    :data:`TORCH_LOAD_ERRORS` for legacy (non-zip) or damaged files.
    """
    return sorted(torch.serialization.get_unsafe_globals_in_checkpoint(path))


def refusal(path: Path, unsafe: list[str]) -> CheckpointError:
    """The one-line error refusing a checkpoint whose pickle names ``unsafe`` classes/functions."""
    return code_refusal(path, unsafe, TRUSTED_CHECKPOINT)


def torch_load(path: Path) -> Any:
    """``torch.load`` restricted to tensors and plain containers; errors become CheckpointError."""
    return read_torch_file(path, kind="checkpoint", trusted=TRUSTED_CHECKPOINT)


def as_state_dict(obj: Any, path: Path) -> dict[str, Tensor]:
    """Unwrap ``{"model": sd}`` / ``{"state_dict": sd}`` and check every value is a tensor."""
    for _ in range(2):
        if isinstance(obj, Mapping):
            inner = next((obj[k] for k in ("state_dict", "model") if k in obj), None)
            if isinstance(inner, Mapping):
                obj = inner
    if not isinstance(obj, Mapping):
        raise CheckpointError(
            f"{path} holds a {type(obj).__name__}, not a state dict (a mapping of names to "
            "tensors); save the model with torch.save(model.state_dict(), path)"
        )
    bad = [k for k, v in obj.items() if not (isinstance(k, str) and isinstance(v, Tensor))]
    if bad:
        raise CheckpointError(
            f"{path} is not a state dict: entries {listed(map(str, bad))} are not named tensors; "
            "save the model with torch.save(model.state_dict(), path)"
        )
    return dict(obj)


def load_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Read a state dict with ``torch.load(weights_only=True)`` only, or from safetensors.

    ``{"model": sd}`` and ``{"state_dict": sd}`` wrappers are unwrapped. A safetensors file (or a
    Hugging Face model folder) is read without any pickle.

    Raises:
        CheckpointNotFoundError: The file does not exist.
        CheckpointError: The pickle would run code or build objects other than tensors
            ("refused: ..."), or the file is corrupt/truncated, or it is not a state dict.
    """
    path = existing_file(path)
    if is_safetensors(path):
        return read_safetensors(path)
    return as_state_dict(torch_load(path), path)
