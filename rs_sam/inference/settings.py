"""The settings every SAM command shares (model, tiling, prompt grid, filters), checked once.

:class:`SharedSettings` holds the fields; ``ChangeSettings`` and ``SegmentSettings`` extend
it with their own fields and defaults. Every default comes from :mod:`rs_sam.options`, the
table the CLI and the QGIS parameters are generated from.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

from rs_sam.data.bands import parse_bands
from rs_sam.data.grid import RasterGrid, check_chip_geometry
from rs_sam.errors import ConfigError
from rs_sam.inference.chip_size import capped_chip_size, check_chip_memory
from rs_sam.inference.cluster import ClusterSpec
from rs_sam.models.encoders.openvino_runtime import check_runtime
from rs_sam.models.encoders.registry import ENCODERS
from rs_sam.models.mask_proposals import ProposalSettings
from rs_sam.models.recipe import ModelRecipe
from rs_sam.options import DEFAULT_CHIP_SIZE, PATH_KINDS, SHARED, SHARED_DEFAULTS, Command
from rs_sam.vector.polygonize import MinArea

S = TypeVar("S", bound="SharedSettings")

#: Option values as the CLI and QGIS give them (text) -> the settings' types.
_PARSERS: dict[str, Callable[[Any], Any]] = {"min_area": MinArea.parse, "bands": parse_bands}
WEIGHTS_CHOICES = next(o.choices for o in SHARED if o.name == "weights")


@dataclass(frozen=True, kw_only=True)
class SharedSettings:
    """Model, tiling, prompt grid and output filters of a SAM run.

    ``chip_size`` is :data:`~rs_sam.options.DEFAULT_CHIP_SIZE` or a trained model's chip
    size when unset; ``overlap`` a fraction of the chip (the command's ``overlap_divisor``).
    """

    #: The command whose option table this class follows (its overlap divisor).
    command: ClassVar[Command | None] = None
    overlap_divisor: ClassVar[int] = 4

    encoder: str = SHARED_DEFAULTS["encoder"]
    weights: Literal["official", "random"] = SHARED_DEFAULTS["weights"]
    checkpoint: Path | None = None
    device: str = SHARED_DEFAULTS["device"]
    chip_size: int | None = None  # pixels of the (first) raster's grid
    overlap: int | None = None  # pixels shared by neighbouring chips
    points_per_side: int = SHARED_DEFAULTS["points_per_side"]
    batch_size: int = SHARED_DEFAULTS["batch_size"]  # point prompts decoded together
    pred_iou_thresh: float = SHARED_DEFAULTS["pred_iou_thresh"]
    stability_thresh: float = SHARED_DEFAULTS["stability_thresh"]
    skip_covered: float | None = None  # approximate: skip grid points in confident masks
    decoder_precision: str = SHARED_DEFAULTS["decoder_precision"]  # bfloat16: approximate
    min_area: MinArea = dataclasses.field(
        default_factory=lambda: MinArea.parse(SHARED_DEFAULTS["min_area"])
    )
    simplify: float | None = None  # map units
    bands: tuple[int, ...] | None = None  # 1-based; None = automatic
    nodata: float | None = None  # None = each file's own nodata
    lora: Path | None = None  # LoRA adapter from `rs-sam train lora` for the encoder
    merge_lora: bool = SHARED_DEFAULTS["merge_lora"]  # fold the adapter into the weights
    encoder_runtime: str = SHARED_DEFAULTS["encoder_runtime"]  # or "openvino" (CPU)
    cluster: str | None = None  # a dask scheduler's address: chips run on its workers
    workers: int | None = None  # chips run on a local dask cluster of this many processes

    def __post_init__(self) -> None:
        if self.weights not in WEIGHTS_CHOICES:
            raise ConfigError(f"weights {self.weights!r} is unknown; use 'official' or 'random'")
        spec = ENCODERS.get(self.encoder)
        if spec is not None:  # an unknown encoder is reported where it is looked up
            check_runtime(self.encoder_runtime, spec.name, spec.family, self.device)
        if self.chip_size is not None and self.chip_size < 32:
            raise ConfigError(f"chip size {self.chip_size} is too small; use at least 32 pixels")
        if self.chip_size is not None and self.overlap is not None:
            check_chip_geometry(self.chip_size, self.overlap)
        for name in self._fractions():
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name} {value} must be between 0 and 1")
        if self.batch_size < 1 or self.points_per_side < 1:
            raise ConfigError("batch size and points per side must be positive")
        try:
            self.proposals  # noqa: B018  # the grid's own checks: skip_covered, precision
        except ValueError as error:
            raise ConfigError(str(error)) from None
        self.engine  # noqa: B018  # checks --cluster / --workers

    def _fractions(self) -> tuple[str, ...]:
        """Fields that must lie in [0, 1]."""
        return ("pred_iou_thresh", "stability_thresh")

    def tiling(
        self, model_chip_size: int | None = None, *, grid: RasterGrid | None = None
    ) -> tuple[int, int]:
        """(chip size, overlap) after defaults: 1024 or the model's chip, overlap a fraction.

        With the run's ``grid``, a chip larger than the grid is capped (see
        :func:`~rs_sam.inference.chip_size.capped_chip_size`; at least the model's input).
        A chip whose memory would exceed the machine's is refused.

        Raises:
            ConfigError: an overlap too large for the chip, or a chip too large for memory.
        """
        chip = self.chip_size or model_chip_size or DEFAULT_CHIP_SIZE
        overlap = self.overlap if self.overlap is not None else chip // self.overlap_divisor
        check_chip_geometry(chip, overlap)
        if grid is not None:
            capped = capped_chip_size(chip, grid, model_chip_size or self._model_input())
            if capped < chip:  # one chip covers the grid: its overlap only shapes weights
                chip = capped
                default = self.overlap is None
                overlap = chip // self.overlap_divisor if default else min(overlap, (chip - 1) // 2)
        check_chip_memory(chip)
        return chip, overlap

    def _model_input(self) -> int:
        """Side of the encoder's square input (the default chip for an unknown name)."""
        spec = ENCODERS.get(self.encoder)
        return spec.input_size if spec is not None else DEFAULT_CHIP_SIZE

    def recipe(self, head: str | Path | None = None) -> ModelRecipe:
        """The run's model: these settings' encoder, adapter and device (and a trained head)."""
        return ModelRecipe(
            self.encoder,
            weights=self.weights,
            checkpoint=_as_path(self.checkpoint),
            lora=_as_path(self.lora),
            merge_lora=self.merge_lora,
            device=self.device,
            encoder_runtime=self.encoder_runtime,
            head=_as_path(head),
        )

    @property
    def engine(self) -> ClusterSpec:
        """Where the chips run: this process, a local dask cluster, or a running one."""
        return ClusterSpec(address=self.cluster, workers=self.workers)

    @property
    def proposals(self) -> ProposalSettings:
        return ProposalSettings(
            points_per_side=self.points_per_side,
            points_per_batch=self.batch_size,
            pred_iou_thresh=self.pred_iou_thresh,
            stability_thresh=self.stability_thresh,
            skip_covered=self.skip_covered,
            decoder_precision=self.decoder_precision,
        )

    @classmethod
    def from_mapping(cls: type[S], values: Mapping[str, Any]) -> S:
        """Build from a dict (e.g. a YAML file); unknown keys are an error listing valid ones."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ConfigError(
                f"unknown setting(s) {', '.join(unknown)}; valid: {', '.join(sorted(names))}"
            )
        return cls(**values)

    @classmethod
    def from_options(cls: type[S], values: Mapping[str, Any]) -> S:
        """Build from the option values of the CLI or QGIS (text for min_area and bands).

        Only the command's setting options are read; unset ones take the class defaults.
        """
        if cls.command is None:
            raise TypeError(f"{cls.__name__} follows no command's option table")
        fields: dict[str, Any] = {}
        for option in cls.command.options:
            if not option.setting or option.name not in values:
                continue
            value = values[option.name]
            if value is None:
                if option.default is None:  # else: unset means the class default
                    fields[option.name] = None
                continue
            if option.name in _PARSERS:
                value = _PARSERS[option.name](value)
            elif option.kind in PATH_KINDS:
                value = Path(value)
            fields[option.name] = value
        return cls(**fields)


def _as_path(value: str | Path | None) -> Path | None:
    return None if value is None else Path(value)
