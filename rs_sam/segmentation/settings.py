"""Settings of ``segment`` and ``sam-objects``: the shared fields, their defaults, HQ decoding."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import ClassVar

from rs_sam.errors import ConfigError
from rs_sam.inference.settings import SharedSettings
from rs_sam.models.decoding import HQ_MODES, HqMode, hq_encoder_error
from rs_sam.models.mask_proposals import ProposalSettings
from rs_sam.options import SAM_OBJECTS, SEGMENT, Command
from rs_sam.segmentation.merge import MATCH_IOU
from rs_sam.vector.polygonize import MinArea


@dataclass(frozen=True, kw_only=True)
class SegmentSettings(SharedSettings):
    """Everything that shapes a ``segment`` run besides its inputs and outputs.

    Defaults of automatic mask generation follow segment-anything's generator
    (32 points per side, predicted IoU 0.88, stability 0.95, box NMS 0.7). Chips are 1024
    pixels, or a trained model's chip size; the overlap (default a quarter chip) bounds the
    objects that are always seen whole by some chip. ``hq`` selects HQ-SAM decoding
    (``"add"``: SAM's logits plus the HQ token's, ``"only"``: the HQ token's alone) for the
    automatic and prompt modes; it needs an HQ-SAM encoder (``sam_hq_*``).
    """

    command: ClassVar[Command | None] = SEGMENT
    overlap_divisor: ClassVar[int] = SEGMENT.overlap_divisor

    points_per_side: int = SEGMENT.default("points_per_side")
    pred_iou_thresh: float = SEGMENT.default("pred_iou_thresh")
    min_area: MinArea = field(
        default_factory=lambda: MinArea.parse(SEGMENT.default("min_area"))
    )
    box_nms_thresh: float = SEGMENT.default("box_nms_thresh")
    match_iou: float = MATCH_IOU  # same object in two chips: IoU inside their shared area
    hq: HqMode = "off"  # HQ-SAM decoding: "add" (--hq) or "only" (--hq-only)

    def __post_init__(self) -> None:
        if self.hq not in HQ_MODES:
            raise ConfigError(f"hq {self.hq!r} is unknown; use one of {', '.join(HQ_MODES)}")
        if self.hq != "off":
            from rs_sam.models.encoders.registry import ENCODERS

            spec = ENCODERS.get(self.encoder)
            if spec is not None and not spec.hq:  # unknown names fail where they are loaded
                raise hq_encoder_error(self.encoder)
            if self.decoder_precision != "float32":
                raise ConfigError(
                    f"decoder precision {self.decoder_precision} is not available with HQ-SAM "
                    "decoding (--hq/--hq-only); use float32"
                )
        super().__post_init__()

    def _fractions(self) -> tuple[str, ...]:
        return (*super()._fractions(), "box_nms_thresh", "match_iou")

    @property
    def proposals(self) -> ProposalSettings:
        return dataclasses.replace(super().proposals, box_nms_thresh=self.box_nms_thresh)


@dataclass(frozen=True, kw_only=True)
class SamObjectsSettings(SegmentSettings):
    """``sam-objects``'s settings: SSRS's defaults (predicted IoU 0.96, box NMS 0.5, 50 px)."""

    command: ClassVar[Command | None] = SAM_OBJECTS
    overlap_divisor: ClassVar[int] = SAM_OBJECTS.overlap_divisor

    points_per_side: int = SAM_OBJECTS.default("points_per_side")
    pred_iou_thresh: float = SAM_OBJECTS.default("pred_iou_thresh")
    box_nms_thresh: float = SAM_OBJECTS.default("box_nms_thresh")
    min_area: MinArea = field(
        default_factory=lambda: MinArea.parse(SAM_OBJECTS.default("min_area"))
    )
