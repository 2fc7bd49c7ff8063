"""Reading state dicts without executing anything.

Files are only ever read with ``torch.load(..., map_location="cpu", weights_only=True)``: a
pickle that would construct arbitrary objects or call functions is refused, never executed.
"""

from __future__ import annotations

import pickle
import re
import struct
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from rs_sam.checkpoints.messages import listed, one_line
from rs_sam.errors import CheckpointError, CheckpointNotFoundError

# What a damaged or foreign file can make torch.load raise (a text file gives a KeyError,
# a truncated zip OSError EINVAL).
TORCH_LOAD_ERRORS = (
    pickle.UnpicklingError,
    RuntimeError,
    EOFError,
    KeyError,
    IndexError,
    ValueError,
    TypeError,
    AttributeError,
    OSError,
    struct.error,
    zipfile.BadZipFile,
)


def existing_file(path: str | Path) -> Path:
    """``path`` expanded, or CheckpointNotFoundError when it is not a file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointNotFoundError(
            f"checkpoint file {path} does not exist; pass the path of an existing file"
        )
    return path


def pickled_globals(path: Path) -> list[str]:
    """Names of the classes/functions a checkpoint's pickle refers to beyond plain tensors.

    Reads the pickle opcodes statically (nothing is executed). Raises one of
    :data:`TORCH_LOAD_ERRORS` for legacy (non-zip) or damaged files.
    """
    return sorted(torch.serialization.get_unsafe_globals_in_checkpoint(path))


def _unsafe_globals(path: Path, err: BaseException | None = None) -> list[str]:
    """:func:`pickled_globals`, else (legacy files) the names in the refusal message ``err``."""
    try:
        return pickled_globals(path)
    except TORCH_LOAD_ERRORS:
        return sorted(set(re.findall(r"GLOBAL ([\w.]+)", str(err)))) if err else []


def refusal(path: Path, unsafe: list[str]) -> CheckpointError:
    """The one-line error refusing a file whose pickle names ``unsafe`` classes/functions."""
    hint = ""
    if any(name.startswith("ultralytics.") for name in unsafe):
        hint = (
            "; it is a pickled ultralytics model (FastSAM/YOLO): load it with encoder "
            "'fastsam_s' or 'fastsam_x', which recover its tensors without running its code"
        )
    return CheckpointError(
        f"refused: {path} contains code or objects that are not plain tensors "
        f"({listed(unsafe)}); rs-sam never executes pickled code{hint}"
    )


def torch_load(path: Path) -> Any:
    """``torch.load`` restricted to tensors and plain containers; errors become CheckpointError."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        unsafe = _unsafe_globals(path, err)
        if unsafe:
            raise refusal(path, unsafe) from None
        raise CheckpointError(
            f"{path} cannot be read safely: it is corrupt or holds objects that are not plain "
            f"tensors ({one_line(err).split('WeightsUnpickler error:')[-1].strip()[:80]}); "
            "download it again"
        ) from None
    except TORCH_LOAD_ERRORS as err:
        raise CheckpointError(
            f"{path} is corrupt, truncated or not a PyTorch checkpoint "
            f"({type(err).__name__}: {one_line(err)[:100]}); download it again"
        ) from None


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
    """Read a state dict with ``torch.load(weights_only=True)`` only.

    ``{"model": sd}`` and ``{"state_dict": sd}`` wrappers are unwrapped.

    Raises:
        CheckpointNotFoundError: The file does not exist.
        CheckpointError: The pickle would run code or build objects other than tensors
            ("refused: ..."), or the file is corrupt/truncated, or it is not a state dict.
    """
    path = existing_file(path)
    return as_state_dict(torch_load(path), path)
