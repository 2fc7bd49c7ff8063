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

Decoding is exact by default: every grid point is decoded. ``skip_covered`` trades exactness
for speed, as grid points inside a confident mask mostly return that mask again: the grid
is decoded coarse to fine (every other row and column first), and after each batch the
points not yet decoded that lie inside a kept mask whose predicted IoU and stability both
reach ``skip_covered`` are dropped. Their masks (duplicates, and the parts or wholes of
the confident mask they would have proposed) are then missing; how many masks change
against the exact mode is measured by ``benchmarks/approximate.py``.

``decoder_precision="bfloat16"`` is the other approximate mode: the mask decoder runs in
bfloat16 (the image embedding stays float32); how far its masks are from float32 decoding
is measured by ``benchmarks/approximate.py`` too.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torchvision.ops import batched_nms

from rs_sam.models.decoding import ChipFeatures, SamDecoder
from rs_sam.models.low_precision import decoder_dtype


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
    #: Approximate mode: skip grid points inside a kept mask whose predicted IoU and
    #: stability reach this (None: exact, every point decoded).
    skip_covered: float | None = None
    #: Mask decoding precision: "float32" (exact) or "bfloat16" (approximate, faster where
    #: the hardware has it; see rs_sam.models.low_precision).
    decoder_precision: str = "float32"

    def __post_init__(self) -> None:
        if self.skip_covered is not None and not 0.0 < self.skip_covered <= 1.0:
            raise ValueError(
                f"skip_covered {self.skip_covered} must be in (0, 1], e.g. 0.9; leave it unset "
                "to decode every grid point"
            )
        decoder_dtype(self.decoder_precision)  # a known name


@dataclass(frozen=True)
class MaskProposals:
    """Masks of one image at the decoder's resolution."""

    masks: Tensor  # (N, h, w) bool
    scores: Tensor  # (N,) predicted IoU
    stability: Tensor  # (N,) stability score
    logits: Tensor | None = None  # (N, h, w) float16 mask logits, when asked for
    decoded: int = 0  # point prompts decoded (fewer than the grid with skip_covered)

    def __len__(self) -> int:
        return int(self.masks.shape[0])


def point_grid(points_per_side: int, input_size: int) -> Tensor:
    """(P, 2) x/y prompt coordinates at pixel centres of a regular grid over the input."""
    step = input_size / points_per_side
    centres = (torch.arange(points_per_side, dtype=torch.float32) + 0.5) * step
    ys, xs = torch.meshgrid(centres, centres, indexing="ij")
    return torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=1)


def coarse_to_fine(points_per_side: int) -> Tensor:
    """(P,) order of a grid's points (row-major indices), coarsest sub-grid first.

    A point's level is the number of times both its row and column index halve evenly
    (index 0 counts as the finest possible level): every 2^k-th row and column come before
    the points between them; within a level, row-major order.
    """
    index = torch.arange(points_per_side)
    level = torch.zeros(points_per_side, dtype=torch.int64)
    for k in range(1, max(1, points_per_side.bit_length())):
        level[index % (1 << k) == 0] = k
    grid_level = torch.minimum(level[:, None], level[None, :]).reshape(-1)
    return torch.sort(-grid_level, stable=True).indices


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
    skip = settings.skip_covered
    dtype = decoder_dtype(settings.decoder_precision)
    if skip is not None:
        points = points[coarse_to_fine(settings.points_per_side).to(points.device)]
    kept: list[_Kept] = []
    covered: Tensor | None = None  # (h, w) bool: inside a confident mask (skip_covered)
    decoded = 0
    while len(points):
        batch, points = points[: settings.points_per_batch], points[settings.points_per_batch :]
        decoded += len(batch)
        logits, iou, _, _ = decoder.decode(
            features, points=batch[:, None, :], multimask=True, dtype=dtype
        )
        part = _filter(logits.flatten(0, 1), iou.flatten(0, 1), settings, keep_logits)
        kept.append(part)
        if skip is not None and len(points):
            confident = part.masks[(part.scores >= skip) & (part.stability >= skip)]
            if len(confident):
                union = confident.any(0)
                covered = union if covered is None else covered | union
            if covered is not None:
                points = points[~_inside(covered, points, decoder.input_size)]
    masks = torch.cat([k.masks for k in kept])
    logits = torch.cat([k.logits for k in kept]) if keep_logits else None  # type: ignore[misc]
    scores = torch.cat([k.scores for k in kept])
    stability = torch.cat([k.stability for k in kept])
    if len(masks):
        boxes = mask_boxes(masks).float()
        order = batched_nms(
            boxes, scores, torch.zeros_like(scores, dtype=torch.int64), settings.box_nms_thresh
        )
        masks, scores, stability = masks[order], scores[order], stability[order]
        logits = logits[order] if logits is not None else None
    return MaskProposals(
        masks=masks, scores=scores, stability=stability, logits=logits, decoded=decoded
    )


@dataclass(frozen=True)
class _Kept:
    """The masks of one batch that pass the filters."""

    masks: Tensor
    scores: Tensor
    stability: Tensor
    logits: Tensor | None


def _filter(logits: Tensor, iou: Tensor, settings: ProposalSettings, keep_logits: bool) -> _Kept:
    """Masks (B*M, h, w) passing the predicted-IoU, stability and size filters."""
    stability = stability_score(logits, settings.stability_offset)
    keep = (iou >= settings.pred_iou_thresh) & (stability >= settings.stability_thresh)
    masks = logits[keep] > 0
    large = masks.flatten(1).sum(1) >= settings.min_mask_pixels
    return _Kept(
        masks[large],
        iou[keep][large],
        stability[keep][large],
        logits[keep][large].half() if keep_logits else None,
    )


def _inside(mask: Tensor, points: Tensor, input_size: int) -> Tensor:
    """(P,) bool: each x/y point (model-input pixels) falls on a true pixel of ``mask``."""
    h, w = mask.shape
    cols = (points[:, 0] * (w / input_size)).long().clamp(0, w - 1)
    rows = (points[:, 1] * (h / input_size)).long().clamp(0, h - 1)
    return mask[rows, cols]
