"""Settings of change detection: the shared fields with detect-change's defaults, and its own."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from rs_sam.change.anychange import DEFAULT_THRESHOLD_DEG
from rs_sam.errors import ConfigError
from rs_sam.inference.settings import SharedSettings
from rs_sam.options import DETECT_CHANGE, Command
from rs_sam.vector.polygonize import MinArea


@dataclass(frozen=True, kw_only=True)
class ChangeSettings(SharedSettings):
    """Everything that shapes a ``detect-change`` run besides its inputs and outputs.

    ``model`` switches from zero-shot AnyChange to a SAM-CD head trained with
    ``rs-sam train change``. Unset values take the mode's defaults: ``threshold`` is an
    angle (145 degrees) in zero-shot mode and a probability (0.5) with a model;
    ``chip_size`` is 1024, or the model's training chip size; ``overlap`` is 1/8 chip.
    ``lora`` applies to zero-shot detection only.
    """

    command: ClassVar[Command | None] = DETECT_CHANGE
    overlap_divisor: ClassVar[int] = DETECT_CHANGE.overlap_divisor

    points_per_side: int = DETECT_CHANGE.default("points_per_side")
    pred_iou_thresh: float = DETECT_CHANGE.default("pred_iou_thresh")
    min_area: MinArea = field(
        default_factory=lambda: MinArea.parse(DETECT_CHANGE.default("min_area"))
    )
    model: Path | None = None
    threshold: float | None = None
    semantic: bool = DETECT_CHANGE.default("semantic")  # SAM-CD: class_a / class_b per polygon

    def __post_init__(self) -> None:
        super().__post_init__()
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

    @property
    def probability_threshold(self) -> float:
        """The threshold on the mosaic's 0..1 score (an angle / 180 in zero-shot mode)."""
        if self.model is not None:
            return 0.5 if self.threshold is None else self.threshold
        return (DEFAULT_THRESHOLD_DEG if self.threshold is None else self.threshold) / 180.0
