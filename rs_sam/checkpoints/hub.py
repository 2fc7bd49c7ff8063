"""Hugging Face model repositories (gated ones included) in rs-sam's cache.

A repository's files go to ``$RS_SAM_HOME/checkpoints/<name>/`` (a folder in the Hugging Face
layout) through ``huggingface_hub``, with the user's token when there is one:
``HF_TOKEN``, else ``HUGGING_FACE_HUB_TOKEN``, else the token file that ``hf auth login``
writes (``$HF_TOKEN_PATH``, else ``$HF_HOME/token``, ``HF_HOME`` defaulting to
``~/.cache/huggingface``). Without a token, offline, or refused, the error is one line that
says how to get access and how to pass a downloaded folder instead.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from rs_sam.checkpoints.cache import OFFLINE_ENV, checkpoint_dir, is_offline
from rs_sam.checkpoints.messages import one_line
from rs_sam.errors import CheckpointNotFoundError, MissingDependencyError

TOKEN_ENVS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")


class HubModel(Protocol):
    """What fetching needs of a model (``rs_sam.models.concepts.ConceptModelSpec`` is one)."""

    @property
    def name(self) -> str: ...

    @property
    def hf_repo(self) -> str: ...

    @property
    def gated(self) -> bool: ...

    @property
    def files(self) -> tuple[str, ...]: ...

    @property
    def access_url(self) -> str: ...


def hf_token_file() -> Path:
    """Where ``hf auth login`` keeps the token: ``$HF_TOKEN_PATH`` or ``$HF_HOME/token``."""
    explicit = os.environ.get("HF_TOKEN_PATH")
    if explicit:
        return Path(explicit).expanduser()
    home = os.environ.get("HF_HOME") or "~/.cache/huggingface"
    return Path(home).expanduser() / "token"


def find_hf_token() -> str | None:
    """The user's Hugging Face token (environment, then token file), or None."""
    for env in TOKEN_ENVS:
        value = os.environ.get(env, "").strip()
        if value:
            return value
    try:
        value = hf_token_file().read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return value or None


def hub_model_dir(spec: HubModel) -> Path:
    """The cache folder of a Hugging Face model: ``<checkpoint_dir()>/<name>``."""
    return checkpoint_dir() / spec.name


def is_cached(spec: HubModel) -> bool:
    """Whether the cache folder of ``spec`` holds its ``config.json`` and ``model.safetensors``."""
    folder = hub_model_dir(spec)
    return (folder / "model.safetensors").is_file() and (folder / "config.json").is_file()


def gated_message(spec: HubModel, why: str) -> str:
    """The one line telling a user how to get a (gated) model's files."""
    access = (
        f"the model is gated: request access at {spec.access_url}, then set HF_TOKEN "
        "(or run `hf auth login`)"
        if spec.gated
        else f"download it from {spec.access_url}"
    )
    return (
        f"cannot fetch '{spec.name}' ({why}); {access}, or download the files "
        f"({', '.join(spec.files[:2])}, tokenizer files) and pass --checkpoint FOLDER"
    )


def _snapshot_download(**kwargs: object) -> str:  # indirection so tests can replace it
    from huggingface_hub import snapshot_download

    return snapshot_download(**kwargs)  # type: ignore[arg-type]


def fetch_hub_model(
    spec: HubModel,
    *,
    download: Callable[..., str] | None = None,
) -> Path:
    """The cache folder of ``spec``, downloading its files first when they are not there.

    Args:
        spec: The model (repository, files, access page).
        download: Replaces ``huggingface_hub.snapshot_download`` (tests).

    Raises:
        CheckpointNotFoundError: Offline, no token for a gated model, access refused or a
            network failure (exit 1); one line saying how to get access or pass a folder.
        MissingDependencyError: ``huggingface_hub`` is not installed.
    """
    folder = hub_model_dir(spec)
    if is_cached(spec):
        return folder
    if is_offline():
        raise CheckpointNotFoundError(
            gated_message(spec, f"not cached in {folder} and {OFFLINE_ENV} is set")
        )
    token = find_hf_token()
    if spec.gated and token is None:
        raise CheckpointNotFoundError(gated_message(spec, "no Hugging Face token found"))
    if download is None:
        try:
            import huggingface_hub  # noqa: F401
        except ImportError:
            raise MissingDependencyError(
                "downloading from Hugging Face needs huggingface_hub: pip install "
                "huggingface_hub, or download the files and pass --checkpoint FOLDER"
            ) from None
        download = _snapshot_download
    folder.mkdir(parents=True, exist_ok=True)
    try:
        download(
            repo_id=spec.hf_repo,
            allow_patterns=list(spec.files),
            local_dir=str(folder),
            token=token,
        )
    except Exception as err:  # huggingface_hub's HTTP, gating and offline errors vary
        raise CheckpointNotFoundError(
            gated_message(spec, f"download from {spec.hf_repo} failed: {one_line(err)[:100]}")
        ) from err
    if not is_cached(spec):
        raise CheckpointNotFoundError(
            gated_message(spec, f"the download left no model.safetensors in {folder}")
        )
    return folder
