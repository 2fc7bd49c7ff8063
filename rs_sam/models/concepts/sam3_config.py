"""SAM 3 configurations and tokenizers: the official size, a tiny random one, a model folder.

Everything here is read from JSON and plain text (``config.json``, ``tokenizer.json`` or
``vocab.json`` + ``merges.txt``): nothing is imported from a folder and no code runs. A
folder's ``config.json`` may describe the whole video model (``sam3_video``, as in
``facebook/sam3``): its ``detector_config`` is the image model rs-sam uses.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rs_sam.errors import CheckpointError

if TYPE_CHECKING:
    from transformers import CLIPTokenizer, Sam3Config

#: Tokens per text prompt (what ``Sam3Processor`` pads to; the text encoder's positions).
TEXT_LENGTH = 32

_TINY_LETTERS = "abcdefghijklmnopqrstuvwxyz"
_BOS, _EOS = "<|startoftext|>", "<|endoftext|>"


def official_config() -> Sam3Config:
    """The configuration of ``facebook/sam3``'s image model (transformers' defaults)."""
    from transformers import Sam3Config

    return Sam3Config()


def tiny_config() -> Sam3Config:
    """A tiny random SAM 3: 112-pixel input, 2-layer ViT, 1-layer text/DETR, 8 queries.

    One chip with two queries runs in well under a second on a CPU; for tests only.
    """
    from transformers import Sam3Config

    small = {"hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64}
    backbone = {
        "model_type": "sam3_vit_model",
        **small,
        "num_hidden_layers": 2,
        "image_size": 112,
        "patch_size": 14,
        "window_size": 4,
        "global_attn_indexes": [1],
        "pretrain_image_size": 56,
    }
    text = {
        "model_type": "clip_text_model",
        **small,
        "vocab_size": len(tiny_vocab()),
        "projection_dim": 32,
        "num_hidden_layers": 1,
        "max_position_embeddings": TEXT_LENGTH,
        "bos_token_id": 0,
        "eos_token_id": 1,
        "pad_token_id": 1,
    }
    return Sam3Config(
        vision_config={
            "backbone_config": backbone,
            "fpn_hidden_size": 32,
            "backbone_feature_sizes": [[32, 32], [16, 16], [8, 8]],
        },
        text_config=text,
        geometry_encoder_config={**small, "num_layers": 1},
        detr_encoder_config={**small, "num_layers": 1},
        detr_decoder_config={**small, "num_layers": 1, "num_queries": 8},
        mask_decoder_config={"hidden_size": 32, "num_attention_heads": 2},
    )


def tiny_vocab() -> dict[str, int]:
    """The tiny tokenizer's vocabulary: the two special tokens and single letters."""
    vocab = {_BOS: 0, _EOS: 1}
    for letter in _TINY_LETTERS:
        vocab[letter] = len(vocab)
        vocab[letter + "</w>"] = len(vocab)
    return vocab


def tiny_tokenizer() -> CLIPTokenizer:
    """A CLIP tokenizer over :func:`tiny_vocab` (letters only, no merges), built in code."""
    from transformers import CLIPTokenizer

    return CLIPTokenizer(vocab=tiny_vocab(), merges=[])


def config_from_folder(folder: Path) -> Sam3Config:
    """The image model's configuration from a folder's ``config.json`` (plain JSON).

    Raises:
        CheckpointError: No readable ``config.json``, or one that is not a SAM 3 model's.
    """
    from transformers import Sam3Config

    path = folder / "config.json"
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(
            f"{path} is missing or not JSON ({type(err).__name__}); a SAM 3 model folder "
            "needs the config.json of facebook/sam3 beside model.safetensors"
        ) from None
    if isinstance(data, dict) and isinstance(data.get("detector_config"), dict):
        data = data["detector_config"]  # sam3_video: the detector is the image model
    if not isinstance(data, dict) or data.get("model_type", "sam3") != "sam3":
        found = data.get("model_type") if isinstance(data, dict) else type(data).__name__
        raise CheckpointError(
            f"{path} describes a '{found}' model, not SAM 3; pass the folder of facebook/sam3"
        )
    data = {k: v for k, v in data.items() if k not in {"architectures", "transformers_version"}}
    try:
        return Sam3Config(**data)
    except (TypeError, ValueError, KeyError) as err:
        raise CheckpointError(
            f"{path} is not a readable SAM 3 configuration ({type(err).__name__}: "
            f"{str(err)[:80]}); pass the folder of facebook/sam3"
        ) from None


def tokenizer_from_folder(folder: Path) -> CLIPTokenizer:
    """The CLIP tokenizer of a model folder (``tokenizer.json``, or ``vocab.json`` + merges).

    Raises:
        CheckpointError: The folder holds no tokenizer files, or unreadable ones.
    """
    from transformers import CLIPTokenizer

    if not any((folder / name).is_file() for name in ("tokenizer.json", "vocab.json")):
        raise CheckpointError(
            f"{folder} holds no tokenizer (tokenizer.json or vocab.json + merges.txt); copy "
            "the tokenizer files of facebook/sam3 beside model.safetensors"
        )
    try:
        return CLIPTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, TypeError, KeyError) as err:
        raise CheckpointError(
            f"the tokenizer files in {folder} cannot be read ({type(err).__name__}); copy the "
            "tokenizer files of facebook/sam3 again"
        ) from None
