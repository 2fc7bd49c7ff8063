"""``pseudo_label`` / ``pseudo_label_review`` from option values (the CLI's and QGIS's call)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rs_sam.change.settings import ChangeSettings
from rs_sam.progress import ProgressCallback
from rs_sam.pseudo_label.engine import PseudoLabelResult, labels_from_review, pseudo_label
from rs_sam.segmentation.settings import SegmentSettings

#: Options of ``pseudo_label`` that are the proposing command's settings.
_MODEL_OPTIONS = (
    "encoder", "weights", "checkpoint", "device", "points_per_side", "batch_size",
    "pred_iou_thresh", "stability_thresh", "chip_size", "overlap", "threshold", "min_area",
    "bands", "nodata",
)  # fmt: skip


def run_pseudo_label(
    command: str,
    given: Mapping[str, Any],
    *,
    show_progress: bool = True,
    on_progress: ProgressCallback | None = None,
) -> PseudoLabelResult:
    """Run ``command`` with the option values ``given`` (defaults filled in)."""
    if command == "pseudo_label_review":
        return labels_from_review(
            given["from_review"], given["output"], overwrite=given["overwrite"]
        )
    # unset model options take detect-change's or segment's own defaults
    model = {k: given[k] for k in _MODEL_OPTIONS if given.get(k) is not None}
    kind = ChangeSettings if given.get("later") else SegmentSettings  # reads its own options
    return pseudo_label(
        given["image"],
        given["output"],
        later=given.get("later") or None,
        vectors=given.get("vectors"),
        score_field=given["score_field"],
        prompts=given.get("prompts"),
        text=given.get("text") or None,
        score_thresh=given.get("score_thresh"),
        min_score=given["min_score"],
        uncertain_score=given.get("uncertain_score"),
        settings=kind.from_options(model),
        overwrite=given["overwrite"],
        show_progress=show_progress,
        on_progress=on_progress,
    )
