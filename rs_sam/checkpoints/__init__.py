"""Official checkpoints: where they come from, where they are cached, and how they are read.

One module per job:

* :mod:`~rs_sam.checkpoints.published`: :class:`CheckpointSpec` (URL, name, published size and
  sha256) and checking a file against it.
* :mod:`~rs_sam.checkpoints.download`: atomic, verified downloads with a progress bar.
* :mod:`~rs_sam.checkpoints.cache`: the cache folder, ``RS_SAM_OFFLINE`` and
  :func:`resolve_checkpoint` (explicit path > cached file > download).
* :mod:`~rs_sam.checkpoints.safe_load`: ``torch.load(weights_only=True)`` only; pickles that
  would run code are refused, never executed.
* :mod:`~rs_sam.checkpoints.ultralytics_pickle`: the tensors of pickled FastSAM models, read
  through inert stand-ins.
* :mod:`~rs_sam.checkpoints.identify`: what model a state dict belongs to.
* :mod:`~rs_sam.checkpoints.keys`: key/shape comparison and strict loading into a module.
* :mod:`~rs_sam.checkpoints.report`: inspecting one file (``rs-sam weights verify``).

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
from rs_sam.checkpoints.identify import IDENTIFIABLE, identified_hint, identify_checkpoint
from rs_sam.checkpoints.keys import KeyMismatch, compare_keys, load_into_model
from rs_sam.checkpoints.published import CheckpointSpec, file_sha256
from rs_sam.checkpoints.report import CheckpointReport, inspect_checkpoint
from rs_sam.checkpoints.safe_load import TORCH_LOAD_ERRORS, load_state_dict
from rs_sam.checkpoints.ultralytics_pickle import load_any_state_dict, load_ultralytics_state_dict

__all__ = [
    "DEFAULT_HOME",
    "HOME_ENV",
    "IDENTIFIABLE",
    "OFFLINE_ENV",
    "TORCH_LOAD_ERRORS",
    "CheckpointReport",
    "CheckpointSpec",
    "KeyMismatch",
    "PublishedModel",
    "cached_checkpoint_path",
    "checkpoint_dir",
    "compare_keys",
    "download_checkpoint",
    "file_sha256",
    "identified_hint",
    "identify_checkpoint",
    "inspect_checkpoint",
    "is_offline",
    "load_any_state_dict",
    "load_into_model",
    "load_state_dict",
    "load_ultralytics_state_dict",
    "resolve_checkpoint",
    "rs_sam_home",
]
