"""The options of ``pseudo-label`` (labels from proposals) and of its review rebuild.

Standard library only and no import of :mod:`rs_sam.options`: that module loads this one
beside itself (also in the QGIS plugin's copy) and hands its namespace to :func:`commands`, which
reuses its shared options. The model options have no default here: unset, they take the
defaults of the command that makes the proposals (``detect-change`` or ``segment``).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rs_sam.options import Command

#: Statuses of the review file's polygons: what the person decided.
STATUSES = ("proposed", "accepted", "rejected", "added")
#: Objects scoring at least this are labels [default].
MIN_SCORE = 0.5
#: Unset ``uncertain_score``: this far below ``min_score`` (objects between are ignored).
UNCERTAIN_MARGIN = 0.1


def commands(table: Mapping[str, Any]) -> tuple[Command, Command]:
    """``pseudo_label`` and ``pseudo_label_review``, built from the names of ``table`` (the
    namespace of :mod:`rs_sam.options`: its ``Option``, ``Command`` and shared options)."""
    table = SimpleNamespace(**table)
    option, command = table.Option, table.Command
    output = option(
        "output", "folder_out",
        "Folder for the labels (label.tif), the review file (review.gpkg) and the training "
        "config (train_change.yaml or train_segment.yaml).", "Output folder",
        short="-o", required=True, setting=False, folders=True,
    )  # fmt: skip
    overwrite = table.OVERWRITE
    own = " [default: detect-change's or segment's]"
    model = [
        table.ENCODER.but(default=None, help="Encoder [default: mobile_sam; sam3 with --text]."),
        table.WEIGHTS, table.CHECKPOINT, table.DEVICE,
        table.POINTS_PER_SIDE.but(default=None, help=table.POINTS_PER_SIDE.help + own),
        table.BATCH_SIZE,
        table.PRED_IOU_THRESH.but(default=None, help=table.PRED_IOU_THRESH.help + own),
        table.STABILITY_THRESH,
        option("chip_size", "int", "Chip side in pixels [default: 1024].", "Chip side in pixels",
               advanced=True),
        option("overlap", "int", "Pixels shared by neighbouring chips [default: by chip size].",
               "Pixels shared by neighbouring chips", advanced=True),
        option("threshold", "float", "Change proposals: change angle in degrees [default: 145].",
               "Change angle threshold (degrees) [default: 145]", advanced=True),
    ]  # fmt: skip
    generate = command(
        name="pseudo_label",
        cli_name="pseudo-label",
        overlap_divisor=8,
        options=(
            option(
                "image",
                "raster",
                "",
                "Raster (the earlier date for change)",
                positional=True,
                setting=False,
                qgis="INPUT",
            ),
            option(
                "later",
                "raster",
                "",
                "Later raster (change labels; empty: segment labels)",
                positional=True,
                setting=False,
                qgis="LATER",
            ),
            option(
                "vectors",
                "features",
                "Proposals from this polygon file (any CRS; a score column gives each "
                "one's confidence, else 1) instead of a model.",
                "Proposals from polygons instead of a model",
                setting=False,
            ),
            option(
                "score_field",
                "string",
                "--vectors: the column holding each polygon's score.",
                "Score column of the polygons",
                default="score",
                advanced=True,
                setting=False,
            ),
            option(
                "prompts",
                "features",
                "Segment labels: one object per point or box (segment --mode prompt).",
                "Prompts (points, label 1/0; polygons = boxes)",
                setting=False,
            ),
            table.TEXT.but(
                help="Segment labels: every instance of this noun phrase, one class "
                "each (SAM 3; repeat for several)."
            ),
            table.SCORE_THRESH.but(
                default=None, help="--text: keep instances at least this confident [default: 0.5]."
            ),
            option(
                "min_score",
                "float",
                "Objects scoring at least this become labels.",
                "Objects scoring at least this become labels",
                default=MIN_SCORE,
            ),
            option(
                "uncertain_score",
                "float",
                "Objects scoring from this up to --min-score become ignore (255), lower ones "
                f"background [default: --min-score - {UNCERTAIN_MARGIN}].",
                f"Ignore objects scoring from [default: min score - {UNCERTAIN_MARGIN}]",
            ),
            *model,
            table.MIN_AREA,
            table.BANDS,
            table.NODATA,
            overwrite,
            output,
        ),
    )
    review = command(
        name="pseudo_label_review",
        cli_name="pseudo-label",
        overlap_divisor=8,
        options=(
            option(
                "from_review",
                "file",
                f"Rebuild the labels from a reviewed review.gpkg: statuses "
                f"{', '.join(STATUSES)}; accepted and added polygons are labels, rejected "
                "ones background, proposed (unreviewed) ones ignore.",
                "Reviewed review.gpkg (saved edits)",
                required=True,
                setting=False,
            ),
            overwrite,
            output,
        ),
    )
    return generate, review
