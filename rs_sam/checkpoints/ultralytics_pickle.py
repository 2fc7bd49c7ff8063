"""Tensors of pickled ultralytics models (FastSAM-s/x), recovered without running their code.

FastSAM files are pickled ultralytics model objects, not state dicts. Their class names are
replaced by an inert stand-in for one ``torch.load(weights_only=True)``, so the real classes are
never imported and nothing of the file runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from rs_sam.checkpoints.safe_load import (
    TORCH_LOAD_ERRORS,
    as_state_dict,
    existing_file,
    load_state_dict,
    pickled_globals,
    refusal,
    torch_load,
)
from rs_sam.checkpoints.safetensors_file import is_safetensors
from rs_sam.errors import CheckpointError

# Pickled names that load_ultralytics_state_dict replaces by inert stand-ins. Anything else
# beyond torch's own tensor allow-list (os.system, builtins.eval, ...) is refused.
_STUB_PREFIXES = (
    "ultralytics.",
    "torch.nn.modules.",
    "numpy.",
    "pathlib.",
    "types.SimpleNamespace",
    "argparse.Namespace",
    "datetime.",
)


class _Inert:
    """Stand-in for a class named in a pickle: records the pickled state, runs no code.

    ``torch.load(weights_only=True)`` builds it in place of the named class (allow-listed under
    that class's name for the duration of one load), so the real class is never imported.
    """

    qualname = ""

    def __new__(cls, *args: Any, **kwargs: Any) -> _Inert:
        return super().__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args

    def __setstate__(self, state: Any) -> None:
        self.__dict__["state"] = state


def _inert_module_tensors(obj: _Inert, prefix: str, out: dict[str, Tensor]) -> None:
    """Collect an nn.Module's persistent parameters/buffers from its pickled ``__dict__``."""
    state = obj.__dict__.get("state")
    if isinstance(state, tuple) and state and isinstance(state[0], dict):
        state = state[0]
    if not isinstance(state, dict):
        return
    skip = state.get("_non_persistent_buffers_set") or set()
    for group in ("_parameters", "_buffers"):
        for name, value in (state.get(group) or {}).items():
            if isinstance(value, Tensor) and name not in skip:
                out[prefix + name] = value.detach()
    for name, child in (state.get("_modules") or {}).items():
        if isinstance(child, _Inert):
            _inert_module_tensors(child, f"{prefix}{name}.", out)


def load_ultralytics_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Recover the state dict of a pickled ultralytics model (FastSAM-s/x) without running it.

    Official FastSAM files are ``torch.save`` pickles of ultralytics ``SegmentationModel``
    objects. Their class names are first listed statically from the pickle opcodes; names
    under ultralytics, ``torch.nn.modules``, numpy, pathlib and a few plain-data types are
    mapped to an inert stand-in class and the file is then read with
    ``torch.load(weights_only=True)``: no constructor, ``__setstate__`` or function of the
    file runs, only tensors are rebuilt. Any other name (``os.system``, ``builtins.eval``...)
    refuses the file. The tensors are collected from the stand-ins' recorded
    ``_parameters``/``_buffers`` (the ``ema`` model when present, as ultralytics does, else
    ``model``). A plain state dict with the same keys is accepted too.

    Returns:
        The model's state dict, keyed as ``SegmentationModel.state_dict()``
        (``model.0.conv.weight``...).

    Raises:
        CheckpointNotFoundError: The file does not exist.
        CheckpointError: Refused names, corrupt file, or no segmentation model inside.
    """
    path = existing_file(path)
    try:
        unsafe = pickled_globals(path)
    except TORCH_LOAD_ERRORS:
        unsafe = []  # legacy or damaged file: torch_load below reports what is wrong
    refused = [name for name in unsafe if not name.startswith(_STUB_PREFIXES)]
    if refused:
        raise refusal(path, refused)
    stand_ins: list[Any] = [
        (type(name.rsplit(".", 1)[-1], (_Inert,), {"qualname": name}), name) for name in unsafe
    ]
    with torch.serialization.safe_globals(stand_ins):
        obj = torch_load(path)
    if isinstance(obj, Mapping) and not any(isinstance(v, _Inert) for v in obj.values()):
        return as_state_dict(obj, path)  # already a plain state dict
    model = obj
    if isinstance(obj, Mapping):
        model = obj.get("ema") or obj.get("model")
    if not (isinstance(model, _Inert) and model.qualname.endswith("SegmentationModel")):
        found = model.qualname if isinstance(model, _Inert) else type(model).__name__
        raise CheckpointError(
            f"{path} does not hold an ultralytics SegmentationModel (found {found}); FastSAM "
            "encoders need the official FastSAM-s.pt / FastSAM-x.pt files"
        )
    state_dict: dict[str, Tensor] = {}
    _inert_module_tensors(model, "", state_dict)
    if not state_dict:
        raise CheckpointError(
            f"{path} holds a SegmentationModel without tensors; download it again"
        )
    return state_dict


def load_any_state_dict(path: str | Path) -> dict[str, Tensor]:
    """A state dict from a plain checkpoint, a safetensors file or a pickled ultralytics model."""
    path = existing_file(path)
    if is_safetensors(path):
        return load_state_dict(path)
    try:
        unsafe = pickled_globals(path)
    except TORCH_LOAD_ERRORS:
        unsafe = []
    if any(name.startswith("ultralytics.") for name in unsafe):
        return load_ultralytics_state_dict(path)
    return load_state_dict(path)
