"""SAM automatic mask proposals from a precomputed image embedding, batched over prompts.

A regular grid of single-point prompts is decoded in batches with the official prompt
encoder and mask decoder's weights, through :func:`~rs_sam.models.fast_decoder.decode_points`
(an exact reorganisation of the official forward). Unlike the official automatic mask
generator, masks stay at the decoder's low resolution (4x the embedding side, 256x256
for a 1024 input) and nothing is run-length encoded: filtering (predicted IoU,
stability), box NMS and everything downstream work on boolean low-resolution masks.

With HQ-SAM (``hq="add"`` or ``"only"``) each point goes through the HQ decoder instead
(:func:`~rs_sam.models.hq_decoder.decode_hq`, the fast decoder's HQ path on CPU; the fused HQ
features are computed once per image) and, as in HQ-SAM's automatic mask generator, gives one
mask: the best-IoU ambiguity mask plus the HQ token's logits, or the HQ token's logits alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from segment_anything.modeling import MaskDecoder, PromptEncoder
from torch import Tensor
from torchvision.ops import batched_nms, masks_to_boxes

from rs_sam.models.fast_decoder import decode_points
from rs_sam.models.hq_decoder import HQ_MODES, HqMode, decode_hq, hq_features, is_hq_decoder


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


@torch.inference_mode()
def propose_masks(
    embedding: Tensor,
    prompt_encoder: PromptEncoder,
    mask_decoder: MaskDecoder,
    *,
    input_size: int,
    settings: ProposalSettings = ProposalSettings(),
    keep_logits: bool = False,
    hq: HqMode = "off",
    interm: Tensor | None = None,
) -> MaskProposals:
    """Automatic mask proposals for one image.

    Args:
        embedding: (1, C, E, E) SAM image embedding.
        prompt_encoder, mask_decoder: the official SAM modules matching ``embedding``; with
            ``hq`` on, ``mask_decoder`` is HQ-SAM's ``MaskDecoderHQ`` (``encoder.hq_decoder``).
        input_size: side of the model input the embedding was computed from.
        keep_logits: also return the kept masks' logits (to upsample them later).
        hq: ``"off"``: SAM's three ambiguity masks per point; ``"add"``: one mask per point,
            SAM's best plus the HQ token's logits; ``"only"``: the HQ token's mask.
        interm: (1, D, E, E) early-layer features (``encoder.embed_hq``), needed with ``hq``.

    Returns:
        Proposals at the decoder resolution (4E x 4E), after IoU/stability filtering
        and box NMS, sorted by predicted IoU.

    Raises:
        ValueError: ``hq`` unknown, or on without an HQ decoder and ``interm``.
    """
    if hq not in HQ_MODES:
        raise ValueError(f"hq={hq!r} is not one of {', '.join(HQ_MODES)}")
    if hq != "off" and (interm is None or not is_hq_decoder(mask_decoder)):
        raise ValueError(
            f"hq={hq!r} needs HQ-SAM's MaskDecoderHQ and the early-layer features (interm)"
        )
    device = embedding.device
    points = point_grid(settings.points_per_side, input_size).to(device)
    if hq != "off":
        fused = hq_features(mask_decoder, embedding, interm)  # type: ignore[arg-type]
    kept_masks, kept_scores, kept_stability, kept_logits = [], [], [], []
    for start in range(0, len(points), settings.points_per_batch):
        batch = points[start : start + settings.points_per_batch]
        if hq == "off":
            logits, iou = decode_points(
                prompt_encoder, mask_decoder, embedding, batch[:, None, :], multimask_output=True
            )
        else:
            logits, iou, _ = decode_hq(
                prompt_encoder,
                mask_decoder,
                embedding,
                interm,  # type: ignore[arg-type]  # checked above
                points=batch[:, None, :],
                multimask_output=True,
                hq=hq,
                features=fused,
            )
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
        boxes = masks_to_boxes(masks).float()
        order = batched_nms(
            boxes, scores, torch.zeros_like(scores, dtype=torch.int64), settings.box_nms_thresh
        )
        masks, scores, stability = masks[order], scores[order], stability[order]
        kept = kept[order] if kept is not None else None
    return MaskProposals(masks=masks, scores=scores, stability=stability, logits=kept)
