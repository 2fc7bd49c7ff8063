"""SamLP LoRA fine-tuning of SAM as a Lightning task (``rs-sam train lora``).

SamLP (Ding et al. 2024) adapts SAM to one kind of object in two stages:

* **Stage 1**: LoRA (rank 2) on the q/v projections of the image encoder's attention (with
  ``decoder: true`` also on the mask decoder's attention), trained with the Dice loss averaged
  over the decoder's THREE multimask outputs, with no prompt at all: the prompt encoder's
  "no prompt" embedding (``prompt_encoder(points=None, boxes=None, masks=None)``).
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
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import Tensor, nn

from rs_sam.errors import ConfigError
from rs_sam.models.encoders import FrozenEncoder, load_encoder
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
    decoder_part_prefixes,
    embed_trainable,
    load_adapter,
    read_adapter_metadata,
    save_adapter,
    set_lora_train_mode,
    set_trainable,
)
from rs_sam.training.head_task import HeadTask

log = logging.getLogger(__name__)

IGNORE = 255
STAGE2_PREFIXES = ("prompt_encoder.",)
_DECODER = "mask_decoder."
_LORA_DEFAULTS = LoraSettings()  # SamLP: rank 2, q and v, no dropout, image encoder only
_SMOOTH = 1.0


# ----------------------------------------------------------------------------- loss


def multimask_dice_loss(
    logits: Tensor,
    target: Tensor,
    *,
    reduction: Literal["batch", "chip"] = "batch",
    ignore_index: int = IGNORE,
    smooth: float = _SMOOTH,
) -> Tensor:
    """SamLP's loss: the soft Dice loss of each multimask output, averaged over the outputs.

    Args:
        logits: ``(B, K, H, W)`` mask logits (K = 3 multimask outputs).
        target: ``(B, H, W)`` 0/1 with ``ignore_index`` where unlabelled.
        reduction: ``batch``: one Dice per output over all chips of the batch (the default: in
            remote sensing many chips hold no target, and a chip-wise Dice gives those no
            useful gradient, so it drifts towards predicting the target everywhere);
            ``chip``: one Dice per chip and output, averaged (images that all hold the
            target, as SamLP's licence plates).
        smooth: Added to numerator and denominator (no target and no foreground: loss 0).

    Returns:
        Scalar: the mean over the K outputs (and chips) of
        ``1 - (2|P T| + s) / (|P| + |T| + s)``, ``P = sigmoid(logits)`` on labelled pixels.
    """
    if logits.ndim != 4 or target.shape != (logits.shape[0], *logits.shape[2:]):
        raise ValueError(
            f"logits (B, K, H, W) and target (B, H, W) do not match: {tuple(logits.shape)} vs "
            f"{tuple(target.shape)}"
        )
    if reduction not in ("batch", "chip"):
        raise ConfigError(f"Dice reduction {reduction!r} must be 'batch' or 'chip'")
    valid = (target != ignore_index).unsqueeze(1).to(logits.dtype)
    truth = (target == 1).unsqueeze(1).to(logits.dtype) * valid
    prob = torch.sigmoid(logits) * valid
    dims = (0, 2, 3) if reduction == "batch" else (2, 3)
    inter = (prob * truth).sum(dims)
    total = prob.sum(dims) + truth.sum(dims)
    dice = (2 * inter + smooth) / (total + smooth)
    return (1 - dice).mean()


# ----------------------------------------------------------------------------- prompts


@dataclass(frozen=True)
class Prompts:
    """SAM prompts of one chip, in the model input's pixel frame.

    Attributes:
        boxes: ``(N, 4)`` XYXY boxes, or None.
        points: ``(N, P, 2)`` XY foreground points, or None.
    """

    boxes: Tensor | None
    points: Tensor | None

    @property
    def count(self) -> int:
        source = self.boxes if self.boxes is not None else self.points
        return 0 if source is None else int(source.shape[0])


def prompts_from_masks(
    logits: Tensor,
    *,
    input_size: int,
    mode: Literal["regions", "mask"] = "regions",
    box: bool = True,
    points: int = 1,
    max_prompts: int = 16,
    min_area: int = 2,
    rng: np.random.Generator | None = None,
) -> list[Prompts | None]:
    """Box and point prompts from predicted low-resolution masks (stage 2).

    Args:
        logits: ``(B, h, w)`` mask logits in the decoder's low-resolution frame (a square
            ``h = w`` covering the model input).
        input_size: Side of the model input (prompt coordinates are in its pixels).
        mode: ``regions``: a prompt per 8-connected region of ``logits > 0`` (the largest
            ``max_prompts``, regions under ``min_area`` pixels dropped); ``mask``: one prompt
            for all of it.
        box: Give each prompt the box around its pixels.
        points: Foreground points per prompt, drawn inside its pixels. Without ``rng``
            (validation) the first is the region's most interior pixel and the rest are drawn
            with a fixed seed, so prompts are deterministic.
        rng: Random generator for the points (training).

    Returns:
        One :class:`Prompts` per chip, None where the mask is empty (decode without prompts).
    """
    if not box and points < 1:
        raise ConfigError("stage-2 prompts need a box or at least one point; set box or points")
    fixed = rng is None
    rng = np.random.default_rng(0) if rng is None else rng
    array = (logits.detach() > 0).cpu().numpy()
    size = array.shape[-1]
    scale = input_size / size
    structure = np.ones((3, 3), dtype=bool)
    out: list[Prompts | None] = []
    for mask in array:
        if mode == "regions":
            labels, count = ndimage.label(mask, structure=structure)
        else:
            labels, count = mask.astype(np.int32), int(mask.any())
        if count == 0:
            out.append(None)
            continue
        areas = np.bincount(labels.ravel(), minlength=count + 1)[1:]
        order = [i + 1 for i in np.argsort(-areas, kind="stable") if areas[i] >= min_area]
        order = order[:max_prompts]
        if not order:
            out.append(None)
            continue
        slices = ndimage.find_objects(labels)
        distance = ndimage.distance_transform_edt(mask) if fixed and points > 0 else None
        boxes, coords = [], []
        for region in order:
            rows, cols = slices[region - 1]
            if box:
                boxes.append(
                    [
                        cols.start * scale,
                        rows.start * scale,
                        cols.stop * scale - 1,
                        rows.stop * scale - 1,
                    ]
                )
            if points > 0:
                ys, xs = np.nonzero(labels[rows, cols] == region)
                picks = list(rng.integers(0, len(ys), size=points))
                if distance is not None:
                    inside = distance[rows, cols][ys, xs]
                    picks[0] = int(np.argmax(inside))
                coords.append(
                    [
                        [
                            (xs[i] + cols.start + 0.5) * scale - 0.5,
                            (ys[i] + rows.start + 0.5) * scale - 0.5,
                        ]
                        for i in picks
                    ]
                )
        out.append(
            Prompts(
                boxes=torch.tensor(boxes, dtype=torch.float32) if box else None,
                points=torch.tensor(coords, dtype=torch.float32) if points > 0 else None,
            )
        )
    return out


# ----------------------------------------------------------------------------- model


class LoraSam(nn.Module):
    """A SAM-family encoder carrying LoRA, with SamLP's forward passes.

    Args:
        encoder: The encoder (its ``prompt_encoder`` and ``mask_decoder`` are SAM's).
    """

    def __init__(self, encoder: FrozenEncoder) -> None:
        super().__init__()
        self.encoder = encoder

    def embed(self, images: Tensor, *, trainable: bool) -> Tensor:
        """The image embedding, with autograd through the image encoder's LoRA or without."""
        if trainable:
            return embed_trainable(self.encoder, images)
        return self.encoder.embed(images)

    def decode(self, embedding: Tensor, prompts: Sequence[Prompts | None] | None = None) -> Tensor:
        """Multimask low-resolution logits ``(B, 3, 4g, 4g)`` of ``(B, C, g, g)`` embeddings.

        A chip without prompts uses the no-prompt embedding; a chip with ``N`` prompts gets
        the maximum of their ``N`` masks (their union at threshold 0).
        """
        prompt_encoder: Any = self.encoder.prompt_encoder  # segment_anything's, untyped
        decoder: Any = self.encoder.mask_decoder
        assert prompt_encoder is not None and decoder is not None
        image_pe = prompt_encoder.get_dense_pe()
        device = embedding.device
        outputs = []
        for index in range(embedding.shape[0]):
            prompt = None if prompts is None else prompts[index]
            if prompt is None or prompt.count == 0:
                sparse, dense = prompt_encoder(points=None, boxes=None, masks=None)
            else:
                point_input = None
                if prompt.points is not None:
                    coords = prompt.points.to(device)
                    labels = torch.ones(coords.shape[:2], dtype=torch.int64, device=device)
                    point_input = (coords, labels)
                boxes = None if prompt.boxes is None else prompt.boxes.to(device)
                sparse, dense = prompt_encoder(points=point_input, boxes=boxes, masks=None)
            masks, _ = decoder(
                image_embeddings=embedding[index : index + 1],
                image_pe=image_pe,
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=True,
            )
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
        hp = self.hparams
        if hp.stage not in (1, 2) or isinstance(hp.stage, bool):
            raise ConfigError(f"model.stage={hp.stage!r} must be 1 or 2")
        if hp.stage == 1:
            for key in ("stage1_adapter", "iterations"):
                if hp[key] is not None:
                    raise ConfigError(
                        f"model.{key} is for stage 2; remove it or set model.stage: 2"
                    )
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
        encoder = load_encoder(
            hp.encoder,
            weights="random" if random else hp.weights,
            checkpoint=hp.checkpoint,
            tiny=hp.tiny_encoder,
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
            parts = _part_prefixes(encoder, hp.decoder_parts)
            apply_lora(encoder, settings)
            self.extra_prefixes: tuple[str, ...] = parts
            set_trainable(encoder, extra_prefixes=parts)
        else:
            settings, parts = self._load_stage1(encoder, given)
            self.extra_prefixes = (*STAGE2_PREFIXES, *parts)
            set_trainable(
                encoder, image_encoder=False, mask_decoder=True, extra_prefixes=self.extra_prefixes
            )
        self.decoder_parts = tuple(p[len(_DECODER) : -1] for p in parts)
        self.lora = settings
        self.model = LoraSam(encoder)

    def _load_stage1(
        self, encoder: FrozenEncoder, given: dict[str, Any]
    ) -> tuple[LoraSettings, tuple[str, ...]]:
        """Load the stage-1 adapter: its LoRA settings and the decoder parts it trained."""
        hp = self.hparams
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
        parts = tuple(p for p in prefixes if p.startswith(_DECODER))
        asked = hp.decoder_parts
        if asked is not None and set(_part_prefixes(encoder, asked)) != set(parts):
            raise ConfigError(
                f"stage 2 takes its decoder parts from {path.name} "
                f"({[p[len(_DECODER) : -1] for p in parts]}); the config sets "
                f"decoder_parts={list(hp.decoder_parts)!r}: remove it"
            )
        settings = load_adapter(path, encoder, base_checkpoint=hp.checkpoint)
        recorded = metadata.get("base_digest")
        if self.base_digest is not None and recorded is not None and recorded != self.base_digest:
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
        self.stage1_record = record
        return settings, parts

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
                or _is_lora_name(k)
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
        embedding = self.model.embed(images, trainable=stage1 and self.training)
        passes = [self.model.decode(embedding)]
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
            passes.append(self.model.decode(embedding, prompts))
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
        self.log("val/loss", loss, batch_size=mask.shape[0])
        final = upsampled[-1]
        k = self.hparams.output_mask
        self._count("", final[:, k] > 0, mask)
        self._count("_best3", _best_of(final > 0, mask), mask)
        if len(upsampled) > 1:
            self._count("_unprompted", upsampled[0][:, k] > 0, mask)

    def _count(self, name: str, pred: Tensor, mask: Tensor) -> None:
        counts = confusion_counts(pred, mask)
        self._counts[name] = self._counts.get(name, torch.zeros_like(counts)) + counts

    def on_validation_epoch_end(self) -> None:
        values = {}
        for name, (tp, fp, fn) in getattr(self, "_counts", {}).items():
            values[f"val/dice{name}"] = (2 * tp / (2 * tp + fp + fn).clamp(min=1)).item()
            values[f"val/iou{name}"] = (tp / (tp + fp + fn).clamp(min=1)).item()
        for name, value in values.items():
            self.log(name, value, prog_bar=name == "val/dice")
        self._counts = {}

    # ------------------------------------------------------------------ LoRA dropout
    def on_train_epoch_start(self) -> None:
        if self.lora.dropout > 0:
            set_lora_train_mode(self.encoder, True)

    def on_validation_model_train(self) -> None:
        super().on_validation_model_train()
        if self.lora.dropout > 0:
            set_lora_train_mode(self.encoder, True)


# ----------------------------------------------------------------------------- helpers


def confusion_counts(pred: Tensor, mask: Tensor, ignore_index: int = IGNORE) -> Tensor:
    """``[TP, FP, FN]`` (float64) of boolean ``pred`` against 0/1 ``mask`` on labelled pixels."""
    valid = mask != ignore_index
    truth = (mask == 1) & valid
    pred = pred & valid
    return torch.stack(
        [(pred & truth).sum(), (pred & ~truth & valid).sum(), (~pred & truth).sum()]
    ).to(torch.float64)


def _best_of(preds: Tensor, mask: Tensor) -> Tensor:
    """Per chip, the one of the ``(B, K, H, W)`` boolean masks with the highest Dice."""
    valid = (mask != IGNORE).unsqueeze(1)
    truth = (mask == 1).unsqueeze(1) & valid
    pred = preds & valid
    tp = (pred & truth).flatten(2).sum(-1).double()
    wrong = (pred ^ truth).flatten(2).sum(-1).double()
    dice = torch.where(2 * tp + wrong > 0, 2 * tp / (2 * tp + wrong).clamp(min=1), 1.0)
    best = dice.argmax(1)
    return preds[torch.arange(preds.shape[0]), best]


def _part_prefixes(encoder: FrozenEncoder, parts: Any) -> tuple[str, ...]:
    """``model.decoder_parts`` as ``extra_prefixes`` (None: none), with one-line errors."""
    if parts is None:
        return ()
    try:
        return decoder_part_prefixes(encoder, parts)
    except ConfigError as err:
        raise ConfigError(f"model.decoder_parts: {err}") from err


def _is_lora_name(name: str) -> bool:
    return any(part.startswith("lora_") for part in name.split("."))


def base_digest(encoder: FrozenEncoder) -> str:
    """sha256 of the base SAM weights (no LoRA), to recognise random weights again."""
    digest = hashlib.sha256()
    sam: nn.Module = encoder.sam  # type: ignore[assignment]
    for name, tensor in sorted(sam.state_dict().items()):
        if _is_lora_name(name):
            continue
        name = name.replace(".base_layer.", ".")  # peft's wrapped Linear, same weights
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


__all__ = [
    "LoraSam",
    "LoraTask",
    "Prompts",
    "base_digest",
    "confusion_counts",
    "multimask_dice_loss",
    "prompts_from_masks",
]
