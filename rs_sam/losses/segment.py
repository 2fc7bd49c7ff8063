"""Losses of semantic segmentation with SAM-generated objects and boundaries (SSRS).

The method of Ma et al. (TGRS 2024, code sstary/SSRS): SAM's automatic masks of each chip give
an instance map of objects (SGO) and a boundary map (SGB); two unsupervised terms push the
segmentation network towards them, on top of cross-entropy::

    loss = CE + aux_weight * CE(aux) + object_weight * L_obj + boundary_weight * L_bdy

* :func:`object_consistency_loss`: inside each SAM object the predicted class distribution
  should be constant (MSE to the object's mean distribution).
* :func:`boundary_loss`: ``1 - F1`` between a soft, differentiable boundary of the prediction
  and the SAM boundary. The published code takes the prediction's boundary from the argmax,
  which has no gradient; here it is the morphological gradient of the softmax maps.

Shapes: logits ``(B, C, h, w)``; targets, objects and boundaries ``(B, H, W)``. Logits of
another resolution are bilinearly resized to the labels (UNetFormer already returns them at
the chip size). Pixels labelled ``ignore_index`` (unlabelled or nodata padding of the chip)
are left out of the SAM terms too: SAM's objects and edges there are not trustworthy.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rs_sam.data.labels import IGNORE
from rs_sam.errors import ConfigError

__all__ = ["SegmentationLoss", "boundary_loss", "object_consistency_loss", "soft_boundary"]

#: Keeps precision, recall, F1 and the CE mean finite when a sum is 0.
EPS = 1e-7


def object_consistency_loss(logits: Tensor, objects: Tensor) -> Tensor:
    """SSRS object consistency: MSE of each pixel's class distribution to its object's mean.

    With ``p_i = softmax(logits)_i`` (a ``C``-vector) and ``m_k`` the mean of ``p_i`` over the
    ``N_k`` pixels of object ``k``::

        L = (1 / sum_k N_k) * sum_k sum_{i in k} (1 / C) * ||p_i - m_k||^2

    i.e. the squared error averaged over classes and over all object pixels (large objects
    weigh more, as in the published code, which divides by all pixels instead). Objects are
    per image: the same id in two images of the batch is two objects.

    Args:
        logits: ``(B, C, h, w)`` class logits; resized to ``(H, W)`` when they differ.
        objects: ``(B, H, W)`` integer instance ids, 0 = no object (ignored pixels should be
            set to 0 by the caller).

    Returns:
        Scalar >= 0; 0 when the prediction is constant inside every object, and a 0 still
        connected to ``logits`` when there is no object pixel.
    """
    ids = _labels(objects, logits, name="objects")
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        raise ConfigError(f"objects must hold integer instance ids; got dtype {ids.dtype}")
    if bool((ids < 0).any()):
        raise ConfigError("objects holds negative ids: use 0 for 'no object' and 1.. for objects")
    prob = F.softmax(_resize(logits, ids.shape[-2:]), dim=1)
    classes = prob.shape[1]
    flat_prob = prob.permute(0, 2, 3, 1).reshape(-1, classes)  # (B*H*W, C)
    flat_ids = ids.reshape(ids.shape[0], -1).to(torch.int64)  # (B, H*W)
    # Distinct ids per image: offset each image's ids by the batch index times (max id + 1).
    stride = int(flat_ids.max()) + 1
    offsets = torch.arange(flat_ids.shape[0], device=flat_ids.device)[:, None] * stride
    keys = (flat_ids + offsets).reshape(-1)
    inside = flat_ids.reshape(-1) > 0
    if not bool(inside.any()):
        return prob.sum() * 0.0
    _, group = torch.unique(keys[inside], return_inverse=True)  # compact object index
    members = flat_prob[inside]  # (P, C)
    count = torch.bincount(group).to(members.dtype)  # (K,)
    total = members.new_zeros(count.shape[0], classes).index_add_(0, group, members)
    mean = total / count[:, None]  # (K, C)
    return (members - mean[group]).pow(2).mean()


def soft_boundary(prob: Tensor) -> Tensor:
    """Soft class boundary of class probabilities (differentiable).

    Per class, the 3x3 morphological gradient ``maxpool(p) - minpool(p)``; the boundary is its
    maximum over classes. For a one-hot map it is 1 on every pixel with a differently labelled
    8-neighbour (both sides of an edge, so 2 px wide) and 0 elsewhere; the image border is not
    a boundary.

    Args:
        prob: ``(B, C, H, W)`` probabilities in 0..1.

    Returns:
        ``(B, H, W)`` in 0..1.
    """
    dilated = F.max_pool2d(prob, kernel_size=3, stride=1, padding=1)
    eroded = -F.max_pool2d(-prob, kernel_size=3, stride=1, padding=1)
    return (dilated - eroded).amax(dim=1)


def boundary_loss(
    logits: Tensor,
    boundary: Tensor,
    ignore: Tensor | None = None,
    *,
    tolerance: int = 2,
) -> Tensor:
    """SSRS boundary preservation: ``1 - F1`` of the soft predicted boundary vs SAM's.

    With ``b`` = :func:`soft_boundary` of ``softmax(logits)``, ``g`` the SAM boundary and
    ``dilate`` a max-pool of side ``2 * tolerance + 1``, per image::

        P = sum(b * dilate(g)) / sum(b)          (predicted edges near a SAM edge)
        R = sum(dilate(b) * g) / sum(g)          (SAM edges near a predicted edge)
        F1 = 2 P R / (P + R),   loss = mean over images of (1 - F1)

    Sums run over pixels neither in ``ignore`` nor next to it (3x3). Images without a SAM
    boundary pixel are skipped (SAM found no edge there, which says nothing about the
    prediction).

    Args:
        logits: ``(B, C, h, w)`` class logits; resized to ``(H, W)`` when they differ.
        boundary: ``(B, H, W)`` SAM boundary, 1 on edges and 0 elsewhere (any dtype).
        ignore: ``(B, H, W)`` bool, True on pixels to leave out; None for none.
        tolerance: Distance in pixels within which edges match (0 = exact; the published
            code's 5x5 extension is 2).

    Returns:
        Scalar in ``[0, 1]``; 0 when every predicted edge lies within ``tolerance`` of a SAM
        edge and vice versa, and a 0 still connected to ``logits`` when no image has a SAM
        boundary.
    """
    if isinstance(tolerance, bool) or not isinstance(tolerance, int) or tolerance < 0:
        raise ConfigError(f"tolerance={tolerance!r} must be an integer >= 0 (pixels)")
    edges = _labels(boundary, logits, name="boundary")
    prob = F.softmax(_resize(logits, edges.shape[-2:]), dim=1)
    predicted = soft_boundary(prob)  # (B, H, W)
    target = (edges > 0).to(predicted.dtype)
    if ignore is not None:
        ignored = _labels(ignore, logits, name="ignore")
        if ignored.shape != edges.shape:
            raise ConfigError(
                f"ignore {tuple(ignored.shape)} and boundary {tuple(edges.shape)} differ"
            )
        # Also drop pixels next to an ignored one: their predicted edge depends on the
        # (unsupervised) prediction across the border.
        valid = 1 - _dilate(ignored.bool().to(predicted.dtype), 3)
    else:
        valid = torch.ones_like(target)
    target = target * valid
    predicted = predicted * valid
    kernel = 2 * tolerance + 1
    near_target = _dilate(target, kernel)
    near_predicted = _dilate(predicted, kernel)
    precision = (predicted * near_target).sum((1, 2)) / predicted.sum((1, 2)).clamp_min(EPS)
    recall = (near_predicted * target).sum((1, 2)) / target.sum((1, 2)).clamp_min(EPS)
    f1 = 2 * precision * recall / (precision + recall).clamp_min(EPS)
    has_edges = (target.sum((1, 2)) > 0).to(f1.dtype)
    if not bool(has_edges.any()):
        return prob.sum() * 0.0
    return ((1 - f1) * has_edges).sum() / has_edges.sum()


class SegmentationLoss(nn.Module):
    """Cross-entropy plus the SSRS object and boundary terms and UNetFormer's aux term.

    Args:
        ignore_index: Label of unlabelled pixels: no CE, and left out of the SAM terms.
        object_weight: Weight of :func:`object_consistency_loss` (1.0 in SSRS).
        boundary_weight: Weight of :func:`boundary_loss` (0.1 in SSRS).
        class_weights: Per-class CE weights (length ``C``, >= 0), None for uniform.
        aux_weight: Weight of the CE on the auxiliary logits (0.4 in UNetFormer).
    """

    class_weights: Tensor | None

    def __init__(
        self,
        *,
        ignore_index: int = IGNORE,
        object_weight: float = 1.0,
        boundary_weight: float = 0.1,
        class_weights: Sequence[float] | None = None,
        aux_weight: float = 0.4,
    ) -> None:
        super().__init__()
        if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
            raise ConfigError(f"ignore_index={ignore_index!r} must be an integer label")
        weights = {"object_weight": object_weight, "boundary_weight": boundary_weight}
        weights["aux_weight"] = aux_weight
        for name, value in weights.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
                raise ConfigError(f"{name}={value!r} must be a number >= 0 (0 drops the term)")
        weight: Tensor | None = None
        if class_weights is not None:
            values = [float(w) for w in class_weights]
            if not values or any(not w >= 0 for w in values) or not any(values):
                raise ConfigError(
                    f"class_weights={list(class_weights)!r} must be one weight >= 0 per class, "
                    "not all 0, or None for uniform"
                )
            weight = torch.tensor(values, dtype=torch.float32)
        self.ignore_index = ignore_index
        self.object_weight = float(object_weight)
        self.boundary_weight = float(boundary_weight)
        self.aux_weight = float(aux_weight)
        self.register_buffer("class_weights", weight, persistent=False)

    def forward(
        self,
        logits: Tensor,
        target: Tensor,
        objects: Tensor | None = None,
        boundary: Tensor | None = None,
        aux_logits: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """Loss terms of a batch.

        Args:
            logits: ``(B, C, h, w)`` class logits (resized to the target when they differ).
            target: ``(B, H, W)`` integer labels in ``0..C-1`` or ``ignore_index``.
            objects: ``(B, H, W)`` SAM instance ids (0 = none), or None to skip the term.
            boundary: ``(B, H, W)`` SAM boundary (1 = edge), or None to skip the term.
            aux_logits: ``(B, C, h', w')`` auxiliary logits, or None to skip the term.

        Returns:
            ``{"loss": total, "ce": ...}`` plus ``"object"``, ``"boundary"``, ``"aux"`` for
            the terms that are used (input given and weight > 0); all scalars.
        """
        labels = _labels(target, logits, name="target")
        if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
            raise ConfigError(f"target must hold integer class labels; got dtype {labels.dtype}")
        labels = labels.long()
        classes = logits.shape[1]
        ignored = labels == self.ignore_index
        invalid = ~ignored & ((labels < 0) | (labels >= classes))
        if bool(invalid.any()):
            values = torch.unique(labels[invalid])[:5].tolist()
            raise ConfigError(
                f"target holds {values}; labels must be 0..{classes - 1} or "
                f"{self.ignore_index} (ignored): remap the classes or set ignore_index"
            )
        if self.class_weights is not None and self.class_weights.numel() != classes:
            raise ConfigError(
                f"class_weights has {self.class_weights.numel()} weights but the logits have "
                f"{classes} classes: give one weight per class"
            )
        terms = {"ce": self._cross_entropy(logits, labels, ignored)}
        total = terms["ce"]
        if aux_logits is not None and self.aux_weight > 0:
            if aux_logits.ndim != 4 or aux_logits.shape[:2] != logits.shape[:2]:
                raise ConfigError(
                    f"aux_logits {tuple(aux_logits.shape)} must be (B, C, h, w) with B, C of "
                    f"logits {tuple(logits.shape)}"
                )
            terms["aux"] = self._cross_entropy(aux_logits, labels, ignored)
            total = total + self.aux_weight * terms["aux"]
        if objects is not None and self.object_weight > 0:
            ids = _labels(objects, logits, name="objects")
            if ids.shape != labels.shape:
                raise ConfigError(
                    f"objects {tuple(ids.shape)} and target {tuple(labels.shape)} differ"
                )
            terms["object"] = object_consistency_loss(logits, ids.masked_fill(ignored, 0))
            total = total + self.object_weight * terms["object"]
        if boundary is not None and self.boundary_weight > 0:
            terms["boundary"] = boundary_loss(logits, boundary, ignored)
            total = total + self.boundary_weight * terms["boundary"]
        return {"loss": total, **terms}

    def _cross_entropy(self, logits: Tensor, labels: Tensor, ignored: Tensor) -> Tensor:
        """Weighted mean CE over labelled pixels; a connected 0 when none is labelled."""
        logits = _resize(logits, labels.shape[-2:])
        safe = labels.masked_fill(ignored, 0)
        per_pixel = F.cross_entropy(logits, safe, reduction="none")  # (B, H, W)
        weight = (~ignored).to(per_pixel.dtype)
        if self.class_weights is not None:
            weight = weight * self.class_weights.to(per_pixel.dtype)[safe]
        return (per_pixel * weight).sum() / weight.sum().clamp_min(EPS)


def _dilate(x: Tensor, kernel: int) -> Tensor:
    """Max-pool ``(B, H, W)`` with a ``kernel x kernel`` window (identity for 1)."""
    if kernel == 1:
        return x
    return F.max_pool2d(x[:, None], kernel_size=kernel, stride=1, padding=kernel // 2)[:, 0]


def _labels(labels: Tensor, logits: Tensor, *, name: str) -> Tensor:
    """``(B, H, W)`` or ``(B, 1, H, W)`` maps -> ``(B, H, W)``, checked against the logits."""
    if logits.ndim != 4:
        raise ConfigError(f"logits have shape {tuple(logits.shape)}; expected (B, C, h, w)")
    if labels.ndim == 4 and labels.shape[1] == 1:
        labels = labels[:, 0]
    batch = logits.shape[0]
    if labels.ndim != 3 or labels.shape[0] != batch:
        raise ConfigError(
            f"{name} has shape {tuple(labels.shape)}; expected (B, H, W) with B = {batch}"
        )
    return labels


def _resize(x: Tensor, size: Sequence[int]) -> Tensor:
    """Bilinear resize of ``(B, C, h, w)`` logits to ``size`` (no-op when already there)."""
    size = (int(size[0]), int(size[1]))
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
