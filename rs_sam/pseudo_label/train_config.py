"""The training config written beside pseudo-labels: ``rs-sam train change|segment --config``.

Plain YAML data (no tags), in the layouts the training configs read: ``geo`` (two dates and
a change label on the first date's grid) or ``raster`` (an image and a label of class ids).
Validation uses the same pseudo-labels (there is no held-out truth); a comment says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from rs_sam.data.labels import IGNORE
from rs_sam.pseudo_label.review import RunRecord
from rs_sam.version import __version__

#: Chip side of the written config (pixels; the training chips, not the model input).
CHIP_SIZE = 256
MAX_EPOCHS = 20


def config_name(task: str) -> str:
    return f"train_{task}.yaml"


def training_config(record: RunRecord, label: Path, run_dir: Path) -> dict[str, Any]:
    """The config's sections for ``record``'s task, with ``label`` as its label raster."""
    model: dict[str, Any] = {key: value for key, value in record.model.items() if value is not None}
    model.update(freeze_encoder=True, optimizer="adamw", lr=0.001, weight_decay=0.0001)
    data: dict[str, Any] = {"chip_size": CHIP_SIZE, "batch_size": 4, "augment": True}
    if record.bands:
        data["bands"] = list(record.bands)
    source: dict[str, Any]
    if record.task == "change":
        model["dice_weight"] = 1.0
        data["swap_dates"] = True
        source = {"layout": "geo", "image_a": record.image, "image_b": record.later,
                  "label": str(label)}  # fmt: skip
    else:
        model.update(object_weight=0.0, boundary_weight=0.0)  # no object maps here
        classes = [{"name": "background", "id": 0}]
        classes += [{"name": name, "id": i} for i, name in enumerate(record.classes, start=1)]
        data["classes"] = {"classes": classes, "ignore_values": [IGNORE]}
        source = {"layout": "raster", "image": record.image, "label": str(label)}
    if record.nodata is not None:
        source["nodata"] = record.nodata
    data.update(train=[source], val=[dict(source)])
    trainer = {"max_epochs": MAX_EPOCHS, "default_root_dir": str(run_dir)}
    return {"seed": 0, "model": model, "data": data, "trainer": trainer}


def config_text(record: RunRecord, label: Path, run_dir: Path, config_path: Path) -> str:
    """The YAML text with a header that says how to train and what the labels mean."""
    what = "change" if record.task == "change" else ", ".join(record.classes)
    header = [
        f"# Written by rs-sam {__version__} pseudo-label beside its labels; train with",
        f"#   rs-sam train {record.task} --config {config_path}",
        f"# {label.name}: 0 background, 1.. = {what}, {IGNORE} = ignore (nodata). Proposals:",
        f"#   {record.proposals}; min score {record.min_score}, uncertain from "
        f"{record.uncertain_score}.",
        "# val: the same pseudo-labels (no held-out truth); point it at real labels if you",
        "# have them, and evaluate against real labels with rs-sam evaluate.",
    ]
    body = yaml.safe_dump(
        training_config(record, label, run_dir), sort_keys=False, default_flow_style=False
    )
    return "\n".join(header) + "\n" + body
