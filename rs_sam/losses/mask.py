"""Losses and scores of binary masks (target 1, background 0, ``IGNORE`` unlabelled).

Shared by the SAM fine-tuning tasks: SamLP's multimask Dice (LoRA), HQ-SAM's BCE + Dice of
one mask per object, and the confusion counts, best-of-K choice and per-object (boundary) IoU
of their validation.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from rs_sam.data.labels import IGNORE
from rs_sam.errors import ConfigError

__all__ = [
    "BOUNDARY_DILATION",
    "best_of",
    "confusion_counts",
    "hq_mask_loss",
    "multimask_dice_loss",
    "object_ious",
]

#: Smoothing of the soft Dice losses (in pixels).
_SMOOTH = 1.0
#: Boundary IoU's band width, as a fraction of the chip diagonal (the official 0.02).
BOUNDARY_DILATION = 0.02


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


def hq_mask_loss(
    logits: Tensor,
    targets: Tensor,
    *,
    bce_weight: float = 1.0,
    dice_weight: float = 1.0,
    ignore_index: int = IGNORE,
) -> tuple[Tensor, Tensor, Tensor]:
    """BCE + Dice of one mask per object, on labelled pixels, averaged over objects.

    Args:
        logits: ``(N, 1, h, w)`` low-resolution logits; upsampled bilinearly to the targets'
            size when it differs.
        targets: ``(N, H, W)`` 0/1 with ``ignore_index`` where unlabelled.

    Returns:
        ``(loss, bce, dice)``: ``bce`` is the mean over objects of the mean BCE of their
        labelled pixels, ``dice`` the mean of ``1 - (2|P T| + 1) / (|P| + |T| + 1)`` with
        ``P = sigmoid(logits)`` (the official ``dice_loss``), ``loss`` their weighted sum.
    """
    if logits.ndim != 4 or logits.shape[1] != 1 or targets.shape[0] != logits.shape[0]:
        raise ValueError(
            f"logits (N, 1, h, w) and targets (N, H, W) do not match: "
            f"{tuple(logits.shape)} vs {tuple(targets.shape)}"
        )
    size = tuple(targets.shape[-2:])
    if tuple(logits.shape[-2:]) != size:
        logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
    logits = logits[:, 0]
    valid = (targets != ignore_index).to(logits.dtype)
    truth = (targets == 1).to(logits.dtype)
    count = valid.flatten(1).sum(-1).clamp(min=1)
    bce_map = F.binary_cross_entropy_with_logits(logits, truth, reduction="none")
    bce = ((bce_map * valid).flatten(1).sum(-1) / count).mean()
    prob = torch.sigmoid(logits) * valid
    inter = (prob * truth).flatten(1).sum(-1)
    total = prob.flatten(1).sum(-1) + (truth * valid).flatten(1).sum(-1)
    dice = (1 - (2 * inter + _SMOOTH) / (total + _SMOOTH)).mean()
    return bce_weight * bce + dice_weight * dice, bce, dice


def _boundary(mask: Tensor, width: int) -> Tensor:
    """Pixels of boolean ``(N, H, W)`` masks within ``width`` of their edge (image edge too)."""
    m = mask.to(torch.float32).unsqueeze(1)
    padded = F.pad(m, (width, width, width, width), value=0.0)
    eroded = 1 - F.max_pool2d(1 - padded, kernel_size=2 * width + 1, stride=1)
    return (m - eroded).squeeze(1) > 0


def object_ious(
    pred: Tensor, targets: Tensor, *, ignore_index: int = IGNORE
) -> tuple[Tensor, Tensor]:
    """Mask IoU and boundary IoU of each object on labelled pixels.

    Args:
        pred: ``(N, H, W)`` boolean predicted masks.
        targets: ``(N, H, W)`` 0/1 with ``ignore_index`` where unlabelled.

    Returns:
        ``(iou, boundary_iou)``, each ``(N,)`` float64. The boundary band is
        ``max(1, round(0.02 * diagonal))`` pixels wide (the official ``boundary_iou``).
    """
    valid = targets != ignore_index
    truth = (targets == 1) & valid
    pred = pred & valid
    inter = (pred & truth).flatten(1).sum(-1).double()
    union = (pred | truth).flatten(1).sum(-1).double()
    iou = torch.where(union > 0, inter / union.clamp(min=1), 1.0)
    height, width = targets.shape[-2:]
    band = max(1, round(BOUNDARY_DILATION * float(np.hypot(height, width))))
    truth_b = _boundary(truth, band) & valid
    pred_b = _boundary(pred, band) & valid
    b_inter = (pred_b & truth_b).flatten(1).sum(-1).double()
    b_union = (pred_b | truth_b).flatten(1).sum(-1).double()
    biou = torch.where(b_union > 0, b_inter / b_union.clamp(min=1), 1.0)
    return iou, biou


def confusion_counts(pred: Tensor, mask: Tensor, ignore_index: int = IGNORE) -> Tensor:
    """``[TP, FP, FN]`` (float64) of boolean ``pred`` against 0/1 ``mask`` on labelled pixels."""
    valid = mask != ignore_index
    truth = (mask == 1) & valid
    pred = pred & valid
    return torch.stack(
        [(pred & truth).sum(), (pred & ~truth & valid).sum(), (~pred & truth).sum()]
    ).to(torch.float64)


def best_of(preds: Tensor, mask: Tensor) -> Tensor:
    """Per chip, the one of the ``(B, K, H, W)`` boolean masks with the highest Dice."""
    valid = (mask != IGNORE).unsqueeze(1)
    truth = (mask == 1).unsqueeze(1) & valid
    pred = preds & valid
    tp = (pred & truth).flatten(2).sum(-1).double()
    wrong = (pred ^ truth).flatten(2).sum(-1).double()
    dice = torch.where(2 * tp + wrong > 0, 2 * tp / (2 * tp + wrong).clamp(min=1), 1.0)
    best = dice.argmax(1)
    return preds[torch.arange(preds.shape[0]), best]
