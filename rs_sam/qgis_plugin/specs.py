"""The Processing algorithms' parameters as plain data, mirroring the CLI options.

Each :class:`Param` names a Processing parameter, its type, its default and the ``rs-sam``
option it becomes. Nothing here imports QGIS or rs_sam, so the tests compare these
defaults with the click commands' own, and the plugin loads where torch is missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: Parameter kinds: inputs (raster layer, point/polygon features, file, bool, int, float,
#: enum, string) and outputs (vector, raster).
KINDS = (
    "raster",
    "features",
    "file",
    "bool",
    "int",
    "float",
    "enum",
    "string",
    "vector_out",
    "raster_out",
)


@dataclass(frozen=True)
class Param:
    """One Processing parameter and the CLI argument it becomes.

    Attributes:
        name: Processing parameter name (``processing.run(..., {name: value})``).
        kind: One of :data:`KINDS`.
        description: Label shown in the algorithm dialog.
        flag: The CLI option (``--chip-size``), or None for a positional argument.
        default: Default value (an enum's choice string; None = not passed to the CLI).
        choices: The choices of an enum.
        optional: May be left empty.
        advanced: Listed under "Advanced parameters".
    """

    name: str
    kind: str
    description: str
    flag: str | None = None
    default: Any = None
    choices: tuple[str, ...] = ()
    optional: bool = False
    advanced: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown parameter kind {self.kind!r}")


@dataclass(frozen=True)
class AlgorithmSpec:
    """One Processing algorithm: the ``rs-sam`` command it runs and its parameters."""

    name: str
    display_name: str
    command: str
    help: str
    params: tuple[Param, ...]

    def param(self, name: str) -> Param:
        return next(p for p in self.params if p.name == name)


def _model_params(*, pred_iou: float, box_nms: float | None, points: int) -> tuple[Param, ...]:
    """The SAM options shared by the three commands (their defaults differ)."""
    params = [
        Param(
            "ENCODER", "string", "Encoder (see `rs-sam weights list`)", "--encoder", "mobile_sam"
        ),
        Param(
            "WEIGHTS",
            "enum",
            "Weights ('random': untrained, for tests only)",
            "--weights",
            "official",
            ("official", "random"),
            advanced=True,
        ),
        Param(
            "CHECKPOINT",
            "file",
            "Checkpoint file instead of the official one",
            "--checkpoint",
            optional=True,
            advanced=True,
        ),
        Param("LORA", "file", "LoRA adapter from `rs-sam train lora`", "--lora", optional=True),
        Param(
            "MERGE_LORA",
            "bool",
            "Fold the LoRA adapter into the weights first (faster)",
            "--merge-lora",
            False,
            advanced=True,
        ),
        Param(
            "DEVICE",
            "enum",
            "Device",
            "--device",
            "auto",
            ("auto", "cpu", "cuda", "mps"),
            advanced=True,
        ),
        Param(
            "CHIP_SIZE",
            "int",
            "Chip side in pixels [default: 1024, or the model's]",
            "--chip-size",
            optional=True,
            advanced=True,
        ),
        Param(
            "OVERLAP",
            "int",
            "Pixels shared by neighbouring chips [default: by chip size]",
            "--overlap",
            optional=True,
            advanced=True,
        ),
        Param(
            "POINTS_PER_SIDE",
            "int",
            "Prompt grid per chip",
            "--points-per-side",
            points,
            advanced=True,
        ),
        Param(
            "BATCH_SIZE", "int", "Point prompts decoded together", "--batch-size", 64, advanced=True
        ),
        Param(
            "PRED_IOU_THRESH",
            "float",
            "Keep masks with predicted IoU above",
            "--pred-iou-thresh",
            pred_iou,
            advanced=True,
        ),
        Param(
            "STABILITY_THRESH",
            "float",
            "Keep masks with stability above",
            "--stability-thresh",
            0.95,
            advanced=True,
        ),
    ]
    if box_nms is not None:
        params.append(
            Param(
                "BOX_NMS_THRESH",
                "float",
                "Box IoU above which a chip's lower-scored mask is dropped",
                "--box-nms-thresh",
                box_nms,
                advanced=True,
            )
        )
    return tuple(params)


def _band_and_area_params(min_area: str, *, simplify: bool = True) -> tuple[Param, ...]:
    params = [
        Param(
            "MIN_AREA",
            "string",
            "Drop objects smaller than this ('50px' or '200m2')",
            "--min-area",
            min_area,
        ),
    ]
    if simplify:
        params.append(
            Param(
                "SIMPLIFY",
                "float",
                "Simplify polygons (map units)",
                "--simplify",
                optional=True,
                advanced=True,
            )
        )
    params += [
        Param(
            "BANDS",
            "string",
            "1-based bands, 1 or 3 of them, e.g. 3,2,1 [default: 1,2,3]",
            "--bands",
            optional=True,
            advanced=True,
        ),
        Param(
            "NODATA",
            "float",
            "Value marking missing data [default: the file's]",
            "--nodata",
            optional=True,
            advanced=True,
        ),
        Param("OVERWRITE", "bool", "Replace existing output files", "--overwrite", False),
    ]
    return tuple(params)


DETECT_CHANGE = AlgorithmSpec(
    name="detect_change",
    display_name="Detect change",
    command="detect-change",
    help="Changes between raster A (earlier) and B (later) as polygons in A's CRS. Zero-shot "
    "(AnyChange) by default, or with a SAM-CD model from `rs-sam train change`. B is "
    "reprojected onto A's grid; only the overlap is processed.",
    params=(
        Param("A", "raster", "Raster A (earlier)"),
        Param("B", "raster", "Raster B (later)"),
        Param(
            "MODEL", "file", "SAM-CD model (.ckpt) [default: zero-shot]", "--model", optional=True
        ),
        Param(
            "SEMANTIC",
            "bool",
            "With a model: class of each polygon on both dates",
            "--semantic",
            False,
        ),
        Param(
            "THRESHOLD",
            "float",
            "Change threshold [default: the method's]",
            "--threshold",
            optional=True,
        ),
        *_model_params(pred_iou=0.5, box_nms=None, points=16),
        *_band_and_area_params("0"),
        Param("OUTPUT", "vector_out", "Changes", "--output"),
        Param(
            "PROBABILITY", "raster_out", "Change score raster", "--save-probability", optional=True
        ),
        Param(
            "LATENT",
            "raster_out",
            "Latent classes of both dates (with a model and semantic)",
            "--save-latent",
            optional=True,
        ),
    ),
)

SEGMENT = AlgorithmSpec(
    name="segment",
    display_name="Segment",
    command="segment",
    help="Objects of a raster as polygons in its CRS: every object SAM finds (anything), one "
    "object per point or polygon prompt (prompt), or the classes of a model from `rs-sam "
    "train segment` (semantic, with a model file).",
    params=(
        Param("INPUT", "raster", "Raster"),
        Param("MODE", "enum", "Mode", "--mode", "anything", ("anything", "prompt")),
        Param(
            "PROMPTS",
            "features",
            "Prompts (points, label 1/0; polygons = boxes)",
            "--prompts",
            optional=True,
        ),
        Param(
            "MULTIMASK",
            "enum",
            "Prompt mode: the best mask or all three",
            "--multimask",
            "best",
            ("best", "all"),
            advanced=True,
        ),
        Param(
            "CONTEXT",
            "int",
            "Prompt mode: pixels of context around each prompt",
            "--context",
            128,
            advanced=True,
        ),
        Param(
            "MODEL",
            "file",
            "Semantic model (.ckpt) from `rs-sam train segment`",
            "--model",
            optional=True,
        ),
        Param("HQ", "bool", "HQ-SAM masks (an sam_hq_* encoder)", "--hq", False),
        Param("HQ_ONLY", "bool", "HQ-SAM's HQ mask alone", "--hq-only", False, advanced=True),
        *_model_params(pred_iou=0.88, box_nms=0.7, points=32),
        *_band_and_area_params("0"),
        Param("OUTPUT", "vector_out", "Objects", "--output"),
        Param(
            "SAVE_CLASSES",
            "raster_out",
            "With a model: class raster",
            "--save-classes",
            optional=True,
        ),
        Param(
            "SAVE_PROBABILITY",
            "raster_out",
            "With a model: class probabilities",
            "--save-probability",
            optional=True,
        ),
    ),
)

SAM_OBJECTS = AlgorithmSpec(
    name="sam_objects",
    display_name="SAM object map",
    command="sam-objects",
    help="SAM object map (uint32 ids, 0 = none) and boundary map of a raster, on its grid, "
    "for SSRS training. Defaults follow SSRS (predicted IoU 0.96, box NMS 0.5, objects of "
    "at least 50 pixels).",
    params=(
        Param("INPUT", "raster", "Raster"),
        *_model_params(pred_iou=0.96, box_nms=0.5, points=32),
        *_band_and_area_params("50px", simplify=False),
        Param("OUTPUT", "raster_out", "Object ids", "--output"),
        Param("BOUNDARY", "raster_out", "Boundaries", "--boundary", optional=True),
    ),
)

ALGORITHMS = (DETECT_CHANGE, SEGMENT, SAM_OBJECTS)
