"""HQ-SAM training (Ke et al., 2023) as a Lightning task (``rs-sam train hq``).

HQ-SAM keeps ALL of SAM frozen (image encoder, prompt encoder, the SAM part of the mask
decoder) and learns only what ``segment_anything_hq``'s ``MaskDecoderHQ`` adds
(:data:`~rs_sam.training.hq_weights.HQ_MODULES`): the HQ output token ``hf_token``, its
3-layer MLP ``hf_mlp``, and the global-local fusion ``compress_vit_feat`` (early ViT
features), ``embedding_encoder`` (the image embedding) and ``embedding_maskfeature`` (SAM's
upscaled decoder features). For ViT-B
that is 1,071,104 parameters (the official module's HQ-only parameters).

The task builds the HQ variant of the registry (``sam_hq_vit_b``...) and fills its SAM parts
from a PLAIN SAM checkpoint of the same backbone (``sam_vit_b_01ec64.pth``; ``base_checkpoint``
None = the registry's official file): every key of the plain file loads and exactly the HQ
keys stay missing, which then train from their initialisation. An HQ-SAM checkpoint of the
same backbone (``sam_hq_vit_b.pth``) is accepted too: the HQ parts then continue from it.

Training, per chip (as the official ``train/train.py``, per image):

* Objects: the 8-connected regions of the chip's target mask (at least ``min_area`` pixels);
  up to ``max_objects`` random ones per chip. Each object's target is that region (1), the
  other labelled pixels (other objects included) 0, unlabelled pixels ignored (255).
* Prompt: ONE kind drawn at random per chip among ``prompt_types``, for all its objects:
  ``box`` (the object's box, each side jittered as the official ``misc.box_noise`` with scale
  ``box_noise``: centre by up to ``box_noise`` x half the size, size by up to ``box_noise`` x
  the size), ``point`` (``points`` random foreground pixels of the object), ``mask`` (the
  object mask at the prompt encoder's mask resolution, made coarse and noisy as the official
  ``misc.masks_noise``: Gaussian noise on the band where an 8x down/up-sampled copy differs,
  thresholded at 0.5; given to SAM as logits +/-
  :data:`~rs_sam.training.mask_prompts.MASK_PROMPT_LOGIT`).
* Loss: ``bce_weight`` x BCE + ``dice_weight`` x Dice of the HQ token's mask alone
  (``hq="only"``: the official training's ``hq_token_only=True``), its low-resolution logits
  upsampled bilinearly to the chip, on labelled pixels, averaged over objects.

Validation (the official evaluation): every object of each chip, prompted by its exact box.
``val/iou`` (best checkpoint) and ``val/biou`` are the mean per-object mask IoU and boundary
IoU (dilation 2 % of the chip diagonal) of the HQ mask at logit 0; ``val/iou_sam`` and
``val/biou_sam`` the same for SAM's own single-mask output on the same prompts (the frozen
baseline); ``val/loss``; ``val/objects``.

Checkpoints: with a rebuildable base (official weights) ``last.ckpt``/``best.ckpt`` hold only
the HQ parameters and :class:`HeadMetadata` with ``task="hq"`` (``encoder`` the HQ name,
``encoder_sha256`` that of the plain base file). :func:`export_hq_checkpoint` writes the whole
model as an official HQ-SAM state dict (the key set of ``segment_anything_hq``'s
``sam_model_registry[...]``), which loads strictly into the official model and into the
registry's ``sam_hq_*`` encoder (``rs-sam segment --encoder sam_hq_vit_b --checkpoint ... --hq``).

Prompt sampling is :mod:`rs_sam.training.mask_prompts`, the losses and scores
:mod:`rs_sam.losses.mask`, the HQ parameters and base weights
:mod:`rs_sam.training.hq_weights`; decoding is :class:`~rs_sam.models.decoding.SamDecoder`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rs_sam.checkpoints import file_sha256, resolve_checkpoint
from rs_sam.data.labels import IGNORE
from rs_sam.errors import CheckpointError, ConfigError
from rs_sam.losses.mask import hq_mask_loss, object_ious
from rs_sam.models.decoding import DEFAULT_HQ_CHUNK, ChipFeatures, SamDecoder
from rs_sam.models.encoders import FrozenEncoder, get_encoder
from rs_sam.models.encoders.sam import HQ_BACKBONES
from rs_sam.models.head_file import CHECKPOINT_KEY, HeadMetadata, read_head_checkpoint
from rs_sam.training.distributed import sum_over_ranks, world_size, zero_loss
from rs_sam.training.head_task import HeadTask
from rs_sam.training.hq_weights import is_hq_key, load_base_weights, set_hq_trainable
from rs_sam.training.mask_prompts import PROMPT_TYPES, ObjectPrompts, sample_prompts

log = logging.getLogger(__name__)

_NORMALISATION = "uint8 as is; other types: a 2-98 percentile stretch per band"


# ----------------------------------------------------------------------------- model


class HqSam(nn.Module):
    """An HQ-SAM registry encoder whose HQ parameters train, with HQ-SAM's decoding.

    Args:
        encoder: A ``sam_hq_*`` encoder (its ``hq_decoder`` is ``MaskDecoderHQ``).
    """

    def __init__(self, encoder: FrozenEncoder) -> None:
        super().__init__()
        self.encoder = encoder
        # the HQ token alone, as the official training's hq_token_only=True
        self.decoder = SamDecoder.for_encoder(encoder, hq="only")

    def decode(
        self, embedding: Tensor, interm: Tensor, prompts: ObjectPrompts, *, chunk: int | None = None
    ) -> tuple[Tensor, Tensor]:
        """Low-resolution logits ``(N, 1, 4E, 4E)`` of the HQ token and of SAM's single mask.

        Args:
            embedding: ``(1, C, E, E)`` SAM image embedding of the chip.
            interm: ``(1, D, E, E)`` its early-layer features.
            prompts: The chip's prompts (on the embedding's device).
            chunk: Objects decoded together (None: all at once).
        """
        points = labels = None
        if prompts.points is not None:
            points = prompts.points
            labels = torch.ones(points.shape[:2], dtype=torch.int64, device=points.device)
        decoded = self.decoder.decode_train(
            ChipFeatures(embedding, interm),
            points=points,
            labels=labels,
            boxes=prompts.boxes,
            masks=prompts.masks,
            multimask=False,
            chunk=chunk,
        )
        assert decoded.sam_logits is not None  # HQ decoding gives SAM's own logits too
        return decoded.logits, decoded.sam_logits


# ----------------------------------------------------------------------------- task


class HqTask(HeadTask):
    """HQ-SAM training: SAM frozen, the HQ token, its MLP and the feature fusion learn."""

    def __init__(
        self,
        *,
        encoder: str = "sam_hq_vit_b",
        base_checkpoint: str | None = None,
        weights: Literal["official", "random"] = "official",
        tiny_encoder: bool = False,
        prompt_types: Sequence[str] = PROMPT_TYPES,
        points: int = 10,
        box_noise: float = 0.1,
        max_objects: int = 4,
        min_area: int = 16,
        bce_weight: float = 1.0,
        dice_weight: float = 1.0,
        optimizer: Literal["sgd", "adamw"] = "adamw",
        lr: float = 1e-3,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        chip_size: int = 1024,
        bands: tuple[int, ...] | None = None,
        target: str = "foreground",
    ) -> None:
        """Build the HQ-SAM model, load the SAM weights and unfreeze the HQ parameters.

        Args:
            encoder: An HQ-SAM registry name: ``sam_hq_vit_b``/``l``/``h``, ``sam_hq_vit_tiny``.
            base_checkpoint: The plain SAM file of the same backbone (``sam_vit_b_01ec64.pth``
                for ``sam_hq_vit_b``, ``mobile_sam.pt`` for ``sam_hq_vit_tiny``), or an HQ-SAM
                file of it to continue from; None: the registry's official plain file.
            weights: ``official`` (load the base) or ``random`` (tests, demos).
            tiny_encoder: The reduced random test configuration (implies random weights).
            prompt_types: Prompt kinds drawn from per training chip (``box``, ``point``,
                ``mask``; the paper uses all three).
            points: Foreground points of a ``point`` prompt (official: 10).
            box_noise: Box jitter scale (0 = exact boxes).
            max_objects: Objects (connected regions of the target) decoded per training chip.
            min_area: Smallest object, in chip pixels.
            bce_weight, dice_weight: Loss weights (official: 1 and 1).
            optimizer, lr, momentum, weight_decay: See :class:`HeadTask` (official: Adam,
                lr 1e-3, no weight decay).
            chip_size, bands: Recorded for inference (set from ``data:``).
            target: The class the masks mark (set from ``data.target``).
        """
        super().__init__()
        if isinstance(prompt_types, str):
            prompt_types = [prompt_types]
        self.save_hyperparameters()
        self.hparams.prompt_types = list(prompt_types)
        self._check_arguments()
        self.configure_models()
        log.info(self.summary())

    # ------------------------------------------------------------------ construction
    def _check_arguments(self) -> None:
        hp = self.hparams
        spec = get_encoder(hp.encoder)  # an unknown name fails here, in one line
        if not spec.hq:
            hq_name = next((k for k, v in HQ_BACKBONES.items() if v == hp.encoder), None)
            fix = f"'{hq_name}'" if hq_name else "one of " + ", ".join(HQ_BACKBONES)
            raise ConfigError(
                f"model.encoder '{hp.encoder}' is not an HQ-SAM encoder: HQ training builds one "
                f"and fills its SAM part from the plain weights; set model.encoder: {fix}"
            )
        if hp.weights not in ("official", "random"):
            raise ConfigError(f"model.weights={hp.weights!r} must be 'official' or 'random'")
        if hp.base_checkpoint is not None and (hp.weights == "random" or hp.tiny_encoder):
            raise ConfigError(
                "model.base_checkpoint is set but the weights are random (weights: random or "
                "tiny_encoder: true); remove one of them"
            )
        kinds = list(hp.prompt_types)
        unknown = [k for k in kinds if k not in PROMPT_TYPES]
        if not kinds or unknown or len(set(kinds)) != len(kinds):
            raise ConfigError(
                f"model.prompt_types={kinds!r} must list some of {', '.join(PROMPT_TYPES)}, "
                "each once"
            )
        for key, low in (("points", 1), ("max_objects", 1), ("min_area", 1)):
            value = hp[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"model.{key}={value!r} must be an integer >= {low}")
        for key in ("box_noise", "bce_weight", "dice_weight", "lr"):
            value = hp[key]
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ConfigError(f"model.{key}={value!r} must be a number >= 0")
        if hp.bce_weight == 0 and hp.dice_weight == 0:
            raise ConfigError("model.bce_weight and model.dice_weight are both 0: nothing to train")

    def configure_models(self) -> None:
        hp = self.hparams
        spec = get_encoder(hp.encoder)
        encoder: FrozenEncoder = spec.builder(spec, tiny=bool(hp.tiny_encoder)).freeze()
        self.base_encoder = HQ_BACKBONES[hp.encoder]
        self.encoder_sha256: str | None = None
        self.initialised_hq = True  # HQ parameters from their initialisation
        if not (hp.tiny_encoder or hp.weights == "random"):
            path = resolve_checkpoint(get_encoder(self.base_encoder), hp.base_checkpoint)
            missing = load_base_weights(encoder, path)
            self.initialised_hq = bool(missing)
            known = get_encoder(self.base_encoder).checkpoint.sha256
            self.encoder_sha256 = (
                known if hp.base_checkpoint is None and known else file_sha256(path)
            )
        set_hq_trainable(encoder)
        self.model = HqSam(encoder)

    # ------------------------------------------------------------------ description
    @property
    def encoder(self) -> FrozenEncoder:
        encoder: FrozenEncoder = self.model.encoder
        return encoder

    def count_trainable(self) -> int:
        """Number of parameters that train (the HQ ones)."""
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad)

    def summary(self) -> str:
        """One line: what trains, and how many parameters of how many."""
        total = sum(p.numel() for p in self.model.parameters())
        trainable = self.count_trainable()
        start = "initialisation" if self.initialised_hq else "the base checkpoint"
        weights = "RANDOM" if self.encoder.random_weights else f"'{self.base_encoder}'"
        return (
            f"HQ-SAM on {self.hparams.encoder} ({weights} SAM weights, frozen): "
            f"{trainable:,} trainable parameters (HQ token, its MLP, feature fusion; from "
            f"{start}) of {total:,} ({100 * trainable / total:.3f} %)"
        )

    def metadata(self) -> HeadMetadata:
        hp = self.hparams
        return HeadMetadata(
            task="hq",
            encoder=hp.encoder,
            encoder_weights="random" if self.encoder.random_weights else "official",
            encoder_sha256=self.encoder_sha256,
            tiny_encoder=bool(hp.tiny_encoder),
            input_size=self.encoder.input_size,
            chip_size=hp.chip_size,
            bands=tuple(hp.bands) if hp.bands else None,
            normalisation=_NORMALISATION,
            freeze_encoder=True,
            class_table={
                "classes": [{"name": "background"}, {"name": hp.target}],
                "ignore_index": IGNORE,
            },
        )

    # ------------------------------------------------------------------ checkpoints
    def encoder_rebuildable(self) -> bool:
        return not self.encoder.random_weights

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # The frozen SAM weights are rebuilt from the base checkpoint: keep the HQ ones.
        # (Random weights cannot be rebuilt: those runs keep everything.)
        if self.encoder_rebuildable():
            checkpoint["state_dict"] = {
                k: v
                for k, v in checkpoint["state_dict"].items()
                if not k.startswith("model.encoder.") or is_hq_key(k)
            }
        checkpoint[CHECKPOINT_KEY] = self.metadata().to_dict()

    # ------------------------------------------------------------------ steps
    def _prompts(
        self, masks: Tensor, *, rng: np.random.Generator | None
    ) -> list[ObjectPrompts | None]:
        hp = self.hparams
        mask_size = int(self.encoder.prompt_encoder.mask_input_size[0])  # type: ignore[union-attr]
        out = []
        for mask in masks:
            training = rng is not None
            kind = str(rng.choice(hp.prompt_types)) if training else "box"  # type: ignore[union-attr]
            prompts = sample_prompts(
                mask,
                kind=kind,
                input_size=self.encoder.input_size,
                mask_size=mask_size,
                points=hp.points,
                box_noise=hp.box_noise if training else 0.0,
                max_objects=hp.max_objects if training else None,
                min_area=hp.min_area,
                rng=rng,
            )
            out.append(None if prompts is None else prompts.to(masks.device))
        return out

    def forward(
        self, images: Tensor, prompts: Sequence[ObjectPrompts | None], *, chunk: int | None = None
    ) -> list[tuple[Tensor, Tensor] | None]:
        """Per chip, ``(hq_logits, sam_logits)`` ``(N, 1, 4E, 4E)`` of its objects (or None)."""
        keep = [i for i, p in enumerate(prompts) if p is not None]
        out: list[tuple[Tensor, Tensor] | None] = [None] * len(prompts)
        if not keep:
            return out
        embedding, interm = self.encoder.embed_hq(images[keep])  # frozen: no grad
        for row, index in enumerate(keep):
            chip_prompts = prompts[index]
            assert chip_prompts is not None
            out[index] = self.model.decode(
                embedding[row : row + 1], interm[row : row + 1], chip_prompts, chunk=chunk
            )
        return out

    def _loss(self, logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        hp = self.hparams
        return hq_mask_loss(logits, targets, bce_weight=hp.bce_weight, dice_weight=hp.dice_weight)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor | None:
        rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, ()).item()))
        prompts = self._prompts(batch["mask"], rng=rng)
        decoded = self(batch["image"], prompts)
        logits = [d[0] for d in decoded if d is not None]
        if not logits:  # no object in this batch: nothing to learn, the step is skipped
            return zero_loss(self) if world_size(self) > 1 else None  # (DDP: all ranks step)
        targets = [p.targets for p in prompts if p is not None]
        loss, bce, dice = self._loss(torch.cat(logits), torch.cat(targets))
        count = sum(t.shape[0] for t in targets)
        self.log("train/loss", loss, batch_size=count, prog_bar=True)
        self.log("train/bce", bce, batch_size=count)
        self.log("train/dice_loss", dice, batch_size=count)
        return loss

    def on_validation_epoch_start(self) -> None:
        self._scores: dict[str, list[Tensor]] = {}

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        prompts = self._prompts(batch["mask"], rng=None)
        decoded = self(batch["image"], prompts, chunk=DEFAULT_HQ_CHUNK)
        for chip_prompts, result in zip(prompts, decoded, strict=True):
            if chip_prompts is None or result is None:
                continue
            targets = chip_prompts.targets
            size = tuple(targets.shape[-2:])
            for name, logits in (("", result[0]), ("_sam", result[1])):
                up = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
                iou, biou = object_ious(up[:, 0] > 0, targets)
                self._add(f"iou{name}", iou)
                self._add(f"biou{name}", biou)
            loss, _, _ = self._loss(result[0], targets)
            self._add("loss", loss.detach().double().expand(targets.shape[0]))

    def _add(self, name: str, values: Tensor) -> None:
        self._scores.setdefault(name, []).append(values.detach().cpu())

    def on_validation_epoch_end(self) -> None:
        # Sum and count of each score over the objects of all ranks: every rank logs the same.
        names = ("iou", "biou", "iou_sam", "biou_sam", "loss")
        scores = {k: torch.cat(v).double() for k, v in getattr(self, "_scores", {}).items()}
        totals = torch.tensor(
            [
                [float(scores[n].sum()), scores[n].numel()] if n in scores else [0.0, 0]
                for n in names
            ],
            dtype=torch.float64,
        )
        totals = sum_over_ranks(self, totals)
        objects = int(totals[0, 1])
        if objects == 0 and self.global_rank == 0:
            log.warning("the validation chips hold no object of the target: val/iou is 0")
        for name, (total, count) in zip(names, totals.tolist(), strict=True):
            value = total / count if count else 0.0
            self.log(f"val/{name}", value, prog_bar=name == "iou", sync_dist=True)
        self.log("val/objects", float(objects), sync_dist=True)
        self._scores = {}


# ----------------------------------------------------------------------------- export


def load_hq_task(checkpoint: str | Path) -> HqTask:
    """Rebuild an :class:`HqTask` from a ``.ckpt`` of ``rs-sam train hq``.

    The SAM weights come from the base checkpoint the run recorded (official weights; its
    sha256 is checked) or from the file itself (random weights).

    Raises:
        CheckpointError: Not an HQ training checkpoint, or the base weights available now
            are not those the run trained on.
    """
    metadata, hparams, state = read_head_checkpoint(checkpoint)
    if metadata.task != "hq":
        raise CheckpointError(
            f"{checkpoint} is a '{metadata.task}' checkpoint, not one of `rs-sam train hq`"
        )
    task = HqTask(**hparams)
    if task.encoder_sha256 != metadata.encoder_sha256:
        raise CheckpointError(
            f"{checkpoint} was trained on base weights with sha256 {metadata.encoder_sha256} "
            f"but model.base_checkpoint now gives {task.encoder_sha256}; use the base "
            "checkpoint it was trained with"
        )
    task.load_state_dict(dict(state))
    return task


def export_hq_checkpoint(source: HqTask | str | Path, path: str | Path) -> Path:
    """Write the whole HQ-SAM model as an official HQ-SAM state dict (``sam_hq_vit_b.pth``).

    The keys are exactly those of ``segment_anything_hq``'s ``sam_model_registry[...]()``
    (``image_encoder.*``, ``prompt_encoder.*``, ``mask_decoder.*`` with the HQ keys): the
    file loads strictly into the official model, and into this registry's ``sam_hq_*``
    encoder (``load_encoder('sam_hq_vit_b', checkpoint=path)``).

    Args:
        source: A task, or a ``.ckpt`` written by ``rs-sam train hq``.
        path: Output file (its folder must exist); written atomically.
    """
    task = source if isinstance(source, HqTask) else load_hq_task(source)
    path = Path(path)
    sam: nn.Module = task.encoder.sam  # type: ignore[assignment]
    state = {k: v.detach().cpu() for k, v in sam.state_dict().items()}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(state, tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


__all__ = [
    "HqSam",
    "HqTask",
    "export_hq_checkpoint",
    "load_hq_task",
]
