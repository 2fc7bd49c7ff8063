"""Training data from proposals: label raster, review file and training config in one folder.

Proposals come from the library's own runs (:func:`rs_sam.api.detect_change` zero-shot for
a pair; :func:`rs_sam.api.segment` anything, prompts or concepts for one raster) or from a
polygon file. Each proposal's score decides what it becomes:

* ``score >= min_score``: a label (change = 1; segment classes 1..k, the best score on top);
* ``uncertain_score <= score < min_score``: ignore (255) — neither object nor background,
  so an uncertain proposal teaches nothing; ignore wins where it overlaps a label;
* lower: background (0), as every pixel no proposal covers.

A reviewed file (:mod:`.review`) is rebuilt with the person's decisions instead: accepted
and added polygons are labels, rejected ones background, proposed (unreviewed) ones ignore;
decisions win over the unreviewed.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from rs_sam import api
from rs_sam.change.settings import ChangeSettings
from rs_sam.data.labels import IGNORE
from rs_sam.data.rasters import RasterInfo, open_date, parse_date_input
from rs_sam.errors import ConfigError, RsSamError
from rs_sam.inference.outputs import RunOutputs, Staging
from rs_sam.progress import ProgressCallback
from rs_sam.pseudo_label.label_raster import BACKGROUND, write_label_raster
from rs_sam.pseudo_label.review import (
    COLUMNS,
    RunRecord,
    check_thresholds,
    read_review,
    write_review,
)
from rs_sam.pseudo_label.train_config import config_name, config_text
from rs_sam.pseudo_label_options import MIN_SCORE, UNCERTAIN_MARGIN
from rs_sam.segmentation.concepts import concept_texts
from rs_sam.segmentation.settings import SegmentSettings

PathLike = str | Path
LABEL_NAME, REVIEW_NAME = "label.tif", "review.gpkg"


class VectorSourceError(RsSamError, ValueError):
    """A polygon file given as proposals cannot be used."""


@dataclass(frozen=True)
class PseudoLabelResult:
    """What a run wrote, for the summary line and for callers."""

    folder: Path
    label: Path
    review: Path | None
    config: Path
    task: str
    objects: dict[str, int]  # polygons by what they became (label, ignore, background)
    pixels: dict[int, int]  # label raster pixels by value
    seconds: float

    def summary(self) -> str:
        kinds = ", ".join(f"{n} {kind}" for kind, n in self.objects.items()) or "no polygons"
        total = sum(self.pixels.values()) or 1
        share = ", ".join(f"{v}: {n / total:.1%}" for v, n in sorted(self.pixels.items()))
        return (
            f"{self.task} labels from {kinds} -> {self.label} (pixels {share}); train with "
            f"rs-sam train {self.task} --config {self.config} ({self.seconds:.1f} s)"
        )


def pseudo_label(
    image: PathLike,
    output: PathLike,
    *,
    later: PathLike | None = None,
    vectors: PathLike | None = None,
    score_field: str = "score",
    prompts: PathLike | None = None,
    text: str | Sequence[str] | None = None,
    score_thresh: float | None = None,
    min_score: float = MIN_SCORE,
    uncertain_score: float | None = None,
    settings: ChangeSettings | SegmentSettings | None = None,
    overwrite: bool = False,
    show_progress: bool = True,
    on_progress: ProgressCallback | None = None,
) -> PseudoLabelResult:
    """Labels of ``image`` (and ``later``: change labels) from proposals, in folder ``output``.

    Proposals: ``vectors`` (a polygon file, scores from ``score_field``, missing = 1), else
    zero-shot detect-change for a pair, else segment (``prompts``: prompt mode; ``text``:
    concepts, one class each; neither: anything). ``settings`` are detect-change's
    (:class:`ChangeSettings`) for a pair, segment's otherwise. See the module docstring for
    what the scores make of each proposal.
    """
    start = time.perf_counter()
    task = "change" if later is not None else "segment"
    uncertain = min_score - UNCERTAIN_MARGIN if uncertain_score is None else uncertain_score
    check_thresholds(min_score, uncertain)
    texts = concept_texts(text)
    settings = _check_request(task, vectors, prompts, texts, settings)
    grid = _grid(image)
    if later is not None:
        _grid(later)  # a missing or broken later date fails before any output exists
    given = None if vectors is None else _read_vectors(vectors, score_field, grid, task)
    classes = ["change"] if task == "change" else list(texts) or ["object"]
    if given is not None and task == "segment":
        classes = sorted(set(given["class_name"]))
    outputs = RunOutputs(overwrite=overwrite)
    folder, label, review, config = _register(outputs, output, task, with_review=True)
    record = RunRecord(
        task=task, image=_absolute(image), later=None if later is None else _absolute(later),
        classes=classes,
        min_score=min_score, uncertain_score=uncertain,
        proposals=_describe(task, vectors, prompts, texts),
        model=_training_model(settings, bool(texts)),
        bands=list(settings.bands) if settings.bands else None, nodata=settings.nodata,
    )  # fmt: skip
    with outputs.staging() as stage:
        work = stage.workdir
        work.mkdir(parents=True, exist_ok=True)
        found = given
        if found is None:
            found = _run_model(record, settings, texts, prompts, score_thresh, work,
                               show_progress, on_progress)  # fmt: skip
        proposals = _classify(found, record)
        write_review(proposals, record, stage.path(review))  # type: ignore[arg-type]
        pixels = _write(stage, label, config, grid, record, _auto_order(proposals, record), folder)
    counts = proposals["auto"].value_counts()
    objects = {k: int(counts.get(k, 0)) for k in ("label", "ignore", "background")}
    return PseudoLabelResult(folder, label, review, config, task, objects, pixels,
                             time.perf_counter() - start)  # fmt: skip


def labels_from_review(
    review: PathLike, output: PathLike, *, overwrite: bool = False
) -> PseudoLabelResult:
    """Rebuild the label raster and training config in ``output`` from an edited review file.

    Raises:
        ReviewFileError: not a review file of rs-sam, a missing or unknown status, a class
            name outside the run's classes.
    """
    start = time.perf_counter()
    gdf, record = read_review(review)
    grid = _grid(record.image)
    if gdf.crs is not None and grid.crs is not None and gdf.crs != grid.crs:
        gdf = gdf.to_crs(grid.crs)
    gdf = gdf[~(gdf.geometry.isna() | gdf.geometry.is_empty)]
    gdf = gdf.set_geometry(gdf.geometry.make_valid())
    outputs = RunOutputs(overwrite=overwrite)
    folder, label, _, config = _register(outputs, output, record.task, with_review=False)
    values = _values(gdf, record)
    rank = gdf["status"].map({"proposed": 0, "rejected": 1, "accepted": 2, "added": 2})
    burn = np.where(rank == 0, IGNORE, np.where(rank == 1, BACKGROUND, values))
    order = pd.DataFrame({"geometry": gdf.geometry.values, "value": burn, "rank": rank.values})
    order = order.sort_values("rank", kind="stable")
    with outputs.staging() as stage:
        pixels = _write(stage, label, config, grid, record, order, folder)
    counts = gdf["status"].value_counts()
    objects = {k: int(v) for k, v in counts.items()}
    return PseudoLabelResult(folder, label, None, config, record.task, objects, pixels,
                             time.perf_counter() - start)  # fmt: skip


def _check_request(
    task: str, vectors: object, prompts: object, texts: tuple[str, ...],
    settings: ChangeSettings | SegmentSettings | None,
) -> ChangeSettings | SegmentSettings:  # fmt: skip
    """The rules between the proposal sources, as one-line ConfigErrors; the settings."""
    if vectors is not None and (prompts is not None or texts):
        raise ConfigError("--vectors gives the proposals itself; drop --prompts/--text")
    if task == "change" and (prompts is not None or texts):
        raise ConfigError(
            "--prompts/--text make segment labels of one raster; drop the later raster"
        )
    if prompts is not None and texts:
        raise ConfigError("--prompts and --text exclude each other; give one")
    kind = ChangeSettings if task == "change" else SegmentSettings
    if settings is None:
        return kind()
    if not isinstance(settings, kind):
        raise ConfigError(f"{task} labels take {kind.__name__}, not {type(settings).__name__}")
    return settings


def _grid(value: PathLike) -> RasterInfo:
    """The raster's header (a stack of band files is read through a temporary VRT)."""
    with tempfile.TemporaryDirectory(prefix="rs-sam-grid-") as folder:
        return open_date(value, workdir=Path(folder))


def _absolute(value: PathLike) -> str:
    """The raster argument with local paths made absolute (the config may be used elsewhere)."""
    parts = parse_date_input(value)
    return ",".join(str(p.resolve()) if isinstance(p, Path) else p for p in parts)


def _describe(task: str, vectors: object, prompts: object, texts: tuple[str, ...]) -> str:
    if vectors is not None:
        return f"polygons of {vectors}"
    if task == "change":
        return "rs-sam detect-change (zero-shot)"
    if texts:
        return f"rs-sam segment --text {', '.join(texts)}"
    return "rs-sam segment --mode prompt" if prompts is not None else "rs-sam segment (anything)"


def _training_model(settings: ChangeSettings | SegmentSettings, concepts: bool) -> dict[str, Any]:
    """The encoder the training config starts from: the run's (the default with concepts)."""
    if concepts:  # SAM 3 proposes; a head trains on a registry encoder
        return {"encoder": SegmentSettings().encoder, "weights": settings.weights}
    checkpoint = None if settings.checkpoint is None else str(Path(settings.checkpoint).resolve())
    return {"encoder": settings.encoder, "weights": settings.weights, "checkpoint": checkpoint}


def _register(
    outputs: RunOutputs, output: PathLike, task: str, *, with_review: bool
) -> tuple[Path, Path, Path | None, Path]:
    """The output folder (made now, removed again on failure) and the files in it."""
    folder = outputs.folder(output, "output folder")
    try:
        label = outputs.raster(folder / LABEL_NAME, "label raster")
        review = outputs.vector(folder / REVIEW_NAME, "review file") if with_review else None
        config = outputs.file(folder / config_name(task), "training config")
    except BaseException:
        outputs.abandon()
        raise
    return folder, label, review, config  # type: ignore[return-value]  # label is set


def _run_model(
    record: RunRecord, settings: Any, texts: tuple[str, ...], prompts: PathLike | None,
    score_thresh: float | None, work: Path, show_progress: bool,
    on_progress: ProgressCallback | None,
) -> gpd.GeoDataFrame:  # fmt: skip
    """Proposals from the library's own runs, as ``score``, ``class_name`` and geometry."""
    found = work / "proposals.gpkg"
    progress = {"show_progress": show_progress, "on_progress": on_progress}
    if record.task == "change":
        api.detect_change(record.image, record.later, found, settings=settings, **progress)  # type: ignore[arg-type]
        gdf = gpd.read_file(found, engine="pyogrio")
        return _proposals(gdf, gdf["score_mean"], "change")
    extra: dict[str, Any] = {} if score_thresh is None else {"score_thresh": score_thresh}
    if texts:
        api.segment(record.image, found, text=texts, settings=settings, **extra, **progress)  # type: ignore[arg-type]
    elif prompts is not None:
        api.segment(record.image, found, mode="prompt", prompts=prompts, settings=settings,
                    **progress)  # type: ignore[arg-type]  # fmt: skip
    else:
        api.segment(record.image, found, settings=settings, **progress)  # type: ignore[arg-type]
    gdf = gpd.read_file(found, engine="pyogrio")
    return _proposals(gdf, gdf["score"], gdf["prompt"] if texts else "object")


def _read_vectors(
    path: PathLike, score_field: str, grid: RasterInfo, task: str
) -> gpd.GeoDataFrame:
    """Polygons of a vector file in the grid's CRS, with their scores (missing = 1) and
    classes (segment: a ``class_name`` column, else one class ``object``)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise VectorSourceError(f"--vectors {path} does not exist; pass a polygon file")
    try:
        gdf = gpd.read_file(path, engine="pyogrio")
    except Exception as err:  # pyogrio's errors for unreadable files vary by driver
        raise VectorSourceError(f"--vectors {path} is not a readable vector file ({err})") from err
    if gdf.crs is None:
        raise VectorSourceError(f"--vectors {path} has no CRS; assign one (e.g. in QGIS)")
    gdf = gdf[gdf.geometry.notna() & gdf.geom_type.isin(["Polygon", "MultiPolygon"])]
    if gdf.empty:
        raise VectorSourceError(f"--vectors {path} holds no polygons; pass polygons")
    gdf = gdf.to_crs(grid.crs)
    if score_field in gdf.columns:
        score = pd.to_numeric(gdf[score_field], errors="coerce").fillna(1.0)
    elif score_field != "score":
        raise VectorSourceError(
            f"--vectors {path} has no column {score_field!r}; columns: "
            f"{', '.join(c for c in gdf.columns if c != 'geometry')}"
        )
    else:
        score = pd.Series(1.0, index=gdf.index)
    classes: Any = "change" if task == "change" else "object"
    if task == "segment" and "class_name" in gdf.columns:
        classes = gdf["class_name"].fillna("object").astype(str)
    return _proposals(gdf, score, classes)


def _proposals(gdf: gpd.GeoDataFrame, score: Any, class_name: Any) -> gpd.GeoDataFrame:
    out = gpd.GeoDataFrame(
        {"score": np.asarray(score, dtype=float), "class_name": class_name},
        geometry=gdf.geometry.values, crs=gdf.crs,
    )  # fmt: skip
    return out.reset_index(drop=True)


def _classify(found: gpd.GeoDataFrame, record: RunRecord) -> gpd.GeoDataFrame:
    """``id``, ``status`` (proposed) and ``auto`` (label / ignore / background) per proposal."""
    score = found["score"].to_numpy()
    auto = np.where(
        score >= record.min_score,
        "label",
        np.where(score >= record.uncertain_score, "ignore", "background"),
    )
    out = found.assign(id=np.arange(1, len(found) + 1), status="proposed", auto=auto)
    return out[COLUMNS]


def _values(gdf: gpd.GeoDataFrame, record: RunRecord) -> np.ndarray:
    """Each polygon's label value: 1 for change, else its class's position + 1."""
    if record.task == "change":
        return np.ones(len(gdf), np.uint8)
    index = {name: i for i, name in enumerate(record.classes, start=1)}
    return gdf["class_name"].map(index).fillna(BACKGROUND).to_numpy(np.uint8)


def _auto_order(proposals: gpd.GeoDataFrame, record: RunRecord) -> pd.DataFrame:
    """Burn order of the automatic pass: labels by rising score, then ignore over them."""
    kept = proposals[proposals["auto"] != "background"]
    ignore = (kept["auto"] == "ignore").to_numpy()
    frame = pd.DataFrame(
        {"geometry": kept.geometry.values, "score": kept["score"].to_numpy(), "ignore": ignore,
         "value": np.where(ignore, IGNORE, _values(kept, record))}
    )  # fmt: skip
    return frame.sort_values(["ignore", "score"], kind="stable")


def _write(
    stage: Staging, label: Path, config: Path, grid: RasterInfo, record: RunRecord,
    order: pd.DataFrame, folder: Path,
) -> dict[int, int]:  # fmt: skip
    """The label raster (``order``'s geometries and values, burnt in order) and the config."""
    pixels = write_label_raster(
        stage.path(label), grid, list(order["geometry"]), list(order["value"])
    )
    text = config_text(record, label, folder / "run", config)
    stage.path(config).write_text(text, encoding="utf-8")
    return pixels
