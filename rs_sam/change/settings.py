"""Settings of zero-shot change detection: one frozen dataclass, unknown keys rejected."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rs_sam.change.anychange import DEFAULT_THRESHOLD_DEG
from rs_sam.errors import ConfigError
from rs_sam.models.mask_proposals import ProposalSettings
from rs_sam.vector.polygonize import MinArea


@dataclass(frozen=True, kw_only=True)
class ChangeSettings:
    """Everything that shapes a ``detect-change`` run besides its inputs and outputs."""

    encoder: str = "mobile_sam"
    weights: Literal["official", "random"] = "official"
    checkpoint: Path | None = None
    device: str = "auto"
    chip_size: int = 1024  # pixels of a's grid
    overlap: int = 128  # pixels shared by neighbouring chips
    batch_size: int = 64  # point prompts decoded together
    points_per_side: int = 16
    pred_iou_thresh: float = 0.5
    stability_thresh: float = 0.95
    threshold: float = DEFAULT_THRESHOLD_DEG  # degrees
    min_area: MinArea = dataclasses.field(default_factory=lambda: MinArea(0.0, "px"))
    simplify: float | None = None  # map units
    bands: tuple[int, ...] | None = None  # 1-based; None = automatic
    nodata: float | None = None  # None = each file's own nodata

    def __post_init__(self) -> None:
        if self.weights not in ("official", "random"):
            raise ConfigError(f"weights {self.weights!r} is unknown; use 'official' or 'random'")
        if self.chip_size < 32:
            raise ConfigError(f"chip size {self.chip_size} is too small; use at least 32 pixels")
        if not 0 <= self.overlap < self.chip_size // 2:
            raise ConfigError(
                f"overlap {self.overlap} must be >= 0 and below half the chip size "
                f"({self.chip_size // 2})"
            )
        if not 0.0 < self.threshold < 180.0:
            raise ConfigError(f"threshold {self.threshold} must be an angle in (0, 180) degrees")
        if self.batch_size < 1 or self.points_per_side < 1:
            raise ConfigError("batch size and points per side must be positive")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> ChangeSettings:
        """Build from a dict (e.g. a YAML file); unknown keys are an error listing valid ones."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ConfigError(
                f"unknown setting(s) {', '.join(unknown)}; valid: {', '.join(sorted(names))}"
            )
        return cls(**values)

    @property
    def proposals(self) -> ProposalSettings:
        return ProposalSettings(
            points_per_side=self.points_per_side,
            points_per_batch=self.batch_size,
            pred_iou_thresh=self.pred_iou_thresh,
            stability_thresh=self.stability_thresh,
        )
