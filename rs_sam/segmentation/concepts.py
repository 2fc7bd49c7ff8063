"""``segment --text/--exemplars``: every instance of a concept, tiled, merged across chips.

raster -> one stretch for the whole raster -> overlapping chips -> SAM 3 instances of each
text (and/or example boxes) per chip -> objects cut by chip borders merged exactly once per
prompt (the rule of ``--mode anything``) -> polygons with ``id``, ``prompt``, ``score``,
``area_m2``. Memory does not grow with the raster: chips are read by windows, and only the
per-chip polygons are kept.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd

from rs_sam.data.bands import select_bands
from rs_sam.data.grid import ChipWindow, chip_windows
from rs_sam.data.normalize import JointStretch
from rs_sam.data.rasters import DateInput, open_date
from rs_sam.data.scene import Scene
from rs_sam.errors import ConfigError
from rs_sam.inference.engine import ProgressCallback, chip_jobs, run_chips
from rs_sam.inference.jobs import ChipJobCache
from rs_sam.inference.outputs import RunOutputs
from rs_sam.models.concepts import ConceptSegmenter
from rs_sam.segmentation.anything import SegmentResult, objects_frame
from rs_sam.segmentation.chip_tasks import ConceptTask
from rs_sam.segmentation.exemplars import read_exemplars
from rs_sam.segmentation.merge import merge_objects
from rs_sam.segmentation.objects import ChipObject
from rs_sam.segmentation.settings import SegmentSettings
from rs_sam.vector.io import write_vector_file

#: Output columns, in order.
CONCEPT_COLUMNS = ["id", "prompt", "score", "area_m2", "geometry"]


def concept_texts(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """``--text`` values (repeated, or one comma-separated string from QGIS), checked.

    Raises:
        ConfigError: an empty or repeated text.
    """
    if text is None:
        return ()
    items = text.split(",") if isinstance(text, str) else [t for v in text for t in v.split(",")]
    texts = tuple(" ".join(t.split()) for t in items)
    if any(not t for t in texts):
        raise ConfigError("--text is empty; give a noun phrase such as --text building")
    repeated = sorted({t for t in texts if texts.count(t) > 1})
    if repeated:
        raise ConfigError(f"--text {repeated[0]!r} is given twice; give each concept once")
    return texts


def segment_concepts(
    image: DateInput,
    output: str | Path,
    *,
    texts: Sequence[str] = (),
    exemplars: str | Path | None = None,
    score_thresh: float = 0.5,
    settings: SegmentSettings | None = None,
    segmenter: ConceptSegmenter | None = None,
    cache: ChipJobCache | None = None,
    overwrite: bool = False,
    show_progress: bool = True,
    on_progress: ProgressCallback | None = None,
) -> SegmentResult:
    """Every instance of each text (and/or like the example boxes) in a raster, as polygons.

    Args:
        texts: noun phrases, each its own class (``prompt`` column).
        exemplars: a vector file (any CRS) of example boxes (``label`` 0 = negative);
            with texts they refine every text, alone they are one concept ``exemplar``.
        score_thresh: keep instances at least this confident (0..1).
        settings: encoder (``sam3``), tiling, min_area, simplify, bands, cluster.
        segmenter: replaces SAM 3 (tests, experiments).
        cache: the model and readers of several runs (default: this run's own).

    Raises:
        ConfigError, PromptError: bad texts, threshold or example file, before any work.
    """
    started = time.perf_counter()
    settings = settings or SegmentSettings(encoder="sam3")
    texts = concept_texts(list(texts))
    if not texts and exemplars is None:
        raise ConfigError("concept segmentation needs --text or --exemplars")
    if not 0.0 <= score_thresh <= 1.0:
        raise ConfigError(f"--score-thresh {score_thresh} must be between 0 and 1")
    outputs = RunOutputs(overwrite=overwrite)
    output = outputs.vector(output)
    info = open_date(image)
    scene = Scene(info, bands=select_bands([info], settings.bands), nodata=settings.nodata)
    boxes = read_exemplars(exemplars, scene.grid) if exemplars is not None else ()
    stretch = JointStretch.fit_scene(scene)
    windows = chip_windows(scene.grid, *settings.tiling(grid=scene.grid))
    task = ConceptTask(scene.grid, texts, boxes, score_thresh, segmenter)
    jobs = chip_jobs(windows, scene.source, stretch, settings.recipe(), task)
    cache = ChipJobCache() if cache is None else cache
    cache.add_reader(scene.source, scene)
    labels = texts or ("exemplar",)
    found: dict[str, list[tuple[ChipWindow, list[ChipObject]]]] = {k: [] for k in labels}

    def collect(window: ChipWindow, objects: dict[str, list[ChipObject]]) -> None:
        for label in labels:
            found[label].append((window, objects.get(label, [])))

    run_chips(
        jobs,
        collect,
        cache=cache,
        show_progress=show_progress,
        description="segment concepts",
        on_progress=on_progress,
        cluster=settings.engine,
    )
    frames = []
    for label in labels:
        merged = merge_objects(found[label], scene.grid, match_iou=settings.match_iou)
        frame = objects_frame(merged, scene.grid, settings.min_area, settings.simplify)
        frames.append(frame.assign(prompt=label))
    frame = _numbered(frames, scene.grid.crs)
    with outputs.staging() as stage:
        write_vector_file(frame, stage.path(output))
    return SegmentResult(
        output=output,
        chips=len(windows),
        objects=len(frame),
        seconds=time.perf_counter() - started,
        megapixels=scene.grid.width * scene.grid.height / 1e6,
    )


def _numbered(frames: list[gpd.GeoDataFrame], crs: object) -> gpd.GeoDataFrame:
    """One table: prompts in the order given, each top-left first; ids 1..n."""
    frame = gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), crs=crs)
    frame["id"] = np.arange(1, len(frame) + 1, dtype=np.int64)
    return frame[CONCEPT_COLUMNS]
