"""Where checkpoints are cached, and finding one: explicit path > cached file > download.

Cache layout: ``$RS_SAM_HOME/checkpoints/<official filename>`` (``RS_SAM_HOME`` defaults to
``~/.cache/rs-sam``). ``RS_SAM_OFFLINE=1`` disables every network access. A cached file is
checked against the published size on every use and against the published sha256 once.
"""

from __future__ import annotations

import http.client
import os
import urllib.error
from pathlib import Path
from typing import Protocol

from rs_sam.checkpoints.download import download_checkpoint
from rs_sam.checkpoints.messages import one_line
from rs_sam.checkpoints.published import (
    CheckpointSpec,
    check_figures,
    file_sha256,
    marker_valid,
    write_marker,
)
from rs_sam.checkpoints.safetensors_file import weights_file
from rs_sam.errors import CheckpointNotFoundError, ModelFileNotFoundError

HOME_ENV = "RS_SAM_HOME"
OFFLINE_ENV = "RS_SAM_OFFLINE"
DEFAULT_HOME = Path("~/.cache/rs-sam")

_NETWORK_ERRORS = (urllib.error.URLError, http.client.HTTPException, OSError)


class PublishedModel(Protocol):
    """What the cache needs of a model: its name and its official checkpoint.

    An encoder spec (``rs_sam.models.encoders.EncoderSpec``) is one.
    """

    @property
    def name(self) -> str: ...

    @property
    def checkpoint(self) -> CheckpointSpec: ...


def rs_sam_home() -> Path:
    """The rs-sam data folder: ``$RS_SAM_HOME``, else ``~/.cache/rs-sam``."""
    return Path(os.environ.get(HOME_ENV) or DEFAULT_HOME).expanduser()


def checkpoint_dir() -> Path:
    """Folder of cached checkpoints: ``<rs_sam_home()>/checkpoints``."""
    return rs_sam_home() / "checkpoints"


def cached_checkpoint_path(spec: PublishedModel) -> Path:
    """Where the official checkpoint of ``spec`` is (or would be) cached."""
    return checkpoint_dir() / spec.checkpoint.filename


def is_offline() -> bool:
    """True when ``RS_SAM_OFFLINE`` is set to 1/true/yes/on."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def resolve_checkpoint(
    spec: PublishedModel,
    checkpoint: str | Path | None = None,
    *,
    download: bool = True,
    progress: bool = True,
) -> Path:
    """Find the checkpoint file of an encoder: explicit path > cached file > download.

    Args:
        spec: The encoder whose official checkpoint is wanted.
        checkpoint: An explicit file (or Hugging Face model folder: its ``model.safetensors``);
            it must exist and is used as is.
        download: Allow downloading when the file is not cached (``RS_SAM_OFFLINE=1`` forbids
            it regardless).
        progress: Show a progress bar while downloading.

    Returns:
        Path of a readable checkpoint file.

    Raises:
        ModelFileNotFoundError: The explicit file does not exist (exit 2).
        CheckpointNotFoundError: The file is not cached
            and cannot be downloaded (offline, network failure); the message says where to put
            it by hand.
        CheckpointError: The cached or downloaded file does not match the published size/sha256.
    """
    if checkpoint is not None:
        path = Path(checkpoint).expanduser()
        if path.is_dir():  # a Hugging Face model folder: its model.safetensors
            return weights_file(path)
        if not path.is_file():  # a file the user named: bad input (exit 2)
            raise ModelFileNotFoundError(
                f"checkpoint file {path} does not exist; pass the path of an existing file, or "
                f"omit it to use the official {spec.checkpoint.filename} for '{spec.name}'"
            )
        return path
    path = cached_checkpoint_path(spec)
    if path.is_file():
        _check_cached(path, spec.checkpoint)
        return path
    by_hand = (
        f"download {spec.checkpoint.url} by hand and put it at {path} "
        f"(or pass --checkpoint PATH / checkpoint=PATH)"
    )
    if is_offline():
        raise CheckpointNotFoundError(
            f"checkpoint {spec.checkpoint.filename} for encoder '{spec.name}' is not cached and "
            f"{OFFLINE_ENV} is set, so nothing is downloaded; {by_hand}"
        )
    if not download:
        raise CheckpointNotFoundError(
            f"checkpoint {spec.checkpoint.filename} for encoder '{spec.name}' is not cached; "
            f"run `rs-sam weights fetch {spec.name}`, or {by_hand}"
        )
    try:
        return download_checkpoint(spec.checkpoint, path, progress=progress)
    except _NETWORK_ERRORS as err:
        raise CheckpointNotFoundError(
            f"could not download {spec.checkpoint.filename} for encoder '{spec.name}' "
            f"({one_line(err)}); {by_hand}"
        ) from err


def _check_cached(path: Path, ckpt: CheckpointSpec) -> None:
    """Check a cached file: size on every call, sha256 once (remembered in a marker file)."""
    what = f"cached checkpoint {path}"
    check_figures(ckpt, path.stat().st_size, None, what=what, dest=path)
    if ckpt.sha256 is not None and not marker_valid(path, ckpt.sha256):
        digest = file_sha256(path)
        check_figures(ckpt, path.stat().st_size, digest, what=what, dest=path)
        write_marker(path, digest)
