"""Official checkpoints: where they come from, where they are cached, and how they are read.

One module per job:

* :mod:`~rs_sam.checkpoints.published`: :class:`CheckpointSpec` (URL, name, published size and
  sha256) and checking a file against it.
* :mod:`~rs_sam.checkpoints.download`: atomic, verified downloads with a progress bar.
* :mod:`~rs_sam.checkpoints.cache`: the cache folder, ``RS_SAM_OFFLINE`` and
  :func:`resolve_checkpoint` (explicit path > cached file > download).
* :mod:`~rs_sam.checkpoints.hub`: Hugging Face model repositories (gated ones with the user's
  token) fetched into ``$RS_SAM_HOME/checkpoints/<name>/``; one line when that is impossible.
* :mod:`~rs_sam.checkpoints.torch_file`: :func:`read_torch_file`, the one ``torch.load``
  (``weights_only=True``): pickles that would run code are refused, never executed, and every
  failure is one line ("contains code" or "not a readable ...", and where trusted files come
  from); :mod:`~rs_sam.checkpoints.pickle_scan` reads a refused pickle statically to tell which.
* :mod:`~rs_sam.checkpoints.safe_load`: state dicts read through it (or, for safetensors files
  and Hugging Face model folders, through :mod:`~rs_sam.checkpoints.safetensors_file`).
* :mod:`~rs_sam.checkpoints.ultralytics_pickle`: the tensors of pickled FastSAM models, read
  through inert stand-ins.
* :mod:`~rs_sam.checkpoints.identify`: what model a state dict belongs to.
* :mod:`~rs_sam.checkpoints.keys`: key/shape comparison and strict loading into a module.
* :mod:`~rs_sam.checkpoints.report`: inspecting one file (``rs-sam weights verify``), which
  fails for a file it cannot identify.

An explicit ``checkpoint=`` path is not hash-checked (it may be a fine-tuned file); its keys
and shapes are checked when it is loaded into a model. Matching a file against the encoder
registry lives one layer up, in :mod:`rs_sam.models.encoders.verify`.
"""

from __future__ import annotations

from rs_sam.checkpoints.cache import (
    DEFAULT_HOME,
    HOME_ENV,
    OFFLINE_ENV,
    PublishedModel,
    cached_checkpoint_path,
    checkpoint_dir,
    is_offline,
    resolve_checkpoint,
    rs_sam_home,
)
from rs_sam.checkpoints.download import download_checkpoint
from rs_sam.checkpoints.hub import fetch_hub_model, find_hf_token, hub_model_dir
from rs_sam.checkpoints.identify import (
    IDENTIFIABLE,
    checkpoint_hint,
    foreign_model,
    identified_hint,
    identify_checkpoint,
)
from rs_sam.checkpoints.keys import KeyMismatch, compare_keys, load_into_model
from rs_sam.checkpoints.published import CheckpointSpec, file_sha256
from rs_sam.checkpoints.report import CheckpointReport, inspect_checkpoint, require_identified
from rs_sam.checkpoints.safe_load import load_state_dict
from rs_sam.checkpoints.safetensors_file import HF_WEIGHTS, is_safetensors, weights_file
from rs_sam.checkpoints.torch_file import (
    TORCH_LOAD_ERRORS,
    TRUSTED_ADAPTER,
    TRUSTED_CHECKPOINT,
    TRUSTED_HEAD,
    read_torch_file,
)
from rs_sam.checkpoints.ultralytics_pickle import load_any_state_dict, load_ultralytics_state_dict

__all__ = [
    "DEFAULT_HOME",
    "HF_WEIGHTS",
    "HOME_ENV",
    "IDENTIFIABLE",
    "OFFLINE_ENV",
    "TORCH_LOAD_ERRORS",
    "TRUSTED_ADAPTER",
    "TRUSTED_CHECKPOINT",
    "TRUSTED_HEAD",
    "CheckpointReport",
    "CheckpointSpec",
    "KeyMismatch",
    "PublishedModel",
    "cached_checkpoint_path",
    "checkpoint_dir",
    "checkpoint_hint",
    "compare_keys",
    "download_checkpoint",
    "fetch_hub_model",
    "file_sha256",
    "find_hf_token",
    "foreign_model",
    "hub_model_dir",
    "identified_hint",
    "identify_checkpoint",
    "inspect_checkpoint",
    "is_offline",
    "is_safetensors",
    "load_any_state_dict",
    "load_into_model",
    "load_state_dict",
    "load_ultralytics_state_dict",
    "read_torch_file",
    "require_identified",
    "resolve_checkpoint",
    "rs_sam_home",
    "weights_file",
]
