"""safetensors files and Hugging Face model folders: tensors read without any pickle.

A safetensors file is a JSON header and raw tensor bytes, so reading one can never run code.
A folder in the Hugging Face layout (``config.json`` beside ``model.safetensors``, as
``huggingface_hub`` downloads a model repository) stands for its ``model.safetensors``.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from torch import Tensor

from rs_sam.checkpoints.messages import one_line
from rs_sam.errors import CheckpointError, ModelFileNotFoundError

#: The weights file of a Hugging Face model folder.
HF_WEIGHTS = "model.safetensors"
_MAX_HEADER = 100 * 2**20  # safetensors' own limit on the JSON header


def weights_file(path: str | Path) -> Path:
    """``path`` expanded; a Hugging Face model folder becomes its ``model.safetensors``.

    Raises:
        ModelFileNotFoundError: Nothing at ``path``, or a folder without ``model.safetensors``.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        inner = path / HF_WEIGHTS
        if inner.is_file():
            return inner
        sharded = sorted(p.name for p in path.glob("model-*.safetensors"))
        what = f"no {HF_WEIGHTS}"
        if sharded:
            what = f"sharded weights ({sharded[0]}...), which rs-sam does not read"
        raise ModelFileNotFoundError(
            f"checkpoint folder {path} holds {what}; pass a checkpoint file, or a Hugging Face "
            f"model folder with {HF_WEIGHTS}"
        )
    if not path.is_file():
        raise ModelFileNotFoundError(
            f"checkpoint file {path} does not exist; pass the path of an existing file"
        )
    return path


def is_safetensors(path: Path) -> bool:
    """Whether ``path`` starts like a safetensors file (header length, then a JSON object)."""
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError:
        return False
    if len(head) < 9:
        return False
    (length,) = struct.unpack("<Q", head[:8])
    return 2 <= length <= _MAX_HEADER and head[8:9] == b"{"


def read_safetensors(path: Path) -> dict[str, Tensor]:
    """The tensors of a safetensors file, on the CPU.

    Raises:
        CheckpointError: A truncated, damaged or unreadable file (one line).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except PermissionError as err:
        raise CheckpointError(
            f"{path} cannot be read ({err.strerror}); pass a readable file"
        ) from None
    except (SafetensorError, OSError, ValueError, RuntimeError, json.JSONDecodeError) as err:
        raise CheckpointError(
            f"{path} is not a readable safetensors checkpoint: it is truncated or damaged "
            f"({one_line(err)[:100]}); download it again"
        ) from None
