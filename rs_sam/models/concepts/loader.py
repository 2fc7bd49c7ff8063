"""Building a concept segmenter: configuration, tokenizer and strictly checked weights.

Weights are read without running code: a safetensors file (or a Hugging Face model folder's
``model.safetensors``), or a PyTorch file through rs-sam's restricted reader only to say what
it is. Keys are checked strictly; transformers' layout of ``facebook/sam3`` (``detector_model.``
before every key of the image model, plus the video tracker's ``tracker_model.`` /
``tracker_neck.`` keys, which the image model does not use) is accepted as is.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch
from torch import Tensor

from rs_sam.checkpoints import (
    compare_keys,
    identify_checkpoint,
    is_safetensors,
    load_state_dict,
    weights_file,
)
from rs_sam.checkpoints.hub import fetch_hub_model, hub_model_dir
from rs_sam.errors import CheckpointError, ConfigError
from rs_sam.models.concepts.registry import get_concept_model
from rs_sam.models.concepts.sam3 import DEFAULT_SCORE_THRESHOLD, Sam3ConceptSegmenter
from rs_sam.models.concepts.sam3_config import (
    config_from_folder,
    official_config,
    tiny_config,
    tiny_tokenizer,
    tokenizer_from_folder,
)

if TYPE_CHECKING:
    from transformers import CLIPTokenizer, Sam3Config, Sam3Model

#: Prefix of the image model's keys in ``facebook/sam3``'s ``model.safetensors``.
DETECTOR_PREFIX = "detector_model."
#: Keys of the video tracker in the same file, which the image model does not use.
TRACKER_PREFIXES = ("tracker_model.", "tracker_neck.")
_META_PREFIX = "detector."  # Meta's own sam3.pt


def load_concept_segmenter(
    name: str = "sam3",
    *,
    weights: Literal["official", "random"] = "official",
    checkpoint: str | Path | None = None,
    device: str | torch.device = "cpu",
    tiny: bool = False,
    score_threshold: float = DEFAULT_SCORE_THRESHOLD,
) -> Sam3ConceptSegmenter:
    """A ready concept segmenter.

    Args:
        name: The concept model (``"sam3"``).
        weights: ``"official"``: the weights of ``checkpoint``, else of the cache folder
            (``$RS_SAM_HOME/checkpoints/sam3/``, fetched with the user's Hugging Face token
            when missing); ``"random"``: random weights (tests, timing), no file read.
        checkpoint: A Hugging Face model folder (``config.json``, ``model.safetensors``,
            tokenizer files) or a single ``model.safetensors`` (the official configuration;
            the tokenizer files must be beside it or in the cache folder).
        device: Where the model runs.
        tiny: A tiny random configuration and a letters-only tokenizer (tests); a
            ``checkpoint`` file then holds the tiny model's weights.
        score_threshold: Instances at or below this score are left out.

    Raises:
        UnknownEncoderError: ``name`` is not a concept model.
        ModelFileNotFoundError: ``checkpoint`` does not exist (exit 2).
        CheckpointNotFoundError: No weights cached and none can be fetched (exit 1).
        CheckpointError: A file of another model, missing/unexpected keys, a pickle.
        ConfigError: An unknown ``weights``, or a ``checkpoint`` with random weights.
    """
    spec = get_concept_model(name)
    if weights not in ("official", "random"):
        raise ConfigError(f"weights must be 'official' or 'random', got {weights!r}")
    if weights == "random" and checkpoint is not None:
        raise ConfigError("a checkpoint is read only with weights='official', not 'random'")
    folder: Path | None = None
    file: Path | None = None
    if weights == "official":
        if checkpoint is not None:
            path = Path(checkpoint).expanduser()
            folder = path if path.is_dir() else None
            file = weights_file(path)
        elif not tiny:
            folder = fetch_hub_model(spec)
            file = weights_file(folder)
    config = _config(folder, tiny)
    tokenizer = _tokenizer(folder, file, tiny or weights == "random")
    model = _build(config)
    if file is not None:
        load_sam3_weights(model, read_weights(file), source=file)
    return Sam3ConceptSegmenter(model, tokenizer, device=device, score_threshold=score_threshold)


def _config(folder: Path | None, tiny: bool) -> Sam3Config:
    if folder is not None and (folder / "config.json").is_file():
        return config_from_folder(folder)
    return tiny_config() if tiny else official_config()


def _tokenizer(folder: Path | None, file: Path | None, tiny: bool) -> CLIPTokenizer:
    if folder is not None:
        return tokenizer_from_folder(folder)
    if tiny:
        return tiny_tokenizer()
    candidates = [p for p in (file.parent if file else None, hub_model_dir_sam3()) if p]
    for candidate in candidates:
        if (candidate / "tokenizer.json").is_file() or (candidate / "vocab.json").is_file():
            return tokenizer_from_folder(candidate)
    raise CheckpointError(
        f"no SAM 3 tokenizer beside {file}: copy the tokenizer files of facebook/sam3 "
        "(tokenizer.json, vocab.json, merges.txt) into its folder, or pass the whole folder"
    )


def hub_model_dir_sam3() -> Path:
    """The cache folder of ``sam3``."""
    return hub_model_dir(get_concept_model("sam3"))


def _build(config: Sam3Config) -> Sam3Model:
    from transformers import Sam3Model

    return Sam3Model(config).eval()


def read_weights(path: Path) -> dict[str, Tensor]:
    """The tensors of a weights file, read without running code.

    A PyTorch pickle is read through rs-sam's restricted reader only to name what it holds:
    SAM 3 is loaded from safetensors.

    Raises:
        CheckpointError: Not safetensors (naming the model when it can be told), or damaged.
    """
    if is_safetensors(path):
        return load_state_dict(path)
    state_dict = load_state_dict(path)  # weights_only: refuses code, never runs it
    what = describe_foreign(state_dict)
    raise CheckpointError(
        f"{path} is a PyTorch file{f' of {what}' if what else ''}; SAM 3 is read from "
        "safetensors only: pass model.safetensors of facebook/sam3 (or its folder)"
    )


def describe_foreign(state_dict: Mapping[str, Tensor]) -> str | None:
    """What a state dict that is not transformers' SAM 3 is, in words, or None."""
    identified = identify_checkpoint(state_dict)
    if identified is not None:
        generation = "SAM 2/2.1" if identified.startswith("sam2_") else "SAM (first generation)"
        if identified.startswith("fastsam"):
            generation = "FastSAM"
        return f"{generation} ('{identified}', an rs-sam encoder: --encoder {identified})"
    if any(key.startswith(_META_PREFIX) for key in state_dict):
        return "SAM 3 in Meta's original layout (sam3.pt), which rs-sam does not convert"
    return None


def sam3_state_dict(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The image model's tensors: ``detector_model.`` removed, tracker keys dropped."""
    if not any(key.startswith(DETECTOR_PREFIX) for key in state_dict):
        return dict(state_dict)
    return {
        key.removeprefix(DETECTOR_PREFIX): value
        for key, value in state_dict.items()
        if not key.startswith(TRACKER_PREFIXES)
    }


def check_sam3_keys(
    expected: Mapping[str, Tensor], state_dict: Mapping[str, Tensor], *, source: str | Path
) -> dict[str, Tensor]:
    """The image model's tensors of ``state_dict``, when keys and shapes fit ``expected``.

    Raises:
        CheckpointError: One line: what the file is when it is another model, else the
            first few missing / unexpected / reshaped keys.
    """
    found = sam3_state_dict(state_dict)
    mismatch = compare_keys(expected, found)
    if not mismatch:
        return found
    what = describe_foreign(state_dict)
    if what is not None:
        raise CheckpointError(f"checkpoint {source} is not SAM 3: it is {what}")
    raise CheckpointError(
        f"checkpoint {source} does not fit SAM 3: {mismatch}; pass model.safetensors of "
        "facebook/sam3 (transformers' layout) with the config.json it came with"
    )


def load_sam3_weights(
    model: Sam3Model, state_dict: Mapping[str, Tensor], *, source: str | Path
) -> None:
    """Load ``state_dict`` into ``model`` strictly (see :func:`check_sam3_keys`)."""
    found = check_sam3_keys(model.state_dict(), state_dict, source=source)
    model.load_state_dict(found, strict=True)
