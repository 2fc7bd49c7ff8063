"""Semantic segmentation with a trained UNetFormer: raster -> class polygons (and rasters).

raster -> chips on its grid -> stretch to 0..255 -> UNetFormer -> per-class probabilities
blended across chip overlaps (on-disk mosaic) -> each pixel's class (argmax) -> polygons per
class, merged across block borders (so same-class polygons touching across chip borders
are one) -> vector file; optionally the class raster (with a colour table) and the
per-class probabilities.
"""

from __future__ import annotations

import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd

from rs_sam.data.bands import select_bands
from rs_sam.data.class_table import ClassTable
from rs_sam.data.grid import chip_windows
from rs_sam.data.normalize import JointStretch
from rs_sam.data.rasters import DateInput, open_date
from rs_sam.data.scene import Scene
from rs_sam.devices import resolve_device
from rs_sam.inference.classes import write_class_raster, write_class_scores
from rs_sam.inference.engine import ProgressCallback, chip_jobs, run_chips
from rs_sam.inference.jobs import ChipJobCache
from rs_sam.inference.mosaic import ProbabilityMosaic
from rs_sam.inference.outputs import RunOutputs
from rs_sam.models.recipe import ModelRecipe
from rs_sam.models.trained import TrainedSegmentModel, head_metadata, load_segment_model
from rs_sam.segmentation.anything import SegmentResult
from rs_sam.segmentation.chip_tasks import SemanticTask
from rs_sam.segmentation.settings import SegmentSettings
from rs_sam.vector.io import write_vector_file
from rs_sam.vector.polygonize import polygonize_probability

COLUMNS = ["id", "class_id", "class_name", "area_m2", "score_mean", "geometry"]

__all__ = ["TrainedSegmentModel", "load_segment_model", "segment_semantic"]


def segment_semantic(
    image: DateInput,
    model: str | Path,
    output: str | Path,
    *,
    settings: SegmentSettings | None = None,
    save_classes: str | Path | None = None,
    save_probability: str | Path | None = None,
    overwrite: bool = False,
    show_progress: bool = True,
    on_progress: ProgressCallback | None = None,
) -> SegmentResult:
    """Land-cover style polygons of a raster with a trained segmentation model.

    Args:
        image: the raster.
        model: checkpoint from ``rs-sam train segment``.
        output: vector file with ``id``, ``class_id``, ``class_name``, ``area_m2``,
            ``score_mean`` (mean probability of the class over the polygon).
        settings: chip size (default the model's), overlap, device, min_area, simplify,
            bands, nodata.
        save_classes: optional uint8 class raster with the class colour table.
        save_probability: optional float32 raster of per-class probabilities.

    Raises:
        RsSamError: a subclass naming the problem and the fix; no output is left behind.
    """
    started = time.perf_counter()
    settings = settings or SegmentSettings()
    outputs = RunOutputs(overwrite=overwrite)
    output = outputs.vector(output)
    classes_path = outputs.raster(save_classes, what="class raster")
    probability_path = outputs.raster(save_probability, what="probability raster")
    resolve_device(settings.device)  # an unknown device fails before any data is read
    head = head_metadata(model, "segment")[0]
    table = ClassTable.from_config(head.class_table)  # type: ignore[arg-type]
    info = open_date(image)
    bands = select_bands([info], settings.bands or head.bands)
    scene = Scene(info, bands=bands, nodata=settings.nodata)
    stretch = JointStretch.fit_scene(scene)
    chip_size, overlap = settings.tiling(head.chip_size, grid=scene.grid)
    windows = chip_windows(scene.grid, chip_size, overlap)
    recipe = ModelRecipe(
        head.encoder,
        device=settings.device,
        head=Path(model),
        encoder_runtime=settings.encoder_runtime,
    )
    jobs = chip_jobs(windows, scene.source, stretch, recipe, SemanticTask())
    cache = ChipJobCache()
    cache.add_reader(scene.source, scene)

    with outputs.staging() as stage:
        workdir = stage.workdir
        with ProbabilityMosaic(
            scene.grid,
            chip_size=chip_size,
            overlap=overlap,
            workdir=workdir,
            bands=table.num_classes,
        ) as mosaic:
            run_chips(
                jobs,
                lambda window, result: mosaic.add(window, *result),
                cache=cache,
                show_progress=show_progress,
                description="segment",
                on_progress=on_progress,
                cluster=settings.engine,
            )
            probabilities = mosaic.finalize(
                stage.path(probability_path) if probability_path else workdir / "probability.tif"
            )
        scores = write_class_scores(probabilities, workdir / "scores.tif")
        frames = []
        for class_id, name in enumerate(table.names):
            found = polygonize_probability(
                scores,
                band=class_id + 1,
                threshold=1e-9,  # a class's score is > 0 exactly where it wins
                min_area=settings.min_area,
                simplify=settings.simplify,
            )
            frames.append(found.assign(class_id=class_id, class_name=name))
        frame = gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), crs=scene.grid.crs)
        frame["id"] = np.arange(1, len(frame) + 1, dtype=np.int64)
        write_vector_file(frame[COLUMNS], stage.path(output))
        if classes_path is not None:
            write_class_raster(
                [probabilities],
                stage.path(classes_path),
                descriptions=["class"],
                colormap=table.colormap(),
            )
    return SegmentResult(
        output=output,
        chips=len(windows),
        objects=len(frame),
        seconds=time.perf_counter() - started,
        megapixels=scene.grid.width * scene.grid.height / 1e6,
    )
