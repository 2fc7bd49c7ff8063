"""SamLP's two stages: config checks, loading a stage-1 adapter, recognising base weights."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from torch import nn

from rs_sam.errors import ConfigError
from rs_sam.models.encoders import FrozenEncoder
from rs_sam.models.lora import (
    LoraSettings,
    decoder_part_prefixes,
    load_adapter,
    read_adapter_metadata,
)

__all__ = [
    "DECODER_PREFIX",
    "STAGE2_PREFIXES",
    "base_digest",
    "check_stage_arguments",
    "is_lora_name",
    "load_stage1",
    "part_prefixes",
]

#: What stage 2 trains in full besides the mask decoder's LoRA.
STAGE2_PREFIXES = ("prompt_encoder.",)
#: State-dict prefix of the mask decoder inside SAM.
DECODER_PREFIX = "mask_decoder."


def check_stage_arguments(hp: Any) -> None:
    """One-line errors for ``model:`` values of a LoRA task (its ``hparams``) that do not fit."""
    if hp.stage not in (1, 2) or isinstance(hp.stage, bool):
        raise ConfigError(f"model.stage={hp.stage!r} must be 1 or 2")
    if hp.stage == 1:
        for key in ("stage1_adapter", "iterations"):
            if hp[key] is not None:
                raise ConfigError(f"model.{key} is for stage 2; remove it or set model.stage: 2")
    else:
        if not hp.stage1_adapter:
            raise ConfigError(
                "model.stage 2 needs model.stage1_adapter: the adapter.pt of a stage-1 run "
                "(trained with decoder: true)"
            )
        iterations = 1 if hp.iterations is None else hp.iterations
        if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
            raise ConfigError(f"model.iterations={hp.iterations!r} must be an integer >= 1")
    if hp.prompt not in ("regions", "mask"):
        raise ConfigError(f"model.prompt={hp.prompt!r} must be 'regions' or 'mask'")
    for key, low in (("points", 0), ("max_prompts", 1)):
        value = hp[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"model.{key}={value!r} must be an integer >= {low}")
    if not hp.box and hp.points < 1:
        raise ConfigError("model.box is false and model.points is 0: stage 2 needs a prompt")
    if hp.dice not in ("batch", "chip"):
        raise ConfigError(f"model.dice={hp.dice!r} must be 'batch' or 'chip'")
    if hp.output_mask not in (0, 1, 2) or isinstance(hp.output_mask, bool):
        raise ConfigError(f"model.output_mask={hp.output_mask!r} must be 0, 1 or 2")


def load_stage1(
    hp: Any, encoder: FrozenEncoder, given: dict[str, Any], digest: str | None
) -> tuple[LoraSettings, tuple[str, ...], dict[str, Any]]:
    """Load the stage-1 adapter ``hp.stage1_adapter`` into ``encoder`` for stage 2.

    Args:
        hp: The task's ``hparams``.
        encoder: The encoder, without LoRA yet.
        given: LoRA settings the config sets (they must agree with the adapter's).
        digest: :func:`base_digest` of random base weights (None: official weights).

    Returns:
        The adapter's LoRA settings, the decoder parts it trained (``extra_prefixes``) and
        its record (:func:`~rs_sam.models.lora.read_adapter_metadata`).
    """
    path = Path(hp.stage1_adapter)
    record = read_adapter_metadata(path)
    metadata = record.get("metadata") or {}
    prefixes = [p for p in record.get("extra_prefixes") or [] if isinstance(p, str)]
    stage = metadata.get("stage")
    if stage is None:  # not written by LoraTask: a prompt encoder means stage 2
        stage = 2 if any(p.startswith(STAGE2_PREFIXES) for p in prefixes) else 1
    if stage != 1:
        raise ConfigError(
            f"{path.name} is a stage-{stage} adapter; pass the adapter.pt of a stage-1 run"
        )
    parts = tuple(p for p in prefixes if p.startswith(DECODER_PREFIX))
    asked = hp.decoder_parts
    if asked is not None and set(part_prefixes(encoder, asked)) != set(parts):
        raise ConfigError(
            f"stage 2 takes its decoder parts from {path.name} "
            f"({[p[len(DECODER_PREFIX) : -1] for p in parts]}); the config sets "
            f"decoder_parts={list(hp.decoder_parts)!r}: remove it"
        )
    settings = load_adapter(path, encoder, base_checkpoint=hp.checkpoint)
    recorded = metadata.get("base_digest")
    if digest is not None and recorded is not None and recorded != digest:
        raise ConfigError(
            f"{path.name} was trained on other random '{hp.encoder}' weights than these "
            "(base digests differ); use the stage-1 config's seed and encoder settings"
        )
    if metadata.get("target") not in (None, hp.target):
        raise ConfigError(
            f"{path.name} was trained to segment {metadata['target']!r}, not "
            f"{hp.target!r}; use the stage-1 data.target"
        )
    differ = {k: v for k, v in given.items() if getattr(settings, k) != v}
    if differ:
        shown = ", ".join(
            f"{k}={v!r} (adapter: {getattr(settings, k)!r})" for k, v in differ.items()
        )
        raise ConfigError(
            f"stage 2 takes its LoRA settings from {path.name}; the config sets {shown}: "
            "remove them"
        )
    if not settings.decoder:
        raise ConfigError(
            f"{path.name} has no mask-decoder LoRA, which stage 2 trains; train stage 1 "
            "with model.decoder: true"
        )
    return settings, parts, record


def part_prefixes(encoder: FrozenEncoder, parts: Any) -> tuple[str, ...]:
    """``model.decoder_parts`` as ``extra_prefixes`` (None: none), with one-line errors."""
    if parts is None:
        return ()
    try:
        return decoder_part_prefixes(encoder, parts)
    except ConfigError as err:
        raise ConfigError(f"model.decoder_parts: {err}") from err


def is_lora_name(name: str) -> bool:
    return any(part.startswith("lora_") for part in name.split("."))


def base_digest(encoder: FrozenEncoder) -> str:
    """sha256 of the base SAM weights (no LoRA), to recognise random weights again."""
    digest = hashlib.sha256()
    sam: nn.Module = encoder.sam  # type: ignore[assignment]
    for name, tensor in sorted(sam.state_dict().items()):
        if is_lora_name(name):
            continue
        name = name.replace(".base_layer.", ".")  # peft's wrapped Linear, same weights
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
