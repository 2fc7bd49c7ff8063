"""Losses of supervised change detection with SAM-CD.

* BCE on the change logit, averaged over labelled pixels (``pos_weight`` for rare change).
* Optional soft Dice on the change probability, over the whole batch: a batch without change
  still penalises false alarms (the smoothing term keeps it finite).
* The temporal constraint of SAM-CD: on pixels labelled unchanged, the two dates' latent-class
  distributions ``softmax(logits / T)`` should point the same way (cosine similarity 1).
  Changed and ignored pixels are left free. Unlike the published ``CosineEmbeddingLoss``
  (which averages over all pixels, changed ones contributing 0), the mean here is over the
  unchanged pixels only, so the term does not shrink as the change fraction grows.

Targets are ``(B, H, W)`` integers: 0 unchanged, 1 changed, ``ignore_index`` (255) unlabelled.
Predictions of another resolution are bilinearly resized (as logits) to the targets.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rs_sam.data.labels import IGNORE
from rs_sam.errors import ConfigError
from rs_sam.models.samcd import SamCDOutput

__all__ = ["ChangeLoss", "temporal_consistency_loss"]

#: Smoothing of the soft Dice (in pixels).
DICE_SMOOTH = 1.0


def temporal_consistency_loss(
    semantic_a: Tensor,
    semantic_b: Tensor,
    change: Tensor,
    *,
    temperature: float = 3.0,
    ignore_index: int | None = IGNORE,
) -> Tensor:
    """SAM-CD's temporal constraint: ``mean(1 - cos(p_a, p_b))`` over unchanged pixels.

    Args:
        semantic_a: ``(B, k, h, w)`` latent-class logits of date a.
        semantic_b: ``(B, k, h, w)`` latent-class logits of date b.
        change: ``(B, H, W)`` (or ``(B, 1, H, W)``) labels; pixels equal to 0 (and not
            ``ignore_index``) are unchanged. Logits are bilinearly resized to ``(H, W)``.
        temperature: ``T`` in ``softmax(logits / T)``; must be > 1 (softens the
            distributions, SAM-CD uses 3).
        ignore_index: Label of unlabelled pixels, or None.

    Returns:
        Scalar in ``[0, 1]``: 0 when the distributions agree on every unchanged pixel, and a
        differentiable 0 when there is no unchanged pixel.
    """
    if not temperature > 1:
        raise ConfigError(f"temperature={temperature!r} must be > 1 (SAM-CD uses 3.0)")
    if semantic_a.ndim != 4 or semantic_a.shape != semantic_b.shape:
        raise ConfigError(
            f"semantic_a {tuple(semantic_a.shape)} and semantic_b {tuple(semantic_b.shape)} "
            "must be (B, k, h, w) logits of the same shape"
        )
    labels = _labels(change, batch=semantic_a.shape[0], name="change")
    size = (int(labels.shape[-2]), int(labels.shape[-1]))
    prob_a = F.softmax(_resize(semantic_a, size) / temperature, dim=1)
    prob_b = F.softmax(_resize(semantic_b, size) / temperature, dim=1)
    cosine = F.cosine_similarity(prob_a, prob_b, dim=1)  # (B, H, W)
    unchanged = labels == 0
    if ignore_index is not None:
        unchanged &= labels != ignore_index
    weight = unchanged.to(cosine.dtype)
    return ((1 - cosine) * weight).sum() / weight.sum().clamp(min=1)


class ChangeLoss(nn.Module):
    """Weighted sum of BCE, soft Dice and the temporal constraint on a :class:`SamCDOutput`.

    Args:
        bce_weight: Weight of the BCE on the change logit.
        dice_weight: Weight of the soft Dice on the change probability.
        temporal_weight: Weight of :func:`temporal_consistency_loss`.
        temperature: ``T`` of the temporal constraint (> 1).
        pos_weight: BCE weight of changed pixels (e.g. unchanged/changed ratio), None for 1.
        ignore_index: Label of unlabelled pixels, excluded from every term.
    """

    pos_weight: Tensor | None

    def __init__(
        self,
        *,
        bce_weight: float = 1.0,
        dice_weight: float = 0.0,
        temporal_weight: float = 1.0,
        temperature: float = 3.0,
        pos_weight: float | None = None,
        ignore_index: int = IGNORE,
    ) -> None:
        super().__init__()
        weights = {"bce_weight": bce_weight, "dice_weight": dice_weight}
        weights["temporal_weight"] = temporal_weight
        for name, value in weights.items():
            if not value >= 0:
                raise ConfigError(f"{name}={value!r} must be >= 0")
        if not any(weights.values()):
            raise ConfigError("bce_weight, dice_weight and temporal_weight are all 0: set one > 0")
        if not temperature > 1:
            raise ConfigError(f"temperature={temperature!r} must be > 1 (SAM-CD uses 3.0)")
        if pos_weight is not None and not pos_weight > 0:
            raise ConfigError(f"pos_weight={pos_weight!r} must be > 0, or None for 1")
        if ignore_index in (0, 1):
            raise ConfigError(f"ignore_index={ignore_index} collides with the labels 0 and 1")
        self.bce_weight = float(bce_weight)
        self.dice_weight = float(dice_weight)
        self.temporal_weight = float(temporal_weight)
        self.temperature = float(temperature)
        self.ignore_index = ignore_index
        weight = None if pos_weight is None else torch.tensor(float(pos_weight))
        self.register_buffer("pos_weight", weight, persistent=False)

    def forward(self, output: SamCDOutput, target: Tensor) -> dict[str, Tensor]:
        """Loss terms of a batch.

        Args:
            output: Model output; its maps are resized to the target when they differ.
            target: ``(B, H, W)`` integer labels: 0 unchanged, 1 changed, ``ignore_index``.

        Returns:
            ``{"loss": total, "bce": ..., "dice": ..., "temporal": ...}`` scalars (every term
            is computed, whatever its weight, so it can be logged).
        """
        labels = _labels(target, batch=output.change.shape[0], name="target")
        invalid = (labels != 0) & (labels != 1) & (labels != self.ignore_index)
        if bool(invalid.any()):
            values = torch.unique(labels[invalid])[:5].tolist()
            raise ConfigError(
                f"target holds {values}; labels must be 0 (unchanged), 1 (changed) or "
                f"{self.ignore_index} (ignored): map 0/255 masks to 0/1 first"
            )
        size = (int(labels.shape[-2]), int(labels.shape[-1]))
        logits = _resize(output.change, size)[:, 0]  # (B, H, W)
        valid = (labels != self.ignore_index).to(logits.dtype)
        positive = (labels == 1).to(logits.dtype)

        per_pixel = F.binary_cross_entropy_with_logits(
            logits, positive, pos_weight=self.pos_weight, reduction="none"
        )
        bce = (per_pixel * valid).sum() / valid.sum().clamp(min=1)
        prob = torch.sigmoid(logits) * valid
        overlap = (prob * positive).sum()
        dice = 1 - (2 * overlap + DICE_SMOOTH) / (prob.sum() + positive.sum() + DICE_SMOOTH)
        temporal = temporal_consistency_loss(
            output.semantic_a,
            output.semantic_b,
            labels,
            temperature=self.temperature,
            ignore_index=self.ignore_index,
        )
        total = self.bce_weight * bce + self.dice_weight * dice + self.temporal_weight * temporal
        return {"loss": total, "bce": bce, "dice": dice, "temporal": temporal}


def _labels(labels: Tensor, *, batch: int, name: str) -> Tensor:
    """``(B, H, W)`` or ``(B, 1, H, W)`` labels -> ``(B, H, W)``, checked against ``batch``."""
    if labels.ndim == 4 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 3 or labels.shape[0] != batch:
        raise ConfigError(
            f"{name} has shape {tuple(labels.shape)}; expected (B, H, W) labels with B = {batch}"
        )
    return labels


def _resize(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear resize of ``(B, C, h, w)`` logits to ``size`` (no-op when already there)."""
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
