"""Every option of ``detect-change``, ``segment`` and ``sam-objects``, written once, as data.

The settings classes take their defaults from here; the click commands (``cli/options.py``)
and the QGIS Processing parameters (``qgis_plugin/specs.py``) are generated from it. This
module uses the standard library only: ``rs-sam qgis install`` copies it into the QGIS
plugin, which loads in a Python that may have neither torch nor rs_sam.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .pseudo_label_options import commands as pseudo_label_commands  # stdlib only too

#: Chip side in pixels when neither the user nor a trained model sets one.
DEFAULT_CHIP_SIZE = 1024

#: Option kinds: inputs (raster layer, point/polygon features, file, bool, int, float,
#: enum, string) and outputs (vector, raster). QGIS's parameter types follow them.
KINDS = ("raster", "features", "file", "bool", "int", "float", "enum", "string",
         "vector_out", "raster_out", "folder_out", "file_out")  # fmt: skip
#: Kinds whose values are paths.
PATH_KINDS = ("raster", "features", "file", "vector_out", "raster_out", "folder_out", "file_out")


@dataclass(frozen=True)
class Option:
    """One option of a command: its default, its CLI flag and its QGIS parameter.

    Attributes:
        name: Python name: the settings field or API keyword, and the click parameter.
        kind: One of :data:`KINDS`.
        help: The CLI's help text.
        label: The QGIS dialog's label.
        default: The default (None: unset; an enum's choice string).
        choices: The choices of an enum.
        positional: A CLI argument, not an option.
        short: A short CLI flag (``-o``).
        required: Must be given.
        advanced: Listed under QGIS's "Advanced parameters".
        envvar: Environment variable the CLI reads the value from.
        folders: A path that may be a folder.
        setting: A field of the command's settings; False: an argument of the API call.
        qgis: The QGIS parameter's name [default: ``name`` in capitals].
        cli_only: Not a QGIS parameter (the QGIS provider runs locally).
        multiple: The CLI option may be repeated (QGIS: one comma-separated text).
    """

    name: str
    kind: str
    help: str
    label: str
    default: Any = None
    choices: tuple[str, ...] = ()
    positional: bool = False
    short: str | None = None
    required: bool = False
    advanced: bool = False
    envvar: str | None = None
    folders: bool = False
    setting: bool = True
    qgis: str = ""
    cli_only: bool = False
    multiple: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown option kind {self.kind!r}")

    @property
    def flag(self) -> str | None:
        """``--chip-size`` for ``chip_size``; None for a positional argument."""
        return None if self.positional else "--" + self.name.replace("_", "-")

    @property
    def qgis_name(self) -> str:
        return self.qgis or self.name.upper()

    @property
    def optional(self) -> bool:
        """May be left unset (no default, not required)."""
        return not (self.positional or self.required) and self.default is None

    def but(self, **changes: Any) -> Option:
        """This option with some attributes changed (a command's own default or help)."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class Command:
    """One command's options, in the order the CLI help and the QGIS dialog list them."""

    name: str  # the API function and QGIS algorithm: detect_change
    cli_name: str  # the CLI command: detect-change
    options: tuple[Option, ...]
    overlap_divisor: int  # default overlap = chip size // this

    def option(self, name: str) -> Option:
        for option in self.options:
            if option.name == name:
                return option
        raise KeyError(f"{self.cli_name} has no option {name!r}")

    def default(self, name: str) -> Any:
        return self.option(name).default

    def defaults(self) -> dict[str, Any]:
        """Every option's default, by name."""
        return {option.name: option.default for option in self.options}

    def cli_arguments(self, values: Mapping[str, Any]) -> list[str]:
        """The CLI arguments (after the command name) for option values; None = left out."""
        positional: list[str] = []
        flags: list[str] = []
        for option in self.options:
            value = values.get(option.name)
            if value is None or value is False:
                continue
            if option.positional:
                positional.append(str(value))
            elif option.kind == "bool":
                flags.append(str(option.flag))
            elif option.multiple:
                items = value.split(",") if isinstance(value, str) else value
                for item in (str(i).strip() for i in items):
                    flags += [str(option.flag), item] if item else []
            else:
                flags += [str(option.flag), str(value)]
        return positional + flags


def _chip_size(help: str) -> Option:
    label = f"Chip side in pixels [default: {DEFAULT_CHIP_SIZE}, or the model's]"
    return Option("chip_size", "int", help, label, advanced=True)


def _overlap(help: str) -> Option:
    return Option(
        "overlap", "int", help, "Pixels shared by neighbouring chips [default: by chip size]",
        advanced=True,
    )  # fmt: skip


ENCODER = Option(
    "encoder", "string", "Encoder from the registry (see `rs-sam weights list`).",
    "Encoder (see `rs-sam weights list`)", default="mobile_sam",
)  # fmt: skip
WEIGHTS = Option(
    "weights", "enum",
    "'random' = untrained weights, for tests and benchmarks only (meaningless results).",
    "Weights ('random': untrained, for tests only)", default="official",
    choices=("official", "random"), advanced=True, envvar="RS_SAM_WEIGHTS",
)  # fmt: skip
CHECKPOINT = Option(
    "checkpoint", "file",
    "Checkpoint file (or Hugging Face model folder with model.safetensors) to use instead of "
    "the cached/downloaded official one.", "Checkpoint file instead of the official one",
    advanced=True, folders=True,
)  # fmt: skip
LORA = Option(
    "lora", "file",
    "LoRA adapter from `rs-sam train lora` for the encoder (same base encoder).",
    "LoRA adapter from `rs-sam train lora`",
)  # fmt: skip
MERGE_LORA = Option(
    "merge_lora", "bool",
    "Fold the LoRA adapter into the encoder's weights first (same output, faster).",
    "Fold the LoRA adapter into the weights first (faster)", default=False, advanced=True,
)  # fmt: skip
DEVICE = Option(
    "device", "enum", "Where the model runs.", "Device", default="auto",
    choices=("auto", "cpu", "cuda", "mps"), advanced=True,
)  # fmt: skip
POINTS_PER_SIDE = Option(
    "points_per_side", "int", "Prompt grid per chip.", "Prompt grid per chip", default=32,
    advanced=True,
)  # fmt: skip
BATCH_SIZE = Option(
    "batch_size", "int", "Point prompts decoded together.", "Point prompts decoded together",
    default=64, advanced=True,
)  # fmt: skip
PRED_IOU_THRESH = Option(
    "pred_iou_thresh", "float", "Keep masks with predicted IoU above this.",
    "Keep masks with predicted IoU above", default=0.88, advanced=True,
)  # fmt: skip
STABILITY_THRESH = Option(
    "stability_thresh", "float", "Keep masks with stability above this.",
    "Keep masks with stability above", default=0.95, advanced=True,
)  # fmt: skip
SKIP_COVERED = Option(
    "skip_covered", "float", "Approximate, faster: skip grid points inside a mask already found "
    "whose predicted IoU and stability reach this (e.g. 0.9) [default: off, all decoded].",
    "Skip grid points inside masks this confident (approximate) [default: off]", advanced=True,
)  # fmt: skip
DECODER_PRECISION = Option(
    "decoder_precision", "enum", "Precision of the prompt grid's mask decoding: bfloat16 is "
    "approximate (masks differ slightly), faster on CPUs with AVX512-BF16/AMX and on GPUs.",
    "Mask decoding precision (bfloat16: approximate, faster)", default="float32",
    choices=("float32", "bfloat16"), advanced=True,
)  # fmt: skip
ENCODER_RUNTIME = Option(
    "encoder_runtime", "enum", "Run the image encoder with PyTorch or OpenVINO (CPU only, "
    "rs-sam[openvino]; MobileSAM and SAM 2.1: ~2x faster, same output within float32).",
    "Image encoder runtime (openvino: CPU, faster)", default="torch",
    choices=("torch", "openvino"), advanced=True, envvar="RS_SAM_ENCODER_RUNTIME",
)  # fmt: skip
BOX_NMS_THRESH = Option(
    "box_nms_thresh", "float", "Box IoU above which a chip's lower-scored mask is dropped.",
    "Box IoU above which a chip's lower-scored mask is dropped", default=0.7, advanced=True,
)  # fmt: skip
MIN_AREA = Option(
    "min_area", "string",
    "Drop polygons smaller than this: pixels ('50' or '50px') or square metres ('200m2').",
    "Drop objects smaller than this ('50px' or '200m2')", default="0",
)  # fmt: skip
SIMPLIFY = Option(
    "simplify", "float", "Simplify polygons with this tolerance (map units).",
    "Simplify polygons (map units)", advanced=True,
)  # fmt: skip
BANDS = Option(
    "bands", "string", "1-based bands to use, 1 or 3 of them, e.g. 3,2,1 [default: 1,2,3].",
    "1-based bands, 1 or 3 of them, e.g. 3,2,1 [default: 1,2,3]", advanced=True,
)  # fmt: skip
NODATA = Option(
    "nodata", "float", "Value marking missing data [default: the file's].",
    "Value marking missing data [default: the file's]", advanced=True,
)  # fmt: skip
OVERWRITE = Option(
    "overwrite", "bool", "Replace existing outputs (refused otherwise).",
    "Replace existing output files", default=False, setting=False,
)  # fmt: skip
PREVIEW = Option(
    "preview", "file_out", "Also draw the image(s) and polygons: a .png picture or a .html map "
    "that opens offline.", "", setting=False, cli_only=True,
)  # fmt: skip
VECTOR_OUTPUT = Option(
    "output", "vector_out", "Vector file (.gpkg, .geojson, .shp, .parquet).", "Polygons",
    short="-o", required=True, setting=False,
)  # fmt: skip

CLUSTER = Option(
    "cluster", "string", "Run the chips on the workers of a running dask scheduler, e.g. "
    "tcp://host:8786 (the inputs must be reachable from them).", "", envvar="RS_SAM_CLUSTER",
    cli_only=True,
)  # fmt: skip
WORKERS = Option(
    "workers", "int", "Run the chips on a local dask cluster of this many worker processes.",
    "", cli_only=True,
)  # fmt: skip

#: The fields every command's settings share, with the shared defaults (those of SAM's
#: automatic mask generator; each command may change them).
SHARED = (
    ENCODER, WEIGHTS, CHECKPOINT, LORA, MERGE_LORA, DEVICE, ENCODER_RUNTIME, _chip_size(""),
    _overlap(""), POINTS_PER_SIDE, BATCH_SIZE, PRED_IOU_THRESH, STABILITY_THRESH, SKIP_COVERED,
    DECODER_PRECISION, MIN_AREA, SIMPLIFY, BANDS, NODATA, CLUSTER, WORKERS,
)  # fmt: skip
SHARED_DEFAULTS: dict[str, Any] = {option.name: option.default for option in SHARED}


def _model_options(
    *, chip_size: str, overlap: str, points: Option, pred_iou: Option, stability: Option,
    box_nms: Option | None,
) -> tuple[Option, ...]:  # fmt: skip
    """The SAM options of the three commands (their defaults and help differ)."""
    options = [ENCODER, WEIGHTS, CHECKPOINT, LORA, MERGE_LORA, DEVICE, ENCODER_RUNTIME, CLUSTER,
               WORKERS, _chip_size(chip_size), _overlap(overlap), points, BATCH_SIZE, pred_iou,
               stability, SKIP_COVERED, DECODER_PRECISION]  # fmt: skip
    return (*options, box_nms) if box_nms is not None else tuple(options)


TEXT = Option(
    "text", "string", "Concept segmentation with SAM 3: every instance of this noun phrase "
    "(repeat for several classes); selects --encoder sam3.",
    "Concepts to find, comma-separated (SAM 3 text prompts)", setting=False, multiple=True,
)  # fmt: skip
DETECT_CHANGE = Command(
    name="detect_change",
    cli_name="detect-change",
    overlap_divisor=8,
    options=(
        Option("a", "raster", "", "Raster A (earlier)", positional=True, setting=False),
        Option("b", "raster", "", "Raster B (later)", positional=True, setting=False),
        Option(
            "model",
            "file",
            "SAM-CD checkpoint from `rs-sam train change` (supervised) instead of zero-shot.",
            "SAM-CD model (.ckpt) [default: zero-shot]",
        ),
        Option(
            "semantic",
            "bool",
            "With --model: add class_a/class_b, each polygon's dominant latent class per date.",
            "With a model: class of each polygon on both dates",
            default=False,
        ),
        Option(
            "threshold",
            "float",
            "Zero-shot: change angle in degrees [default: 145, AnyChange's library; the paper "
            "uses 155]. With --model: change probability [default: 0.5].",
            "Change threshold [default: the method's]",
        ),
        *_model_options(
            chip_size=f"Chip side in pixels of a's grid [default: {DEFAULT_CHIP_SIZE}, or the "
            "model's training chip].",
            overlap="Pixels shared by neighbouring chips, blended smoothly; < chip size / 2 "
            "[default: chip size / 8].",
            points=POINTS_PER_SIDE.but(default=16, help="Prompt grid per chip and date."),
            pred_iou=PRED_IOU_THRESH.but(default=0.5),
            stability=STABILITY_THRESH,
            box_nms=None,
        ),
        TEXT.but(
            help="Keep only changes whose object on either date is this concept (SAM 3 text "
            "prompt; repeat for several), with concept_a/concept_b.",
            label="Only changes of these concepts, comma-separated (SAM 3)",
        ),
        MIN_AREA,
        SIMPLIFY,
        BANDS,
        NODATA,
        OVERWRITE,
        VECTOR_OUTPUT.but(label="Changes"),
        Option(
            "save_probability",
            "raster_out",
            "Also write the per-pixel score (angle / 180) as a float32 GeoTIFF.",
            "Change score raster",
            setting=False,
            qgis="PROBABILITY",
        ),
        Option(
            "save_latent",
            "raster_out",
            "With --semantic: also write both dates' latent classes (bands 1, 2) as a GeoTIFF.",
            "Latent classes of both dates (with a model and semantic)",
            setting=False,
            qgis="LATENT",
        ),
        PREVIEW.but(help=PREVIEW.help + " Both dates side by side (.html: a swipe)."),
    ),
)

EXEMPLARS = Option(
    "exemplars", "features", "Concept segmentation with SAM 3: example boxes (label 1, or 0 "
    "for 'not like this'), in any CRS, alone or with --text.",
    "Example boxes of the concept (SAM 3)", setting=False,
)  # fmt: skip
SCORE_THRESH = Option(
    "score_thresh", "float", "--text/--exemplars: keep instances at least this confident.",
    "Concepts: keep instances scoring at least", default=0.5, advanced=True, setting=False,
)  # fmt: skip

MULTIMASK = Option(
    "multimask", "enum", "--mode prompt: the mask with the best predicted IoU, or all three.",
    "Prompt mode: the best mask or all three", default="best", choices=("best", "all"),
    advanced=True, setting=False,
)  # fmt: skip
CONTEXT = Option(
    "context", "int", "--mode prompt: pixels of image around each prompt on its chip.",
    "Prompt mode: pixels of context around each prompt", default=128, advanced=True,
    setting=False,
)  # fmt: skip
HQ_ONLY = Option(
    "hq_only", "bool", "HQ-SAM decoding with the HQ output token's mask alone (an sam_hq_* "
    "encoder).", "HQ-SAM's HQ mask alone", default=False, advanced=True, setting=False,
)  # fmt: skip

SEGMENT = Command(
    name="segment",
    cli_name="segment",
    overlap_divisor=4,
    options=(
        Option("image", "raster", "", "Raster", positional=True, setting=False, qgis="INPUT"),
        Option(
            "mode",
            "enum",
            "anything: SAM automatic mask generation on every chip; prompt: one mask per "
            "prompt of --prompts.",
            "Mode",
            default="anything",
            choices=("anything", "prompt"),
            setting=False,
        ),
        Option(
            "prompts",
            "features",
            "--mode prompt: points (attribute label 1/0, optional group) and polygons (boxes), "
            "in any CRS.",
            "Prompts (points, label 1/0; polygons = boxes)",
            setting=False,
        ),
        TEXT,
        EXEMPLARS,
        SCORE_THRESH,
        MULTIMASK,
        CONTEXT,
        Option(
            "model",
            "file",
            "Semantic segmentation with a checkpoint from `rs-sam train segment` (polygons "
            "with class_id, class_name, area_m2, score_mean) instead of SAM objects.",
            "Semantic model (.ckpt) from `rs-sam train segment`",
            setting=False,
        ),
        Option(
            "hq",
            "bool",
            "HQ-SAM decoding (--encoder sam_hq_vit_b/l/h/tiny): the HQ output token's mask "
            "logits added to SAM's; one mask per prompt or grid point.",
            "HQ-SAM masks (an sam_hq_* encoder)",
            default=False,
            setting=False,
        ),
        HQ_ONLY,
        *_model_options(
            chip_size=f"Chip side [default: {DEFAULT_CHIP_SIZE}, or the model's].",
            overlap="Pixels shared by neighbouring chips; objects smaller than this are always "
            "seen whole [default: chip size / 4].",
            points=POINTS_PER_SIDE,
            pred_iou=PRED_IOU_THRESH,
            stability=STABILITY_THRESH,
            box_nms=BOX_NMS_THRESH,
        ),
        MIN_AREA,
        SIMPLIFY,
        BANDS,
        NODATA,
        OVERWRITE,
        VECTOR_OUTPUT.but(label="Objects"),
        Option(
            "save_classes",
            "raster_out",
            "With --model: also write the class raster (uint8, colour table) as a GeoTIFF.",
            "With a model: class raster",
            setting=False,
        ),
        Option(
            "save_probability",
            "raster_out",
            "With --model: also write the per-class probabilities as a float32 GeoTIFF.",
            "With a model: class probabilities",
            setting=False,
        ),
        PREVIEW,
    ),
)

SAM_OBJECTS = Command(
    name="sam_objects",
    cli_name="sam-objects",
    overlap_divisor=4,
    options=(
        Option("source", "raster", "", "Raster", positional=True, setting=False, qgis="INPUT"),
        *_model_options(
            chip_size=f"Chip side [default: {DEFAULT_CHIP_SIZE}, or the model's].",
            overlap="Pixels shared by chips [default: chip size / 4].",
            points=POINTS_PER_SIDE,
            pred_iou=PRED_IOU_THRESH.but(default=0.96, help="SSRS's setting."),
            stability=STABILITY_THRESH.but(help="Mask stability."),
            box_nms=BOX_NMS_THRESH.but(default=0.5, help="SSRS's setting."),
        ),
        MIN_AREA.but(
            default="50px",
            help="Drop objects smaller than this (SSRS: 50 px); '200m2' for square metres.",
        ),
        BANDS,
        NODATA,
        OVERWRITE,
        Option(
            "output",
            "raster_out",
            "Object-id raster (.tif) for a raster; a folder for a folder of images.",
            "Object ids",
            short="-o",
            required=True,
            folders=True,
            setting=False,
        ),
        Option(
            "boundary",
            "raster_out",
            "Also write the 0/1 boundary map (.tif, or a folder).",
            "Boundaries",
            folders=True,
            setting=False,
        ),
    ),
)

COMMANDS: dict[str, Command] = {c.name: c for c in (DETECT_CHANGE, SEGMENT, SAM_OBJECTS)}
PSEUDO_LABELS = pseudo_label_commands(globals())  # pseudo-label's table lives there
COMMANDS.update((c.name, c) for c in PSEUDO_LABELS)
