"""SAM automatic mask proposals from a chip's features, batched over prompts.

A regular grid of single-point prompts is decoded in batches by a
:class:`~rs_sam.models.decoding.SamDecoder` (on CPU the fast decoder, an exact reorganisation
of the official forward). Unlike the official automatic mask generator, masks stay at the
decoder's low resolution (4x the embedding side, 256x256 for a 1024 input) and nothing is
run-length encoded: filtering (predicted IoU, stability), box NMS and everything downstream
work on boolean low-resolution masks.

With an HQ-SAM decoder (``hq="add"`` or ``"only"``) each point gives, as in HQ-SAM's automatic
mask generator, one mask: the best-IoU ambiguity mask plus the HQ token's logits, or the HQ
token's logits alone; the fused HQ features are computed once per image.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torchvision.ops import batched_nms

from rs_sam.models.decoding import ChipFeatures, SamDecoder


@dataclass(frozen=True)
class ProposalSettings:
    """Knobs of automatic mask generation (defaults follow AnyChange's library)."""

    points_per_side: int = 16
    points_per_batch: int = 64
    pred_iou_thresh: float = 0.5
    stability_thresh: float = 0.95
    stability_offset: float = 1.0
    box_nms_thresh: float = 0.7
    min_mask_pixels: int = 4  # at the decoder's resolution


@dataclass(frozen=True)
class MaskProposals:
    """Masks of one image at the decoder's resolution."""

    masks: Tensor  # (N, h, w) bool
    scores: Tensor  # (N,) predicted IoU
    stability: Tensor  # (N,) stability score
    logits: Tensor | None = None  # (N, h, w) float16 mask logits, when asked for

    def __len__(self) -> int:
        return int(self.masks.shape[0])


def point_grid(points_per_side: int, input_size: int) -> Tensor:
    """(P, 2) x/y prompt coordinates at pixel centres of a regular grid over the input."""
    step = input_size / points_per_side
    centres = (torch.arange(points_per_side, dtype=torch.float32) + 0.5) * step
    ys, xs = torch.meshgrid(centres, centres, indexing="ij")
    return torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=1)


def stability_score(logits: Tensor, offset: float) -> Tensor:
    """IoU between the masks thresholded at +offset and -offset, (..., h, w) -> (...)."""
    inner = (logits > offset).flatten(-2).sum(-1, dtype=torch.int32)
    outer = (logits > -offset).flatten(-2).sum(-1, dtype=torch.int32)
    return inner.float() / outer.clamp(min=1).float()


def mask_boxes(masks: Tensor) -> Tensor:
    """(N, 4) x0, y0, x1, y1 (inclusive) boxes of (N, h, w) bool masks; zeros for empty ones.

    torchvision's ``masks_to_boxes`` gives the same boxes with a Python loop over the masks.
    """
    rows, cols = masks.any(2), masks.any(1)  # (N, h), (N, w)

    def first_last(hit: Tensor) -> tuple[Tensor, Tensor]:
        size = hit.shape[1]
        first = hit.to(torch.uint8).argmax(1)
        last = size - 1 - hit.flip(1).to(torch.uint8).argmax(1)
        empty = ~hit.any(1)
        return first.masked_fill(empty, 0), last.masked_fill(empty, 0)

    y0, y1 = first_last(rows)
    x0, x1 = first_last(cols)
    return torch.stack([x0, y0, x1, y1], dim=1)


@torch.inference_mode()
def propose_masks(
    decoder: SamDecoder,
    features: ChipFeatures,
    *,
    settings: ProposalSettings = ProposalSettings(),
    keep_logits: bool = False,
) -> MaskProposals:
    """Automatic mask proposals for one image.

    Args:
        decoder: SAM's decoder matching ``features`` (its ``hq`` mode decides the masks:
            ``"off"``: SAM's three ambiguity masks per point; ``"add"``: one mask per point,
            SAM's best plus the HQ token's logits; ``"only"``: the HQ token's mask).
        features: One image's features (``embedding`` (1, C, E, E); ``interm`` with HQ).
        keep_logits: also return the kept masks' logits (to upsample them later).

    Returns:
        Proposals at the decoder resolution (4E x 4E), after IoU/stability filtering
        and box NMS, sorted by predicted IoU.

    Raises:
        ValueError: HQ decoding without the early-layer features.
    """
    features = decoder.prepare(features)  # HQ-SAM's fusion: once per image
    points = point_grid(settings.points_per_side, decoder.input_size).to(features.embedding.device)
    kept_masks, kept_scores, kept_stability, kept_logits = [], [], [], []
    for start in range(0, len(points), settings.points_per_batch):
        batch = points[start : start + settings.points_per_batch]
        logits, iou, _, _ = decoder.decode(features, points=batch[:, None, :], multimask=True)
        logits, iou = logits.flatten(0, 1), iou.flatten(0, 1)  # (B*M, h, w), (B*M,), M = 3 or 1
        stability = stability_score(logits, settings.stability_offset)
        keep = (iou >= settings.pred_iou_thresh) & (stability >= settings.stability_thresh)
        masks = logits[keep] > 0
        keep_area = masks.flatten(1).sum(1) >= settings.min_mask_pixels
        kept_masks.append(masks[keep_area])
        kept_scores.append(iou[keep][keep_area])
        kept_stability.append(stability[keep][keep_area])
        if keep_logits:
            kept_logits.append(logits[keep][keep_area].half())
    masks = torch.cat(kept_masks)
    kept = torch.cat(kept_logits) if keep_logits else None
    scores = torch.cat(kept_scores)
    stability = torch.cat(kept_stability)
    if len(masks):
        boxes = mask_boxes(masks).float()
        order = batched_nms(
            boxes, scores, torch.zeros_like(scores, dtype=torch.int64), settings.box_nms_thresh
        )
        masks, scores, stability = masks[order], scores[order], stability[order]
        kept = kept[order] if kept is not None else None
    return MaskProposals(masks=masks, scores=scores, stability=stability, logits=kept)
