"""One way to build the model of a run: a small, picklable recipe and the function that cooks it.

A :class:`ModelRecipe` names everything a run's model is made of (encoder, weights,
checkpoint, LoRA adapter and whether to merge it, device, the encoder's runtime, tiny test
configuration, and the trained head a run uses) and nothing live, so it can be sent to
another process and compared or hashed as a cache key. :func:`build_encoder` is the only
place that loads an encoder and applies an adapter and a runtime; the trained heads are built
on it in :mod:`rs_sam.models.trained`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from rs_sam.devices import resolve_device
from rs_sam.models.encoders import FrozenEncoder, load_encoder
from rs_sam.models.encoders.openvino_runtime import use_runtime
from rs_sam.models.lora import adapt_encoder


@dataclass(frozen=True)
class ModelRecipe:
    """What a run's model is built from; hashable, picklable, no live objects."""

    encoder: str
    weights: Literal["official", "random"] = "official"
    checkpoint: Path | None = None
    lora: Path | None = None  # adapter from `rs-sam train lora`
    merge_lora: bool = False  # fold the adapter into the encoder's weights (faster)
    device: str = "auto"
    tiny: bool = False  # the reduced test configuration (random weights only)
    head: Path | None = None  # a trained head (`rs-sam train change/segment`), if the run uses one
    encoder_runtime: str = "torch"  # or "openvino" (CPU; see encoders/openvino_runtime.py)

    def resolved_device(self) -> torch.device:
        """Where the model runs: ``device`` resolved; "auto" is the CPU with OpenVINO."""
        if self.encoder_runtime == "openvino" and self.device == "auto":
            return torch.device("cpu")
        return resolve_device(self.device)


def build_encoder(recipe: ModelRecipe) -> FrozenEncoder:
    """The recipe's frozen encoder on its device, with its LoRA adapter and runtime applied."""
    encoder = load_encoder(
        recipe.encoder,
        weights=recipe.weights,
        checkpoint=recipe.checkpoint,
        device=recipe.resolved_device(),
        tiny=recipe.tiny,
    )
    encoder = adapt_encoder(
        encoder, recipe.lora, base_checkpoint=recipe.checkpoint, merge=recipe.merge_lora
    )
    return use_runtime(encoder, recipe.encoder_runtime)
