"""Trained heads rebuilt for inference: SAM-CD (change) and UNetFormer (segment).

The file format is :mod:`rs_sam.models.head_file`; the encoder under a head is built by
:func:`rs_sam.models.recipe.build_encoder` (through ``rebuild_encoder``). A run names its head
in :attr:`ModelRecipe.head`; :func:`build_change_model` and :func:`build_segment_model` turn
that recipe into the ready network.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from rs_sam.data.class_table import ClassTable
from rs_sam.errors import CheckpointError, ConfigError
from rs_sam.models.encoders import FrozenEncoder
from rs_sam.models.encoders.openvino_runtime import use_runtime
from rs_sam.models.head_file import (
    HeadMetadata,
    read_head_checkpoint,
    rebuild_encoder,
    split_model_state,
)
from rs_sam.models.recipe import ModelRecipe
from rs_sam.models.samcd import SamCD
from rs_sam.models.unetformer import UNetFormer


@dataclass
class TrainedChangeModel:
    """A SAM-CD network rebuilt from a checkpoint written by ``rs-sam train change``."""

    network: SamCD
    metadata: HeadMetadata

    @property
    def latent_classes(self) -> int:
        return self.metadata.latent_classes

    @torch.inference_mode()
    def predict(
        self, image_a: np.ndarray, image_b: np.ndarray, *, semantic: bool = False
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """(S, S) change probability of one chip of (3, S, S) float32 0..255 images, and with
        ``semantic`` both dates' (k, S, S) latent-class probabilities (softmax)."""
        device = next(self.network.parameters()).device
        a = torch.from_numpy(image_a)[None].to(device)
        b = torch.from_numpy(image_b)[None].to(device)
        output = self.network(a, b)
        probability = torch.sigmoid(output.change[0, 0]).float().cpu().numpy()
        if not semantic:
            return probability, None, None
        return (
            probability,
            torch.softmax(output.semantic_a[0].float(), 0).cpu().numpy(),
            torch.softmax(output.semantic_b[0].float(), 0).cpu().numpy(),
        )


@dataclass
class TrainedSegmentModel:
    """A UNetFormer rebuilt from a checkpoint written by ``rs-sam train segment``."""

    network: UNetFormer
    metadata: HeadMetadata
    class_table: ClassTable

    @torch.inference_mode()
    def probabilities(self, image: np.ndarray) -> np.ndarray:
        """(k, S, S) class probabilities of one (3, S, S) float32 0..255 chip."""
        device = next(self.network.parameters()).device
        logits = self.network(torch.from_numpy(image)[None].to(device))
        return torch.softmax(logits[0].float(), 0).cpu().numpy()


def head_metadata(
    path: str | Path, task: Literal["change", "segment"]
) -> tuple[HeadMetadata, dict[str, Any], dict[str, Any]]:
    """A head checkpoint's contents, refused when it is not a ``task`` model.

    Raises:
        CheckpointError: no rs-sam metadata, or a model of the other task.
    """
    metadata, hparams, state = read_head_checkpoint(path)
    if task == "change" and metadata.task != "change":
        raise CheckpointError(
            f"{path} is a '{metadata.task}' model; detect-change --model needs a change model"
        )
    if task == "segment" and (metadata.task != "segment" or metadata.class_table is None):
        raise CheckpointError(
            f"{path} is a '{metadata.task}' model; segment --model needs a segmentation model "
            "from `rs-sam train segment`"
        )
    return metadata, hparams, state


def load_change_model(path: str | Path, *, device: torch.device) -> TrainedChangeModel:
    """Rebuild the encoder named in the checkpoint, then the head, and load its weights.

    Raises:
        CheckpointError: no rs-sam metadata, or the available encoder weights are not
            the ones the head was trained on (their sha256 differ).
    """
    metadata, hparams, state = head_metadata(path, "change")
    encoder = rebuild_encoder(metadata, path)
    network = SamCD(
        encoder,
        latent_classes=metadata.latent_classes,
        adapter_reduction=hparams.get("adapter_reduction", 4),
        residual_blocks=hparams.get("residual_blocks", 6),
        decoder_channels=hparams.get("decoder_channels", 64),
        freeze_encoder=metadata.freeze_encoder,
    )
    encoder_state, weights = split_model_state(state, frozen_encoder=metadata.freeze_encoder)
    if encoder_state:  # a random frozen encoder travels in the checkpoint
        network.encoder.load_state_dict(encoder_state)
    network.load_head_state_dict(weights)
    network.eval()
    return TrainedChangeModel(network.to(device), metadata)


def load_segment_model(path: str | Path, *, device: torch.device) -> TrainedSegmentModel:
    """Rebuild the encoder named in the checkpoint, then UNetFormer, and load its weights.

    Raises:
        CheckpointError: not a segmentation model, no rs-sam metadata, or other encoder
            weights than the model was trained on.
    """
    metadata, hparams, state = head_metadata(path, "segment")
    table = ClassTable.from_config(metadata.class_table)  # type: ignore[arg-type]
    sam = metadata.backbone == "sam"
    network = UNetFormer(
        rebuild_encoder(metadata, path) if sam else None,
        backbone=metadata.backbone,  # type: ignore[arg-type]
        num_classes=table.num_classes,
        decoder_channels=hparams.get("decoder_channels", 64),
        window_size=hparams.get("window_size", 8),
        num_heads=hparams.get("num_heads", 8),
        dropout=hparams.get("dropout", 0.1),
        adapter_reduction=hparams.get("adapter_reduction", 1),
        freeze_encoder=metadata.freeze_encoder,
        aux_head=hparams.get("aux_head", True),
        imagenet_weights=bool(hparams.get("imagenet_weights", False)) and not sam,
    )
    frozen_random = metadata.freeze_encoder and (not sam or metadata.encoder_weights == "random")
    encoder_state, weights = split_model_state(state, frozen_encoder=metadata.freeze_encoder)
    if encoder_state and frozen_random:  # a frozen encoder the registry cannot rebuild
        network.encoder.load_state_dict(encoder_state)
    network.load_head_state_dict(weights)
    network.eval()
    return TrainedSegmentModel(network.to(device), metadata, table)


def build_change_model(recipe: ModelRecipe) -> TrainedChangeModel:
    """The recipe's trained SAM-CD head on the recipe's device, its encoder on its runtime."""
    model = load_change_model(_head(recipe), device=recipe.resolved_device())
    _use_runtime(model.network.encoder, recipe)
    return model


def build_segment_model(recipe: ModelRecipe) -> TrainedSegmentModel:
    """The recipe's trained UNetFormer on the recipe's device, its encoder on its runtime."""
    model = load_segment_model(_head(recipe), device=recipe.resolved_device())
    _use_runtime(model.network.encoder, recipe)
    return model


def _use_runtime(encoder: torch.nn.Module, recipe: ModelRecipe) -> None:
    if recipe.encoder_runtime == "torch":
        return
    if not isinstance(encoder, FrozenEncoder):
        raise ConfigError(
            f"encoder runtime {recipe.encoder_runtime!r} runs SAM-family encoders; this "
            "model's backbone is ResNet-18: use --encoder-runtime torch"
        )
    use_runtime(encoder, recipe.encoder_runtime)


def _head(recipe: ModelRecipe) -> Path:
    if recipe.head is None:
        raise ConfigError("this run needs a trained model; pass --model with a .ckpt")
    return recipe.head
