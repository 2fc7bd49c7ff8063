"""The LoRA adapter file: writing, reading its record, and loading it into an encoder.

:func:`save_adapter` writes ``{"rs_sam_lora": record, "state_dict": {name: tensor}}`` with
``torch.save`` (atomically: temp file + ``os.replace``). Tensor names are those of the official
``Sam`` module (``image_encoder.blocks.0.attn.qkv.lora_A.q``, ``prompt_encoder.*``...). The
record holds the format version, the base encoder name, whether its weights were random, the
sha256 of its checkpoint (None for random weights), the tiny flag, the
:class:`~rs_sam.models.lora.settings.LoraSettings`, the extra prefixes, created-by and the
caller's JSON metadata. :func:`load_adapter` reads it with ``torch.load(weights_only=True)`` and
refuses another base encoder or checkpoint.
"""

from __future__ import annotations

import datetime
import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from rs_sam.checkpoints import TRUSTED_ADAPTER, compare_keys, read_torch_file
from rs_sam.errors import (
    CheckpointError,
    ConfigError,
    ModelFileNotFoundError,
    OutputPathError,
    RemoteInputError,
)
from rs_sam.models.encoders.base import FrozenEncoder
from rs_sam.models.encoders.registry import encoder_fingerprint
from rs_sam.models.lora.inject import apply_lora
from rs_sam.models.lora.layers import (
    active_lora_state,
    check_prefixes,
    is_lora_key,
    is_tiny_build,
    lora_state,
    sam_module,
)
from rs_sam.models.lora.merge import lora_state_dict, unload_lora
from rs_sam.models.lora.settings import LoraSettings

ADAPTER_KEY = "rs_sam_lora"
ADAPTER_FORMAT = 1
_HASH_SHOWN = 12  # hex digits of a sha256 quoted in messages
_MAX_LISTED = 3  # tensor names quoted in one message


def _listed(names: Iterable[str]) -> str:
    names = sorted(names)
    shown = ", ".join(names[:_MAX_LISTED])
    return shown + (f" and {len(names) - _MAX_LISTED} more" if len(names) > _MAX_LISTED else "")


def _fingerprint(encoder: FrozenEncoder, base_checkpoint: str | Path | None) -> str | None:
    return encoder_fingerprint(encoder, base_checkpoint)


def _created_by() -> str:
    from rs_sam.version import __version__

    return f"rs-sam {__version__}"


def save_adapter(
    path: str | Path,
    encoder: FrozenEncoder,
    settings: LoraSettings | None = None,
    *,
    base_checkpoint: str | Path | None = None,
    extra_prefixes: Iterable[str] = (),
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Write the encoder's LoRA (and ``extra_prefixes`` tensors) to a small adapter file.

    Args:
        path: Output file (``.pt``); its folder must exist. Replaced atomically.
        encoder: An encoder carrying (unmerged) LoRA.
        settings: The settings it was injected with (default: those; a different value is an
            error).
        base_checkpoint: The checkpoint file the encoder was loaded from when it is not the
            official one (its sha256 is recorded); ignored for random weights.
        extra_prefixes: Non-LoRA parts trained in full and saved too (``"prompt_encoder."``).
        metadata: JSON-compatible values recorded as they are (epochs, data set, scores...).

    Returns:
        ``path``.

    Raises:
        ConfigError: No LoRA, other settings, bad prefixes or metadata.
        OutputPathError: The folder does not exist or cannot be written.
    """
    state = active_lora_state(encoder, "save an adapter")
    if settings is None:
        settings = state.settings
    elif settings != state.settings:
        raise ConfigError(
            f"settings {settings} differ from those the encoder's LoRA was injected with "
            f"({state.settings}); pass those, or leave settings out"
        )
    try:
        user = json.loads(json.dumps(dict(metadata or {}), allow_nan=False))
    except (TypeError, ValueError) as err:
        raise ConfigError(
            f"adapter metadata must hold only JSON values (str, numbers, lists, dicts): {err}"
        ) from err
    prefixes = check_prefixes(sam_module(encoder), extra_prefixes)
    record = {
        "format": ADAPTER_FORMAT,
        "kind": "rs-sam LoRA adapter",
        "base_encoder": encoder.spec.name,
        "base_weights": "random" if encoder.random_weights else "official",
        "base_sha256": _fingerprint(encoder, base_checkpoint),
        "tiny": is_tiny_build(encoder),
        "settings": settings.to_dict(),
        "extra_prefixes": list(prefixes),
        "created_by": _created_by(),
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "metadata": user,
    }
    content = {ADAPTER_KEY: record, "state_dict": lora_state_dict(encoder, extra_prefixes=prefixes)}
    path = Path(path)
    if not path.parent.is_dir():
        raise OutputPathError(f"folder {path.parent} does not exist; create it first")
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise OutputPathError(f"cannot write into {path.parent} ({err.strerror})") from err
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(content, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


_REQUIRED = ("format", "base_encoder", "base_weights", "base_sha256", "tiny", "settings")


def _load_content(path: Path) -> tuple[dict[str, Any], dict[str, Tensor]]:
    RemoteInputError.check(path, "LoRA adapter")
    if not path.is_file():
        raise ModelFileNotFoundError(f"LoRA adapter {path} does not exist; check the path")
    content = read_torch_file(path, kind="LoRA adapter", trusted=TRUSTED_ADAPTER)
    record = content.get(ADAPTER_KEY) if isinstance(content, dict) else None
    if not isinstance(record, dict):
        raise CheckpointError(
            f"{path} is not an rs-sam LoRA adapter (no '{ADAPTER_KEY}' record); "
            "pass a file written by save_adapter"
        )
    missing = [key for key in _REQUIRED if key not in record]
    tensors = content.get("state_dict")
    if missing or not isinstance(tensors, dict):
        raise CheckpointError(
            f"{path} is an incomplete LoRA adapter (missing {', '.join(missing) or 'state_dict'}); "
            "save it again with save_adapter"
        )
    version = record["format"]
    if not isinstance(version, int) or version > ADAPTER_FORMAT:
        raise CheckpointError(
            f"{path} has adapter format {version!r}, newer than this rs-sam reads "
            f"({ADAPTER_FORMAT}); upgrade rs-sam"
        )
    bad = [str(k) for k, v in tensors.items() if not isinstance(k, str) or not torch.is_tensor(v)]
    if bad:
        raise CheckpointError(f"{path} holds non-tensor entries ({_listed(bad)}); save it again")
    return record, tensors


def read_adapter_metadata(path: str | Path) -> dict[str, Any]:
    """The record of an adapter file (base encoder, sha256, tiny, settings...), without loading.

    Use it to build the matching encoder before :func:`load_adapter`.

    Raises:
        ModelFileNotFoundError, CheckpointError: Missing, damaged or non-adapter file.
    """
    record, _ = _load_content(Path(path))
    return dict(record)


def _short(sha: str | None) -> str:
    return "random weights" if sha is None else f"sha256 {sha[:_HASH_SHOWN]}…"


def _check_base(
    path: Path, record: Mapping[str, Any], encoder: FrozenEncoder, sha: str | None
) -> None:
    trained_on = record["base_encoder"]
    trained_sha = record["base_sha256"]
    trained_random = record["base_weights"] == "random"
    name = encoder.spec.name
    if trained_on != name:
        raise CheckpointError(
            f"adapter {path.name} was trained on '{trained_on}' ({_short(trained_sha)}) but the "
            f"encoder is '{name}'; load it with --encoder {trained_on}"
        )
    if bool(record["tiny"]) != is_tiny_build(encoder):
        built = "the tiny test build" if record["tiny"] else "the full model"
        raise CheckpointError(
            f"adapter {path.name} was trained on {built} of '{name}' but the encoder is "
            f"{'the tiny test build' if is_tiny_build(encoder) else 'the full model'}; "
            f"build the encoder the adapter was trained on"
        )
    if trained_random != encoder.random_weights:
        raise CheckpointError(
            f"adapter {path.name} was trained on '{name}' with "
            f"{'random' if trained_random else 'official'} weights but the encoder has "
            f"{'random' if encoder.random_weights else 'official'} weights; load the encoder "
            f"with {'weights=random' if trained_random else 'its official weights'}"
        )
    if not trained_random and trained_sha != sha:
        raise CheckpointError(
            f"adapter {path.name} was trained on '{name}' ({_short(trained_sha)}) but the "
            f"encoder's checkpoint has {_short(sha)}; load the encoder with the checkpoint "
            "the adapter was trained on (--checkpoint)"
        )


def load_adapter(
    path: str | Path,
    encoder: FrozenEncoder,
    *,
    base_checkpoint: str | Path | None = None,
) -> LoraSettings:
    """Inject LoRA with an adapter file's settings and load its tensors strictly, in place.

    The file is read with ``torch.load(weights_only=True)``. The encoder may already carry a LoRA
    with the same settings (its weights are then replaced). On any refusal after injection the
    injected LoRA is removed again, so the encoder is left as it was.

    Args:
        path: A file written by :func:`save_adapter`.
        encoder: The base encoder the adapter was trained on.
        base_checkpoint: The checkpoint file the encoder was loaded from, when not the official
            one (compared by sha256 with the adapter's record).

    Returns:
        The adapter's :class:`LoraSettings`.

    Raises:
        ModelFileNotFoundError: No such file (bad input, exit 2).
        CheckpointError: Damaged or foreign file, another base encoder/checkpoint, or tensors
            that do not match the injected LoRA.
        ConfigError: The encoder already carries a different or merged LoRA.
    """
    path = Path(path)
    sam = sam_module(encoder)
    record, tensors = _load_content(path)
    try:
        settings = LoraSettings.from_dict(record["settings"])
    except (ConfigError, TypeError) as err:
        raise CheckpointError(f"{path} has invalid LoRA settings ({err}); save it again") from err
    _check_base(path, record, encoder, _fingerprint(encoder, base_checkpoint))
    state = lora_state(encoder)
    injected = state is None
    if injected:
        apply_lora(encoder, settings)
    elif state is not None and (state.merged or state.settings != settings):
        raise ConfigError(
            f"encoder '{encoder.spec.name}' already carries "
            f"{'a merged' if state.merged else 'another'} LoRA ({state.settings}); "
            f"build a fresh encoder with load_encoder to load {path.name}"
        )
    try:
        _load_tensors(path, sam, tensors, record.get("extra_prefixes") or [])
    except BaseException:
        if injected:
            unload_lora(encoder)
        raise
    return settings


def _load_tensors(
    path: Path, sam: nn.Module, tensors: Mapping[str, Tensor], prefixes: list[str]
) -> None:
    """Load the adapter's tensors into the injected LoRA (and extra parts), strictly."""
    own = sam.state_dict()
    prefix_tuple = tuple(p for p in prefixes if isinstance(p, str))
    expected = {
        name: tensor
        for name, tensor in own.items()
        if is_lora_key(name) or (prefix_tuple and name.startswith(prefix_tuple))
    }
    mismatch = compare_keys(expected, tensors)
    if mismatch.missing or mismatch.unexpected:
        raise CheckpointError(
            f"adapter {path.name} does not match the LoRA layers it describes: {mismatch}; "
            "save it again with this rs-sam"
        )
    if mismatch:
        raise CheckpointError(
            f"adapter {path.name} does not match the LoRA layers it describes: {mismatch}; "
            "it belongs to another model"
        )
    result = sam.load_state_dict(dict(tensors), strict=False)
    if result.unexpected_keys:  # pragma: no cover - excluded by the key check above
        raise CheckpointError(f"adapter {path.name} has unexpected tensors")
