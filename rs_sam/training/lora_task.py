"""SamLP LoRA fine-tuning of SAM as a Lightning task (``rs-sam train lora``).

SamLP (Ding et al. 2024) adapts SAM to one kind of object in two stages:

* **Stage 1**: LoRA (rank 2) on the q/v projections of the image encoder's attention (with
  ``decoder: true`` also on the mask decoder's attention), trained with the Dice loss averaged
  over the decoder's THREE multimask outputs, with no prompt at all: the prompt encoder's
  "no prompt" embedding (no points, boxes or masks).
  ``decoder_parts`` (e.g. ``[output_upscaling, output_hypernetworks_mlps]``) also trains those
  parts of the mask decoder in full, as SAMed fine-tunes its decoder; they are saved in the
  adapter. With random base weights this is what lets the tiny demo learn at all: the frozen
  random mask heads cannot turn adapted features into a building mask.
* **Stage 2** ("promptable fine-tuning"): the stage-1 adapter is loaded and the image encoder
  and its LoRA are frozen; the prompt encoder (in full) and the mask decoder's LoRA train (and
  the stage-1 ``decoder_parts``, if any).
  Pass 0 decodes without prompts; pass ``i`` (1..``iterations``) decodes with prompts taken
  from pass ``i - 1``'s first mask (> 0): per connected region of it (``prompt: regions``,
  at most ``max_prompts``, the largest first) or for the whole mask (``prompt: mask``), a box
  around it and ``points`` foreground points inside it. The masks of a chip's prompts are
  merged by their maximum logit. The loss is the mean multimask Dice of all passes: the
  no-prompt pass shares the decoder's LoRA and starts the chain at inference too, so it keeps
  being trained.

Validation logs ``val/dice`` and ``val/iou`` of the first multimask output (index
``output_mask``) at logit threshold 0, over all labelled pixels of the validation set (the
last pass in stage 2), ``val/dice_best3``/``val/iou_best3`` of the best of the three masks per
chip (an oracle choice), ``val/loss``, and in stage 2 ``val/dice_unprompted`` (pass 0).

Checkpoints: Lightning's ``last.ckpt``/``best.ckpt`` carry :class:`HeadMetadata` with
``task="lora"``; with official weights they hold only the LoRA tensors and the parts trained
in full (``decoder_parts``; in stage 2 the prompt encoder too). :meth:`LoraTask.export_adapter`
writes the small adapter file (:func:`~rs_sam.models.lora.save_adapter`) that ``rs-sam segment
--lora`` loads; ``rs-sam train lora`` writes ``<run>/adapter.pt`` from ``best.ckpt`` at the end
of a run.

Random base weights (tests, demos) cannot be rebuilt from a name: the adapter's metadata then
records ``base_digest`` (sha256 of the base weights), and stage 2 refuses a stage-1 adapter
whose digest differs (same encoder and same ``seed`` give the same weights).

Prompts come from :mod:`rs_sam.training.mask_prompts`, the loss and scores from
:mod:`rs_sam.losses.mask`, stage handling from :mod:`rs_sam.training.lora_stages`;
decoding is :class:`~rs_sam.models.decoding.SamDecoder`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rs_sam.data.labels import IGNORE
from rs_sam.errors import ConfigError
from rs_sam.losses.mask import best_of, confusion_counts, multimask_dice_loss
from rs_sam.models.decoding import ChipFeatures, SamDecoder
from rs_sam.models.encoders import FrozenEncoder
from rs_sam.models.head_file import (
    CHECKPOINT_KEY,
    HeadMetadata,
    encoder_fingerprint,
    read_head_checkpoint,
)
from rs_sam.models.lora import (
    LoraSettings,
    apply_lora,
    count_lora_parameters,
    save_adapter,
    set_lora_train_mode,
    set_trainable,
)
from rs_sam.models.recipe import ModelRecipe, build_encoder
from rs_sam.training.distributed import sum_over_ranks
from rs_sam.training.head_task import HeadTask
from rs_sam.training.lora_stages import (
    DECODER_PREFIX,
    STAGE2_PREFIXES,
    base_digest,
    check_stage_arguments,
    is_lora_name,
    load_stage1,
    part_prefixes,
)
from rs_sam.training.mask_prompts import Prompts, prompts_from_masks

log = logging.getLogger(__name__)

#: Suffixes of the val/dice*, val/iou* scores: last pass, best of the 3 masks, pass 0.
_SCORES = ("", "_best3", "_unprompted")
_LORA_DEFAULTS = LoraSettings()  # SamLP: rank 2, q and v, no dropout, image encoder only


# ----------------------------------------------------------------------------- model


class LoraSam(nn.Module):
    """A SAM-family encoder carrying LoRA, with SamLP's forward passes.

    Args:
        encoder: The encoder (its ``prompt_encoder`` and ``mask_decoder`` are SAM's).
    """

    def __init__(self, encoder: FrozenEncoder) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = SamDecoder.for_encoder(encoder)  # not a module: holds the encoder's

    def features(self, images: Tensor, *, trainable: bool) -> ChipFeatures:
        """The image embedding (and SAM 2's high-resolution features), with autograd through
        the image encoder's LoRA or without."""
        return self.decoder.features(images, trainable=trainable)

    def decode(
        self, features: ChipFeatures, prompts: Sequence[Prompts | None] | None = None
    ) -> Tensor:
        """Multimask low-resolution logits ``(B, 3, 4g, 4g)`` of ``B`` chips' features.

        A chip without prompts uses the no-prompt embedding; a chip with ``N`` prompts gets
        the maximum of their ``N`` masks (their union at threshold 0).
        """
        device = features.embedding.device
        outputs = []
        for index in range(features.embedding.shape[0]):
            prompt = None if prompts is None else prompts[index]
            points = boxes = None
            if prompt is not None and prompt.count > 0:
                points = None if prompt.points is None else prompt.points.to(device)
                boxes = None if prompt.boxes is None else prompt.boxes.to(device)
            masks = self.decoder.decode_train(
                features.row(index),
                points=points,
                boxes=boxes,
                multimask=True,
            ).logits
            outputs.append(masks.amax(0, keepdim=True))
        return torch.cat(outputs)


# ----------------------------------------------------------------------------- task


class LoraTask(HeadTask):
    """SamLP stage 1 (LoRA on the image encoder) or stage 2 (promptable fine-tuning)."""

    def __init__(
        self,
        *,
        encoder: str = "mobile_sam",
        weights: Literal["official", "random"] = "official",
        checkpoint: str | None = None,
        tiny_encoder: bool = False,
        rank: int | None = None,
        alpha: float | None = None,
        dropout: float | None = None,
        targets: list[str] | None = None,
        decoder: bool | None = None,
        decoder_parts: list[str] | None = None,
        stage: Literal[1, 2] = 1,
        stage1_adapter: str | None = None,
        iterations: int | None = None,
        prompt: Literal["regions", "mask"] = "regions",
        box: bool = True,
        points: int = 1,
        max_prompts: int = 16,
        output_mask: int = 0,
        dice: Literal["batch", "chip"] = "batch",
        optimizer: Literal["sgd", "adamw"] = "adamw",
        lr: float = 0.005,
        momentum: float = 0.9,
        weight_decay: float = 1e-4,
        chip_size: int = 1024,
        bands: tuple[int, ...] | None = None,
        target: str = "foreground",
    ) -> None:
        """Build the encoder and inject (stage 1) or load (stage 2) the LoRA.

        Args:
            encoder, weights, checkpoint, tiny_encoder: The SAM-family encoder
                (``sam_vit_*``, ``mobile_sam``); ``tiny_encoder`` builds the reduced random
                test configuration.
            rank, alpha, dropout, targets, decoder: :class:`~rs_sam.models.lora.LoraSettings`
                (stage 1; unset = SamLP's rank 2 on q and v, image encoder only). Stage 2
                takes them from ``stage1_adapter``; values given must agree with it.
            decoder_parts: Parts of the mask decoder trained IN FULL beside the LoRA in
                stage 1 (e.g. ``[output_upscaling, output_hypernetworks_mlps]``, as SAMed
                fine-tunes its decoder; see :func:`~rs_sam.models.lora.decoder_parts`); they
                are saved in the adapter. Stage 2 takes them from ``stage1_adapter`` and keeps
                training them with the mask decoder's LoRA.
            stage: 1 or 2 (see the module docstring).
            stage1_adapter: The stage-1 ``adapter.pt`` (stage 2 only; trained with
                ``decoder: true``).
            iterations: Prompted refinement passes of stage 2 (default 1).
            prompt, box, points, max_prompts: How stage 2 turns a mask into prompts (see
                :func:`prompts_from_masks`).
            output_mask: Which multimask output is the prediction (validation, adapters).
            dice: Dice reduction of the loss (see :func:`multimask_dice_loss`).
            optimizer, lr, momentum, weight_decay: See :class:`HeadTask` (SamLP: lr 0.005).
            chip_size, bands: Recorded for inference (set from ``data:``).
            target: The class the masks mark (set from ``data.target``).
        """
        super().__init__()
        self.save_hyperparameters()
        self._check_arguments()
        self.configure_models()

    # ------------------------------------------------------------------ construction
    def _check_arguments(self) -> None:
        check_stage_arguments(self.hparams)

    def _settings(self) -> dict[str, Any]:
        hp = self.hparams
        given = {
            key: hp[key]
            for key in ("rank", "alpha", "dropout", "targets", "decoder")
            if hp[key] is not None
        }
        if "targets" in given:
            given["targets"] = tuple(given["targets"])
        return given

    def configure_models(self) -> None:
        hp = self.hparams
        random = bool(hp.tiny_encoder) or hp.weights == "random"
        encoder = build_encoder(
            ModelRecipe(
                hp.encoder,
                weights="random" if random else hp.weights,
                checkpoint=hp.checkpoint,
                device="cpu",  # Lightning moves the task to its device
                tiny=bool(hp.tiny_encoder),
            )
        )
        if encoder.prompt_encoder is None or encoder.mask_decoder is None:
            raise ConfigError(
                f"LoRA fine-tuning needs a SAM-family encoder with a mask decoder; "
                f"'{hp.encoder}' has none: use e.g. 'mobile_sam' or 'sam_vit_b'"
            )
        self.encoder_sha256 = encoder_fingerprint(encoder, hp.checkpoint)
        self.base_digest = base_digest(encoder) if encoder.random_weights else None
        given = self._settings()
        self.stage1_record: dict[str, Any] | None = None
        if hp.stage == 1:
            settings = LoraSettings(**{**_LORA_DEFAULTS.to_dict(), **given})
            parts = part_prefixes(encoder, hp.decoder_parts)
            apply_lora(encoder, settings)
            self.extra_prefixes: tuple[str, ...] = parts
            set_trainable(encoder, extra_prefixes=parts)
        else:
            settings, parts, self.stage1_record = load_stage1(hp, encoder, given, self.base_digest)
            self.extra_prefixes = (*STAGE2_PREFIXES, *parts)
            set_trainable(
                encoder, image_encoder=False, mask_decoder=True, extra_prefixes=self.extra_prefixes
            )
        self.decoder_parts = tuple(p[len(DECODER_PREFIX) : -1] for p in parts)
        self.lora = settings
        self.model = LoraSam(encoder)

    # ------------------------------------------------------------------ description
    @property
    def encoder(self) -> FrozenEncoder:
        encoder: FrozenEncoder = self.model.encoder
        return encoder

    def summary(self) -> str:
        """One line: stage, LoRA settings and trainable parameter counts."""
        info = count_lora_parameters(self.encoder)
        trained = (
            "image-encoder LoRA" + (" + mask-decoder LoRA" if self.lora.decoder else "")
            if self.hparams.stage == 1
            else "mask-decoder LoRA + prompt encoder"
        )
        if self.decoder_parts:
            trained += " + mask decoder's " + ", ".join(self.decoder_parts)
        return (
            f"LoRA stage {self.hparams.stage} on {self.hparams.encoder} (rank {self.lora.rank}, "
            f"{'/'.join(self.lora.targets)}): {info.trainable:,} trainable parameters "
            f"({trained}) of {info.total:,} ({100 * info.trainable_fraction:.3f} %)"
        )

    def metadata(self) -> HeadMetadata:
        hp = self.hparams
        random = self.encoder.random_weights
        return HeadMetadata(
            task="lora",
            encoder=hp.encoder,
            encoder_weights="random" if random else "official",
            encoder_sha256=self.encoder_sha256,
            tiny_encoder=hp.tiny_encoder,
            input_size=self.encoder.input_size,
            chip_size=hp.chip_size,
            bands=tuple(hp.bands) if hp.bands else None,
            normalisation="uint8 as is; other types: a 2-98 percentile stretch per band",
            freeze_encoder=True,
            class_table={
                "classes": [{"name": "background"}, {"name": hp.target}],
                "ignore_index": IGNORE,
            },
        )

    def adapter_metadata(self) -> dict[str, Any]:
        """JSON values recorded in the adapter file (what inference needs besides tensors)."""
        hp = self.hparams
        values: dict[str, Any] = {
            "task": "lora",
            "stage": hp.stage,
            "target": hp.target,
            "chip_size": hp.chip_size,
            "bands": list(hp.bands) if hp.bands else None,
            "output_mask": hp.output_mask,
            "normalisation": "uint8 as is; other types: a 2-98 percentile stretch per band",
            "base_digest": self.base_digest,
            "decoder_parts": list(self.decoder_parts),
        }
        if hp.stage == 2:
            values["iterations"] = self.iterations
            values["prompt"] = {
                "mode": hp.prompt,
                "box": hp.box,
                "points": hp.points,
                "max_prompts": hp.max_prompts,
            }
            values["stage1_adapter"] = Path(hp.stage1_adapter).name
        return values

    @property
    def iterations(self) -> int:
        return 0 if self.hparams.stage == 1 else int(self.hparams.iterations or 1)

    # ------------------------------------------------------------------ adapter export
    def export_adapter(
        self,
        path: str | Path,
        *,
        checkpoint: str | Path | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Path:
        """Write the adapter file (LoRA, the ``decoder_parts``, and the prompt encoder in stage 2).

        Args:
            path: Output ``.pt`` (its folder must exist).
            checkpoint: A checkpoint of this run (e.g. ``best.ckpt``) whose weights to write;
                None writes the current weights.
            metadata: Extra JSON values (e.g. the validation score).
        """
        if checkpoint is not None:
            _, _, state = read_head_checkpoint(checkpoint)
            self.load_state_dict(dict(state))
        return save_adapter(
            path,
            self.encoder,
            base_checkpoint=self.hparams.checkpoint,
            extra_prefixes=self.extra_prefixes,
            metadata={**self.adapter_metadata(), **(metadata or {})},
        )

    # ------------------------------------------------------------------ checkpoints
    def encoder_rebuildable(self) -> bool:
        return not self.encoder.random_weights

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Official base weights are rebuilt from the registry: keep only what LoRA training
        # changed (LoRA, decoder_parts; the prompt encoder in stage 2). Random ones stay in full.
        if self.encoder_rebuildable():
            prefix = "model.encoder.sam."
            extra = tuple(prefix + p for p in self.extra_prefixes)
            checkpoint["state_dict"] = {
                k: v
                for k, v in checkpoint["state_dict"].items()
                if not k.startswith("model.encoder.")
                or is_lora_name(k)
                or (extra and k.startswith(extra))
            }
        checkpoint[CHECKPOINT_KEY] = self.metadata().to_dict()

    # ------------------------------------------------------------------ forward
    def forward(self, images: Tensor, *, rng: np.random.Generator | None = None) -> list[Tensor]:
        """Low-resolution multimask logits of every pass: ``[(B, 3, h, w), ...]``.

        Stage 1: one pass without prompts. Stage 2: pass 0 without prompts, then
        ``iterations`` prompted passes (prompts from the previous pass's output mask).
        """
        stage1 = self.hparams.stage == 1
        features = self.model.features(images, trainable=stage1 and self.training)
        passes = [self.model.decode(features)]
        for _ in range(self.iterations):
            previous = passes[-1][:, self.hparams.output_mask]
            prompts = prompts_from_masks(
                previous,
                input_size=self.encoder.input_size,
                mode=self.hparams.prompt,
                box=self.hparams.box,
                points=self.hparams.points,
                max_prompts=self.hparams.max_prompts,
                rng=rng,
            )
            passes.append(self.model.decode(features, prompts))
        return passes

    def _losses(self, passes: list[Tensor], mask: Tensor) -> tuple[Tensor, list[Tensor]]:
        size = tuple(mask.shape[-2:])
        upsampled = [
            F.interpolate(p, size=size, mode="bilinear", align_corners=False) for p in passes
        ]
        losses = [multimask_dice_loss(u, mask, reduction=self.hparams.dice) for u in upsampled]
        return torch.stack(losses).mean(), upsampled

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        rng = None
        if self.hparams.stage == 2:
            rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, ()).item()))
        passes = self(batch["image"], rng=rng)
        loss, _ = self._losses(passes, batch["mask"])
        self.log("train/loss", loss, batch_size=batch["mask"].shape[0], prog_bar=True)
        return loss

    # ------------------------------------------------------------------ validation
    def on_validation_epoch_start(self) -> None:
        self._counts: dict[str, Tensor] = {}
        if self.lora.dropout > 0:
            set_lora_train_mode(self.encoder, False)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        mask = batch["mask"]
        passes = self(batch["image"])
        loss, upsampled = self._losses(passes, mask)
        self.log("val/loss", loss, batch_size=mask.shape[0], sync_dist=True)
        final = upsampled[-1]
        k = self.hparams.output_mask
        self._count("", final[:, k] > 0, mask)
        self._count("_best3", best_of(final > 0, mask), mask)
        if len(upsampled) > 1:
            self._count("_unprompted", upsampled[0][:, k] > 0, mask)

    def _count(self, name: str, pred: Tensor, mask: Tensor) -> None:
        counts = confusion_counts(pred, mask)
        self._counts[name] = self._counts.get(name, torch.zeros_like(counts)) + counts

    def on_validation_epoch_end(self) -> None:
        # TP, FP, FN and "counted" of each score, summed over the ranks: all log the same
        counts = getattr(self, "_counts", {})
        none = torch.zeros(4, dtype=torch.float64)
        table = torch.stack(
            [torch.cat([counts[n].cpu(), none[:1] + 1]) if n in counts else none for n in _SCORES]
        )
        values = {}
        for name, (tp, fp, fn, counted) in zip(_SCORES, sum_over_ranks(self, table), strict=True):
            if counted:
                values[f"val/dice{name}"] = (2 * tp / (2 * tp + fp + fn).clamp(min=1)).item()
                values[f"val/iou{name}"] = (tp / (tp + fp + fn).clamp(min=1)).item()
        for name, value in values.items():
            self.log(name, value, prog_bar=name == "val/dice", sync_dist=True)
        self._counts = {}

    def has_unused_parameters(self) -> bool:
        # Stage 2 trains the whole prompt encoder, but its mask-prompt path is never used.
        return self.hparams.stage == 2

    # ------------------------------------------------------------------ LoRA dropout
    def on_train_epoch_start(self) -> None:
        if self.lora.dropout > 0:
            set_lora_train_mode(self.encoder, True)

    def on_validation_model_train(self) -> None:
        super().on_validation_model_train()
        if self.lora.dropout > 0:
            set_lora_train_mode(self.encoder, True)


__all__ = ["LoraSam", "LoraTask"]
