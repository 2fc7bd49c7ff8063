"""Semantic segmentation (UNetFormer + SSRS losses) as a Lightning task, in torchgeo's style.

The constructor's typed arguments are the ``model:`` section of a training config; the
class table comes from the ``data:`` section (``rs-sam train`` passes it on). Checkpoints
keep the trainable weights plus the metadata to rebuild everything (encoder, class table,
chip size, bands), like change checkpoints (see :mod:`rs_sam.models.head_file`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from torch import Tensor
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex

from rs_sam.data.class_table import ClassTable
from rs_sam.errors import ConfigError
from rs_sam.losses.segment import SegmentationLoss
from rs_sam.models.head_file import HeadMetadata, TaskEncoder, load_task_encoder
from rs_sam.models.unetformer import UNetFormer
from rs_sam.training.head_task import HeadTask


class SegmentTask(HeadTask):
    """UNetFormer on a frozen SAM-family encoder (or ResNet-18), trained with CE + SSRS losses."""

    def __init__(
        self,
        *,
        classes: dict[str, Any],
        backbone: Literal["sam", "resnet18"] = "sam",
        encoder: str = "mobile_sam",
        weights: Literal["official", "random"] = "official",
        checkpoint: str | None = None,
        tiny_encoder: bool = False,
        freeze_encoder: bool = True,
        imagenet_weights: bool = False,
        decoder_channels: int = 64,
        window_size: int = 8,
        num_heads: int = 8,
        dropout: float = 0.1,
        adapter_reduction: int = 1,
        aux_head: bool = True,
        object_weight: float = 1.0,
        boundary_weight: float = 0.1,
        aux_weight: float = 0.4,
        class_weights: list[float] | None = None,
        optimizer: Literal["sgd", "adamw"] = "adamw",
        lr: float = 6e-4,
        momentum: float = 0.9,
        weight_decay: float = 0.01,
        chip_size: int = 512,
        bands: tuple[int, ...] | None = None,
        lora: str | None = None,
    ) -> None:
        """Build the model.

        Args:
            classes: the class table (``data.classes`` of the config, see
                :class:`~rs_sam.data.class_table.ClassTable`).
            backbone: ``sam`` (the registry ``encoder`` with conv adapters, the design's
                default: one encoder for change detection and segmentation) or ``resnet18``
                (UNetFormer's paper setting; fine-tuned, or frozen with ImageNet weights).
            encoder, weights, checkpoint, tiny_encoder: the SAM-family encoder.
            freeze_encoder: keep the encoder frozen (default) or fine-tune it too.
            object_weight, boundary_weight: SSRS's lambda_obj (1.0) and lambda_bdy (0.1);
                0 trains without that loss (the ablation).
            aux_head, aux_weight: UNetFormer's auxiliary head and its CE weight.
            chip_size, bands: recorded for inference.
            lora: a LoRA adapter from ``rs-sam train lora`` merged into the SAM encoder;
                recorded with its sha256.
        """
        super().__init__()
        self.save_hyperparameters()
        self.class_table = ClassTable.from_config(classes)
        self.configure_models()
        self.configure_losses()
        self.configure_metrics()

    def configure_models(self) -> None:
        hp = self.hparams
        encoder = None
        self.encoder_sha256 = None
        self.task_encoder: TaskEncoder | None = None
        if hp.backbone == "sam":
            self.task_encoder = load_task_encoder(
                hp.encoder,
                weights=hp.weights,
                checkpoint=hp.checkpoint,
                tiny=hp.tiny_encoder,
                lora=hp.lora,
            )
            encoder, self.encoder_sha256 = self.task_encoder.encoder, self.task_encoder.sha256
        elif hp.lora is not None:
            raise ConfigError("lora adapts a SAM-family encoder; remove it for backbone resnet18")
        self.model = UNetFormer(
            encoder,
            backbone=hp.backbone,
            num_classes=self.class_table.num_classes,
            decoder_channels=hp.decoder_channels,
            window_size=hp.window_size,
            num_heads=hp.num_heads,
            dropout=hp.dropout,
            adapter_reduction=hp.adapter_reduction,
            freeze_encoder=hp.freeze_encoder,
            aux_head=hp.aux_head,
            imagenet_weights=hp.imagenet_weights,
        )

    def configure_losses(self) -> None:
        hp = self.hparams
        self.criterion = SegmentationLoss(
            ignore_index=self.class_table.ignore_index,
            object_weight=hp.object_weight,
            boundary_weight=hp.boundary_weight,
            class_weights=hp.class_weights,
            aux_weight=hp.aux_weight,
        )

    def configure_metrics(self) -> None:
        n, ignore = self.class_table.num_classes, self.class_table.ignore_index
        self.val_metrics = MetricCollection(
            {
                "miou": MulticlassJaccardIndex(n, ignore_index=ignore, average="macro"),
                "oa": MulticlassAccuracy(n, ignore_index=ignore, average="micro"),
            },
            prefix="val/",
        )

    def forward(self, batch: dict[str, Any]) -> Tensor | tuple[Tensor, Tensor]:
        """Logits (and aux logits in training): cached encoder maps when present, else images."""
        if "features" in batch:
            return self.model.forward_features(batch["features"], tuple(batch["mask"].shape[-2:]))
        return self.model(batch["image"])

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        output = self(batch)
        logits, aux = output if isinstance(output, tuple) else (output, None)
        losses = self.criterion(
            logits,
            batch["mask"],
            objects=batch.get("objects"),
            boundary=batch.get("boundary"),
            aux_logits=aux,
        )
        batch_size = batch["mask"].shape[0]
        for name, value in losses.items():
            self.log(f"train/{name}", value, batch_size=batch_size, prog_bar=name == "loss")
        return losses["loss"]

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        logits = self(batch)
        assert isinstance(logits, Tensor)  # eval mode: no aux output
        losses = self.criterion(logits, batch["mask"])
        self.log("val/loss", losses["loss"], batch_size=batch["mask"].shape[0], sync_dist=True)
        self.val_metrics.update(logits.argmax(1), batch["mask"])

    def on_validation_epoch_end(self) -> None:
        # compute() gathers every rank's counts; sync_dist then averages equal values
        self.log_dict(self.val_metrics.compute(), prog_bar=True, sync_dist=True)
        self.val_metrics.reset()

    def metadata(self) -> HeadMetadata:
        """What a checkpoint records so the model can be rebuilt and used elsewhere."""
        hp = self.hparams
        sam = hp.backbone == "sam"
        return HeadMetadata(
            task="segment",
            encoder=hp.encoder if sam else "resnet18",
            encoder_weights="random" if hp.tiny_encoder or not sam else hp.weights,
            encoder_sha256=self.encoder_sha256,
            tiny_encoder=hp.tiny_encoder,
            input_size=self.model.encoder.input_size if sam else hp.chip_size,
            chip_size=hp.chip_size,
            bands=tuple(hp.bands) if hp.bands else None,
            normalisation="uint8 as is; other types: a 2-98 percentile stretch per band",
            freeze_encoder=hp.freeze_encoder,
            backbone=hp.backbone,
            lora_adapter=str(Path(hp.lora).resolve()) if hp.lora else None,
            lora_sha256=self.task_encoder.lora_sha256 if self.task_encoder else None,
            class_table=self.class_table.to_config(),
        )

    def encoder_rebuildable(self) -> bool:
        if self.hparams.backbone != "sam":  # ImageNet weights are rebuilt; random ones not
            return bool(self.hparams.freeze_encoder and self.hparams.imagenet_weights)
        return super().encoder_rebuildable()
