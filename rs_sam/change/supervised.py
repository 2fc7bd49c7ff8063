"""Supervised change detection at inference: a trained SAM-CD head scores each chip."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rs_sam.change.anychange import ChipScore
from rs_sam.data.pair import ChipPair
from rs_sam.errors import CheckpointError
from rs_sam.models.head_file import (
    HeadMetadata,
    read_head_checkpoint,
    rebuild_encoder,
    split_model_state,
)
from rs_sam.models.samcd import SamCD


@dataclass
class TrainedChangeModel:
    """A SAM-CD network rebuilt from a checkpoint written by ``rs-sam train change``."""

    network: SamCD
    metadata: HeadMetadata

    @property
    def latent_classes(self) -> int:
        return self.metadata.latent_classes

    @torch.inference_mode()
    def score_chip(
        self, chip: ChipPair, image_a: np.ndarray, image_b: np.ndarray, *, semantic: bool = False
    ) -> ChipScore:
        """Change probability of one chip: a pure function of its pixels and the model.

        Args:
            chip: raw chip (for its validity mask).
            image_a, image_b: (3, S, S) float32 0..255 normalised images.
            semantic: also return both dates' latent-class probabilities (softmax).
        """
        device = next(self.network.parameters()).device
        a = torch.from_numpy(image_a)[None].to(device)
        b = torch.from_numpy(image_b)[None].to(device)
        output = self.network(a, b)
        probability = torch.sigmoid(output.change[0, 0]).float().cpu().numpy()
        probability[~chip.valid] = 0.0
        if not semantic:
            return ChipScore(probability, chip.valid, proposals=0)
        return ChipScore(
            probability,
            chip.valid,
            proposals=0,
            latent_a=torch.softmax(output.semantic_a[0].float(), 0).cpu().numpy(),
            latent_b=torch.softmax(output.semantic_b[0].float(), 0).cpu().numpy(),
        )


def load_change_model(path: str | Path, *, device: torch.device) -> TrainedChangeModel:
    """Rebuild the encoder named in the checkpoint, then the head, and load its weights.

    Raises:
        CheckpointError: no rs-sam metadata, or the available encoder weights are not
            the ones the head was trained on (their sha256 differ).
    """
    metadata, hparams, state = read_head_checkpoint(path)
    if metadata.task != "change":
        raise CheckpointError(
            f"{path} is a '{metadata.task}' model; detect-change --model needs a change model"
        )
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
