"""The review file: pseudo-label polygons a person accepts, rejects, redraws or adds in QGIS.

``review.gpkg`` holds one layer, ``review``, with a polygon per proposal: ``id``, ``status``
(``proposed`` when written), ``score`` (the proposal's confidence), ``auto`` (what the
scores made of it: ``label``, ``ignore`` or ``background``) and ``class_name``. The run's
record (task, images, classes, thresholds, model) is the layer's metadata, which edits in
QGIS leave alone; "Save as" into a new file drops it, so the file must be edited in place.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pyogrio
from shapely import MultiPolygon, Polygon

from rs_sam.errors import ConfigError, RsSamError
from rs_sam.pseudo_label_options import STATUSES

LAYER = "review"
#: Layer-metadata key of the run record.
RECORD_KEY = "rs_sam_pseudo_label"
COLUMNS = ["id", "status", "score", "auto", "class_name", "geometry"]


class ReviewFileError(RsSamError, ValueError):
    """A review file cannot be read back: not one of ours, or statuses the engine does not know."""


@dataclass(frozen=True)
class RunRecord:
    """What rebuilding labels from a review needs besides the polygons.

    Attributes:
        task: ``change`` (``image`` and ``later``) or ``segment`` (``image``).
        image, later: The rasters as given (absolute local paths; comma lists of band files).
        classes: Label value ``i + 1`` of each class (change: ``["change"]``).
        min_score, uncertain_score: The thresholds of the automatic pass.
        proposals: Where the polygons came from (for the config's comment).
        model: The encoder, weights and checkpoint the training config starts from.
        bands, nodata: Image bands and nodata override, passed on to training.
    """

    task: str
    image: str
    later: str | None
    classes: list[str]
    min_score: float
    uncertain_score: float
    proposals: str
    model: dict[str, Any] = field(default_factory=dict)
    bands: list[int] | None = None
    nodata: float | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str, path: Path) -> RunRecord:
        try:
            return cls(**json.loads(text))
        except (ValueError, TypeError) as err:
            raise ReviewFileError(
                f"{path}: its rs-sam run record is damaged ({err}); write it again with "
                "rs-sam pseudo-label"
            ) from err


def write_review(gdf: gpd.GeoDataFrame, record: RunRecord, path: Path) -> None:
    """Write the proposals with ``status = proposed`` and the run record (a staged path)."""
    frame = gdf[COLUMNS].copy()
    multi = [MultiPolygon([g]) if isinstance(g, Polygon) else g for g in frame.geometry]
    frame = frame.set_geometry(gpd.GeoSeries(multi, index=frame.index, crs=frame.crs))
    frame.to_file(
        path, driver="GPKG", layer=LAYER, engine="pyogrio", index=False,
        geometry_type="MultiPolygon", layer_metadata={RECORD_KEY: record.to_json()},
    )  # fmt: skip


def read_review(path: str | Path) -> tuple[gpd.GeoDataFrame, RunRecord]:
    """The reviewed polygons (valid statuses, in the record's CRS) and the run record.

    Raises:
        ReviewFileError: missing file or layer, no run record, a missing or unknown status.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise ReviewFileError(f"review file {path} does not exist; pass the review.gpkg to rebuild")
    try:
        layers = [name for name, _ in pyogrio.list_layers(path)]
    except pyogrio.errors.DataSourceError as err:
        raise ReviewFileError(f"review file {path} is not a GeoPackage ({err})") from err
    if LAYER not in layers:
        raise ReviewFileError(
            f"{path} has no layer '{LAYER}' (layers: {', '.join(layers) or 'none'}); pass the "
            "review.gpkg written by rs-sam pseudo-label"
        )
    text = (pyogrio.read_info(path, layer=LAYER).get("layer_metadata") or {}).get(RECORD_KEY)
    if not text:
        raise ReviewFileError(
            f"{path} carries no rs-sam run record (a copy saved as a new file loses it); edit "
            "the review.gpkg written by rs-sam pseudo-label in place and pass that file"
        )
    record = RunRecord.from_json(text, path)
    gdf = gpd.read_file(path, layer=LAYER, engine="pyogrio", fid_as_index=True)
    missing = [c for c in ("status", "class_name") if c not in gdf.columns]
    if missing:
        raise ReviewFileError(f"{path} lacks the column(s) {', '.join(missing)}; restore them")
    check_statuses(gdf, path)
    check_classes(gdf, record, path)
    return gdf, record


def check_statuses(gdf: gpd.GeoDataFrame, path: Path) -> None:
    """One-line errors for features without a status or with one outside :data:`STATUSES`."""
    status = gdf["status"]
    empty = status.isna() | (status.astype(str).str.strip() == "")
    if empty.any():
        raise ReviewFileError(
            f"{path}: {int(empty.sum())} feature(s) have no status (fid "
            f"{_rows(empty)}); set it to added for polygons you drew, or accepted/rejected"
        )
    unknown = ~status.isin(STATUSES)
    if unknown.any():
        values = ", ".join(repr(v) for v in sorted(set(status[unknown])))
        raise ReviewFileError(
            f"{path}: unknown status {values} (fid {_rows(unknown)}); use one of "
            f"{', '.join(STATUSES)}"
        )


def check_classes(gdf: gpd.GeoDataFrame, record: RunRecord, path: Path) -> None:
    """Labelled polygons of a segment review must name one of the run's classes."""
    labelled = gdf["status"].isin(("accepted", "added"))
    if record.task == "change":
        return
    names = gdf["class_name"].where(gdf["class_name"].notna(), "")
    if len(record.classes) == 1:  # one class: an empty name means it
        names = names.replace("", record.classes[0])
    bad = labelled & ~names.isin(record.classes)
    if bad.any():
        values = ", ".join(repr(v) for v in sorted(set(names[bad])))
        raise ReviewFileError(
            f"{path}: class_name {values} (fid {_rows(bad)}) is not one of this run's classes "
            f"{', '.join(record.classes)}; fix the value"
        )
    gdf["class_name"] = names


def _rows(mask: Any) -> str:
    """The feature ids (QGIS's fid) where ``mask`` holds, the first few."""
    rows = mask.index[np.asarray(mask)].tolist()
    return ", ".join(map(str, rows[:8])) + (", ..." if len(rows) > 8 else "")


def check_thresholds(min_score: float, uncertain_score: float) -> None:
    """``uncertain_score`` must not exceed ``min_score``."""
    if not (np.isfinite(min_score) and np.isfinite(uncertain_score)):
        raise ConfigError("--min-score and --uncertain-score must be numbers")
    if uncertain_score > min_score:
        raise ConfigError(
            f"--uncertain-score {uncertain_score} is above --min-score {min_score}; give a "
            "value at most --min-score (equal: no object is ignored)"
        )
