"""Settings of ``rs-sam segment``: one frozen dataclass shared by its modes."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from rs_sam.data.grid import check_chip_geometry
from rs_sam.errors import ConfigError
from rs_sam.models.hq_decoder import HQ_MODES, HqMode, hq_encoder_error
from rs_sam.models.mask_proposals import ProposalSettings
from rs_sam.segment.merge import MATCH_IOU
from rs_sam.vector.polygonize import MinArea


@dataclass(frozen=True, kw_only=True)
class SegmentSettings:
    """Everything that shapes a ``segment`` run besides its inputs and outputs.

    Defaults of automatic mask generation follow segment-anything's generator
    (32 points per side, predicted IoU 0.88, stability 0.95, box NMS 0.7). Chips are 1024
    pixels, or a trained model's chip size; the overlap (default a quarter chip) bounds the
    objects that are always seen whole by some chip. ``hq`` selects HQ-SAM decoding
    (``"add"``: SAM's logits plus the HQ token's, ``"only"``: the HQ token's alone) for the
    automatic and prompt modes; it needs an HQ-SAM encoder (``sam_hq_*``).
    """

    encoder: str = "mobile_sam"
    weights: Literal["official", "random"] = "official"
    checkpoint: Path | None = None
    device: str = "auto"
    chip_size: int | None = None  # pixels of the raster's grid (default 1024 or the model's)
    overlap: int | None = None  # pixels shared by neighbouring chips (default chip // 4)
    points_per_side: int = 32
    batch_size: int = 64  # point prompts decoded together
    pred_iou_thresh: float = 0.88
    stability_thresh: float = 0.95
    box_nms_thresh: float = 0.7
    match_iou: float = MATCH_IOU  # same object in two chips: IoU inside their shared area
    min_area: MinArea = dataclasses.field(default_factory=lambda: MinArea(0.0, "px"))
    simplify: float | None = None  # map units
    bands: tuple[int, ...] | None = None  # 1-based; None = automatic
    nodata: float | None = None  # None = the file's own nodata
    hq: HqMode = "off"  # HQ-SAM decoding: "add" (--hq) or "only" (--hq-only)
    lora: Path | None = None  # LoRA adapter from `rs-sam train lora` for the encoder
    merge_lora: bool = False  # fold the adapter into the encoder's weights (faster)

    def __post_init__(self) -> None:
        if self.weights not in ("official", "random"):
            raise ConfigError(f"weights {self.weights!r} is unknown; use 'official' or 'random'")
        if self.hq not in HQ_MODES:
            raise ConfigError(f"hq {self.hq!r} is unknown; use one of {', '.join(HQ_MODES)}")
        if self.hq != "off":
            from rs_sam.models.encoders.registry import ENCODERS

            spec = ENCODERS.get(self.encoder)
            if spec is not None and not spec.hq:  # unknown names fail where they are loaded
                raise hq_encoder_error(self.encoder)
        if self.chip_size is not None and self.chip_size < 32:
            raise ConfigError(f"chip size {self.chip_size} is too small; use at least 32 pixels")
        if self.chip_size is not None and self.overlap is not None:
            check_chip_geometry(self.chip_size, self.overlap)
        for name in ("pred_iou_thresh", "stability_thresh", "box_nms_thresh", "match_iou"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name} {value} must be between 0 and 1")
        if self.batch_size < 1 or self.points_per_side < 1:
            raise ConfigError("batch size and points per side must be positive")

    def tiling(self, model_chip_size: int | None = None) -> tuple[int, int]:
        """(chip size, overlap) after defaults: 1024 or the model's chip, overlap 1/4."""
        chip = self.chip_size or model_chip_size or 1024
        overlap = self.overlap if self.overlap is not None else chip // 4
        check_chip_geometry(chip, overlap)
        return chip, overlap

    @property
    def proposals(self) -> ProposalSettings:
        return ProposalSettings(
            points_per_side=self.points_per_side,
            points_per_batch=self.batch_size,
            pred_iou_thresh=self.pred_iou_thresh,
            stability_thresh=self.stability_thresh,
            box_nms_thresh=self.box_nms_thresh,
        )
