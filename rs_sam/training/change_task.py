"""Supervised change detection (SAM-CD) as a Lightning task, in torchgeo's task style.

The constructor's typed arguments are the ``model:`` section of a training config. The
frozen encoder is rebuilt from its registry name and checkpoint; checkpoints keep only
the trainable head plus the metadata needed to rebuild everything (see
:mod:`rs_sam.models.head_file`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    BinaryAccuracy,
    BinaryF1Score,
    BinaryJaccardIndex,
    BinaryPrecision,
    BinaryRecall,
)

from rs_sam.data.labels import IGNORE
from rs_sam.losses.change import ChangeLoss
from rs_sam.models.head_file import HeadMetadata, load_task_encoder
from rs_sam.models.samcd import SamCD, SamCDOutput
from rs_sam.training.head_task import HeadTask


class ChangeTask(HeadTask):
    """SAM-CD: frozen SAM-family encoder, adapters, UNet decoder, change + semantic heads."""

    def __init__(
        self,
        *,
        encoder: str = "mobile_sam",
        weights: Literal["official", "random"] = "official",
        checkpoint: str | None = None,
        tiny_encoder: bool = False,
        freeze_encoder: bool = True,
        latent_classes: int = 8,
        adapter_reduction: int = 4,
        residual_blocks: int = 6,
        decoder_channels: int = 64,
        temperature: float = 3.0,
        bce_weight: float = 1.0,
        dice_weight: float = 0.0,
        temporal_weight: float = 1.0,
        pos_weight: float | None = None,
        optimizer: Literal["sgd", "adamw"] = "sgd",
        lr: float = 0.1,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        chip_size: int = 256,
        bands: tuple[int, ...] | None = None,
        lora: str | None = None,
    ) -> None:
        """Build the model.

        Args:
            encoder: registry name (``mobile_sam`` light default, ``fastsam_x`` as in SAM-CD).
            weights: ``official`` weights or ``random`` (tests, benchmarks, demos only).
            checkpoint: explicit encoder checkpoint file instead of the cached official one.
            tiny_encoder: the reduced test configuration of the encoder (random weights).
            freeze_encoder: keep the encoder frozen (SAM-CD) or fine-tune it too.
            latent_classes: k of the per-date semantic (latent) head.
            residual_blocks, decoder_channels: depth and width of the change branch.
            temperature: T of the temporal-constraint softmax (T > 1).
            optimizer: ``sgd`` (Nesterov, the paper's recipe) or ``adamw``.
            chip_size: side of the training chips, recorded for inference.
            bands: 1-based bands the images were read with, recorded for inference.
            lora: a LoRA adapter from ``rs-sam train lora`` merged into the encoder (the
                adapted SAM as the encoder of this head); recorded with its sha256.
        """
        super().__init__()
        self.save_hyperparameters()
        self.configure_models()
        self.configure_losses()
        self.configure_metrics()

    def configure_models(self) -> None:
        hp = self.hparams
        loaded = load_task_encoder(
            hp.encoder,
            weights=hp.weights,
            checkpoint=hp.checkpoint,
            tiny=hp.tiny_encoder,
            lora=hp.lora,
        )
        backbone, self.task_encoder = loaded.encoder, loaded
        self.encoder_sha256 = loaded.sha256
        self.model = SamCD(
            backbone,
            latent_classes=hp.latent_classes,
            adapter_reduction=hp.adapter_reduction,
            residual_blocks=hp.residual_blocks,
            decoder_channels=hp.decoder_channels,
            freeze_encoder=hp.freeze_encoder,
        )

    def configure_losses(self) -> None:
        hp = self.hparams
        self.criterion = ChangeLoss(
            bce_weight=hp.bce_weight,
            dice_weight=hp.dice_weight,
            temporal_weight=hp.temporal_weight,
            temperature=hp.temperature,
            pos_weight=hp.pos_weight,
        )

    def configure_metrics(self) -> None:
        metrics = MetricCollection(
            {
                "precision": BinaryPrecision(ignore_index=IGNORE),
                "recall": BinaryRecall(ignore_index=IGNORE),
                "f1": BinaryF1Score(ignore_index=IGNORE),
                "iou": BinaryJaccardIndex(ignore_index=IGNORE),
                "accuracy": BinaryAccuracy(ignore_index=IGNORE),
            }
        )
        self.val_metrics = metrics.clone(prefix="val/")

    def forward(self, batch: dict[str, Any]) -> SamCDOutput:
        """Run on a batch: cached encoder features when present, else the images."""
        if "features_a" in batch:
            size = tuple(batch["mask"].shape[-2:])
            return self.model.forward_features(batch["features_a"], batch["features_b"], size)
        return self.model(batch["image_a"], batch["image_b"])

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        losses = self.criterion(self(batch), batch["mask"])
        batch_size = batch["mask"].shape[0]
        for name, value in losses.items():
            self.log(f"train/{name}", value, batch_size=batch_size, prog_bar=name == "loss")
        return losses["loss"]

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        output = self(batch)
        losses = self.criterion(output, batch["mask"])
        batch_size = batch["mask"].shape[0]
        self.log("val/loss", losses["loss"], batch_size=batch_size, sync_dist=True)
        probability = torch.sigmoid(output.change[:, 0])
        self.val_metrics.update(probability, batch["mask"])

    def on_validation_epoch_end(self) -> None:
        # compute() gathers every rank's counts; sync_dist then averages equal values
        self.log_dict(self.val_metrics.compute(), prog_bar=True, sync_dist=True)
        self.val_metrics.reset()

    def metadata(self) -> HeadMetadata:
        """What a checkpoint records so the head can be rebuilt and used elsewhere."""
        hp = self.hparams
        return HeadMetadata(
            task="change",
            encoder=hp.encoder,
            encoder_weights="random" if hp.tiny_encoder else hp.weights,
            encoder_sha256=self.encoder_sha256,
            tiny_encoder=hp.tiny_encoder,
            input_size=self.model.encoder.input_size,
            chip_size=hp.chip_size,
            bands=tuple(hp.bands) if hp.bands else None,
            normalisation="uint8 as is; other types: one 2-98 percentile stretch of both dates",
            latent_classes=hp.latent_classes,
            temperature=hp.temperature,
            freeze_encoder=hp.freeze_encoder,
            lora_adapter=str(Path(hp.lora).resolve()) if hp.lora else None,
            lora_sha256=self.task_encoder.lora_sha256,
        )
