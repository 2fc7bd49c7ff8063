"""Settings of zero-shot change detection: one frozen dataclass, unknown keys rejected."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rs_sam.change.anychange import DEFAULT_THRESHOLD_DEG
from rs_sam.data.grid import check_chip_geometry
from rs_sam.errors import ConfigError
from rs_sam.models.mask_proposals import ProposalSettings
from rs_sam.vector.polygonize import MinArea


@dataclass(frozen=True, kw_only=True)
class ChangeSettings:
    """Everything that shapes a ``detect-change`` run besides its inputs and outputs.

    ``model`` switches from zero-shot AnyChange to a SAM-CD head trained with
    ``rs-sam train change``. Unset values take the mode's defaults: ``threshold`` is an
    angle (145 degrees) in zero-shot mode and a probability (0.5) with a model;
    ``chip_size`` is 1024, or the model's training chip size; ``overlap`` is 1/8 chip.
    """

    encoder: str = "mobile_sam"
    weights: Literal["official", "random"] = "official"
    checkpoint: Path | None = None
    model: Path | None = None
    device: str = "auto"
    chip_size: int | None = None  # pixels of a's grid
    overlap: int | None = None  # pixels shared by neighbouring chips
    batch_size: int = 64  # point prompts decoded together
    points_per_side: int = 16
    pred_iou_thresh: float = 0.5
    stability_thresh: float = 0.95
    threshold: float | None = None
    min_area: MinArea = dataclasses.field(default_factory=lambda: MinArea(0.0, "px"))
    simplify: float | None = None  # map units
    bands: tuple[int, ...] | None = None  # 1-based; None = automatic
    nodata: float | None = None  # None = each file's own nodata
    semantic: bool = False  # SAM-CD only: class_a / class_b (dominant latent class) per polygon
    lora: Path | None = None  # zero-shot: LoRA adapter from `rs-sam train lora` for the encoder
    merge_lora: bool = False  # fold the adapter into the encoder's weights (faster)

    def __post_init__(self) -> None:
        if self.weights not in ("official", "random"):
            raise ConfigError(f"weights {self.weights!r} is unknown; use 'official' or 'random'")
        if self.chip_size is not None and self.chip_size < 32:
            raise ConfigError(f"chip size {self.chip_size} is too small; use at least 32 pixels")
        if self.chip_size is not None and self.overlap is not None:
            check_chip_geometry(self.chip_size, self.overlap)
        if self.threshold is not None:
            if self.model is not None and not 0.0 < self.threshold < 1.0:
                raise ConfigError(
                    f"threshold {self.threshold} must be a probability in (0, 1) with --model"
                )
            if self.model is None and not 0.0 < self.threshold < 180.0:
                raise ConfigError(
                    f"threshold {self.threshold} must be an angle in (0, 180) degrees"
                )
        if self.semantic and self.model is None:
            raise ConfigError(
                "semantic output needs a SAM-CD model (--model run.ckpt); zero-shot detection "
                "has no latent classes"
            )
        if self.lora is not None and self.model is not None:
            raise ConfigError(
                "--lora applies to zero-shot detection; a SAM-CD model brings its own encoder "
                "(set lora in its training config)"
            )
        if self.batch_size < 1 or self.points_per_side < 1:
            raise ConfigError("batch size and points per side must be positive")

    def tiling(self, model_chip_size: int | None = None) -> tuple[int, int]:
        """(chip size, overlap) after defaults: 1024 or the model's chip, overlap 1/8."""
        chip = self.chip_size or model_chip_size or 1024
        overlap = self.overlap if self.overlap is not None else chip // 8
        check_chip_geometry(chip, overlap)
        return chip, overlap

    @property
    def probability_threshold(self) -> float:
        """The threshold on the mosaic's 0..1 score (an angle / 180 in zero-shot mode)."""
        if self.model is not None:
            return 0.5 if self.threshold is None else self.threshold
        return (DEFAULT_THRESHOLD_DEG if self.threshold is None else self.threshold) / 180.0

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
