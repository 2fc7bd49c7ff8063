"""Reading any torch file safely, with one-line reasons for every refusal.

:func:`read_torch_file` is the only place rs-sam calls ``torch.load``: always with
``weights_only=True``, so a pickle that would run code is refused, never executed. When torch
refuses a file, its pickle is read statically (:mod:`~rs_sam.checkpoints.pickle_scan`) to tell
a file that contains code (``os.system``, a model class...) from a damaged one; torch's own
text, which suggests turning the safety check off, is never shown.
"""

from __future__ import annotations

import pickle
import struct
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from rs_sam.checkpoints.messages import listed, one_line
from rs_sam.checkpoints.pickle_scan import scan_torch_file
from rs_sam.errors import CheckpointError

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

#: Where trusted files come from, per kind of file (the end of every refusal).
TRUSTED_CHECKPOINT = (
    "the official checkpoint (rs-sam weights fetch NAME) or a state dict saved with "
    "torch.save(model.state_dict(), path)"
)
TRUSTED_ADAPTER = "an adapter written by rs-sam train lora (or save_adapter)"
TRUSTED_HEAD = "a .ckpt written by rs-sam train"

_MODULE_ALIASES = {"posix": "os", "nt": "os", "__builtin__": "builtins"}
_TORCH_PREFIXES = ("torch.", "collections.OrderedDict")  # if torch's allow-list is unavailable


def read_torch_file(path: Path, *, kind: str, trusted: str) -> Any:
    """``torch.load(path, weights_only=True)``; every failure is a one-line CheckpointError.

    Args:
        path: An existing file (callers check existence with their own message).
        kind: What the file should be, for messages ("checkpoint", "LoRA adapter"...).
        trusted: Where trusted files of this kind come from (e.g. :data:`TRUSTED_ADAPTER`).

    Raises:
        CheckpointError: "refused: X contains code (pickled ...) that rs-sam will not run; use
            <trusted>" when the pickle names anything beyond tensors and plain containers, or
            "X is not a readable <kind>: <reason>; use <trusted>" for an empty, truncated,
            damaged or foreign file, or one that cannot be opened.
    """
    try:
        with warnings.catch_warnings():  # a pickle's protocol is not the user's concern
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True)
    except TORCH_LOAD_ERRORS as err:
        raise load_failure(path, err, kind=kind, trusted=trusted) from None


def load_failure(path: Path, err: BaseException, *, kind: str, trusted: str) -> CheckpointError:
    """The one-line error for a file ``torch.load(weights_only=True)`` failed on with ``err``."""
    if isinstance(err, PermissionError | IsADirectoryError):
        return CheckpointError(f"{path} cannot be read ({err.strerror}); pass a readable file")
    try:
        scan = scan_torch_file(path)
    except OSError as os_err:
        return CheckpointError(f"{path} cannot be read ({os_err.strerror}); pass a readable file")
    unsafe = unsafe_names(scan.names)
    if unsafe:
        return code_refusal(path, unsafe, trusted)
    reason = scan.damage or _torch_reason(err)
    return CheckpointError(f"{path} is not a readable {kind}: {reason}; use {trusted}")


def code_refusal(path: Path, unsafe: list[str], trusted: str) -> CheckpointError:
    """The refusal of a file whose pickle names the classes/functions ``unsafe``."""
    hint = ""
    if any(name.startswith("ultralytics.") for name in unsafe):
        hint = (
            "; it is a pickled ultralytics model (FastSAM/YOLO): load it with encoder "
            "'fastsam_s' or 'fastsam_x', which recover its tensors without running its code"
        )
    foreign_first = sorted(unsafe, key=lambda name: name.startswith("torch."))  # stable
    shown = [_plain_name(name) for name in foreign_first]
    return CheckpointError(
        f"refused: {path} contains code (pickled {listed(shown)}) that rs-sam will not run; "
        f"use {trusted}{hint}"
    )


def _plain_name(name: str) -> str:
    """``posix.system`` as users know it: ``os.system`` (and ``__builtin__`` as ``builtins``)."""
    module, _, rest = name.partition(".")
    return f"{_MODULE_ALIASES.get(module, module)}.{rest}" if rest else name


def unsafe_names(names: tuple[str, ...] | list[str]) -> list[str]:
    """The names a ``weights_only`` load refuses: all but torch's allow-list (and safe_globals)."""
    allowed = _allowed_globals()
    if allowed is None:
        return [name for name in names if not name.startswith(_TORCH_PREFIXES)]
    return [name for name in names if name not in allowed]


def _allowed_globals() -> set[str] | None:
    """torch's ``weights_only`` allow-list plus the current ``safe_globals``, when torch has one."""
    from torch import _weights_only_unpickler as unpickler

    try:
        return set(unpickler._get_allowed_globals()) | set(unpickler._get_user_allowed_globals())
    except AttributeError:  # pragma: no cover - another torch version
        return None


def _torch_reason(err: BaseException) -> str:
    """torch's reason for a failure, unless it is torch's advice about ``weights_only``."""
    text = one_line(err)
    if "weights_only" in text or isinstance(err, pickle.UnpicklingError):
        return "it is damaged or not a PyTorch file"
    return f"it is truncated or damaged ({type(err).__name__}: {text[:100]})"
