"""``segment_anything``: SAM automatic segmentation of a raster, to one polygon per object.

raster -> chips on its grid (torchgeo) -> stretch to 0..255 -> SAM embedding once per
chip -> batched point-grid decoding, IoU/stability filters, box NMS -> masks at chip
resolution -> polygons in map coordinates -> objects of overlapping chips merged
(:mod:`rs_sam.segmentation.merge`) -> vector file.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np

from rs_sam.data.bands import select_bands
from rs_sam.data.grid import ChipWindow, RasterGrid, chip_windows
from rs_sam.data.normalize import JointStretch
from rs_sam.data.rasters import DateInput, open_date
from rs_sam.data.scene import ChipSource, Scene
from rs_sam.devices import resolve_device
from rs_sam.errors import ConfigError
from rs_sam.inference.engine import ProgressCallback, chip_jobs, run_chips
from rs_sam.inference.jobs import ChipJobCache
from rs_sam.inference.outputs import RunOutputs
from rs_sam.models.decoding import hq_encoder_error
from rs_sam.models.encoders import FrozenEncoder, get_encoder
from rs_sam.models.recipe import build_encoder
from rs_sam.segmentation.chip_tasks import SamObjectsTask
from rs_sam.segmentation.merge import MergedObject, merge_objects
from rs_sam.segmentation.objects import ChipObject, MaskGenerator, SamMaskGenerator
from rs_sam.segmentation.settings import SegmentSettings
from rs_sam.vector.area import areas_m2
from rs_sam.vector.io import write_vector_file
from rs_sam.vector.polygonize import MinArea

COLUMNS = ["id", "score", "stability", "area_m2", "geometry"]


@dataclass(frozen=True)
class SegmentResult:
    """What a run produced, for the summary line and for callers."""

    output: Path
    chips: int
    objects: int
    seconds: float
    megapixels: float

    def summary(self) -> str:
        rate = self.megapixels / self.seconds if self.seconds > 0 else float("nan")
        return (
            f"{self.chips} chips, {self.objects} objects -> {self.output} "
            f"in {self.seconds:.1f} s ({rate:.3g} MP/s)"
        )


def segment_anything(
    image: DateInput,
    output: str | Path,
    *,
    settings: SegmentSettings | None = None,
    generator: MaskGenerator | None = None,
    overwrite: bool = False,
    show_progress: bool = True,
    on_progress: ProgressCallback | None = None,
) -> SegmentResult:
    """Every object SAM finds in a raster, one polygon each.

    Args:
        image: a raster path (or comma-separated single-band files, or a folder of them).
        output: vector file (.gpkg, .geojson, .shp or .parquet) with ``id``, ``score``
            (predicted IoU), ``stability``, ``area_m2`` in the raster's CRS.
        settings: encoder, tiling, mask-generation thresholds and HQ-SAM decoding
            (``settings.hq``: one mask per point, SAM's best plus the HQ token's logits,
            or the HQ token's alone).
        generator: masks of one chip; default SAM automatic mask generation with
            ``settings.encoder`` (other generators serve tests and experiments).
        overwrite: replace an existing output; without it, it is refused before any work.
        on_progress: called with (chips done, chips in all) after each chip.

    Raises:
        RsSamError: a subclass naming the problem and the fix; no output is left behind.
    """
    started = time.perf_counter()
    settings = settings or SegmentSettings()
    if generator is None:
        check_sam(settings)  # an unusable encoder fails before any data is read
    outputs = RunOutputs(overwrite=overwrite)
    output = outputs.vector(output)
    info = open_date(image)
    scene = Scene(info, bands=select_bands([info], settings.bands), nodata=settings.nodata)
    merged, chips = find_objects(
        scene, generator, settings, show_progress=show_progress, on_progress=on_progress
    )
    frame = objects_frame(merged, scene.grid, settings.min_area, settings.simplify)
    with outputs.staging() as stage:
        write_vector_file(frame, stage.path(output))
    return SegmentResult(
        output=output,
        chips=chips,
        objects=len(frame),
        seconds=time.perf_counter() - started,
        megapixels=scene.grid.width * scene.grid.height / 1e6,
    )


def check_sam(settings: SegmentSettings) -> None:
    """Refuse, before any work, an encoder that cannot segment with SAM.

    Raises:
        ConfigError: an encoder without a SAM decoder (FastSAM), or ``settings.hq`` with an
            encoder that is not HQ-SAM; an unknown device.
    """
    spec = get_encoder(settings.encoder)
    if spec.embedding_dim is None:
        raise ConfigError(
            f"encoder '{spec.name}' has no SAM mask decoder, which segmentation with SAM "
            "needs; use --encoder mobile_sam, sam_vit_b/l/h, sam_hq_vit_b/l/h/tiny or sam2_hiera_*"
        )
    if settings.hq != "off" and not spec.hq:
        raise hq_encoder_error(spec.name)
    resolve_device(settings.device)


def load_sam(settings: SegmentSettings) -> FrozenEncoder:
    """The settings' SAM-family encoder with its prompt encoder and mask decoder.

    Raises:
        ConfigError: see :func:`check_sam`.
    """
    check_sam(settings)
    return build_encoder(settings.recipe())


def sam_generator(settings: SegmentSettings) -> SamMaskGenerator:
    """SAM automatic mask generation with the settings' encoder, thresholds and HQ mode."""
    return SamMaskGenerator(load_sam(settings), settings.proposals, hq=settings.hq)


def find_objects(
    scene: ChipSource,
    generator: MaskGenerator | None,
    settings: SegmentSettings,
    *,
    cache: ChipJobCache | None = None,
    show_progress: bool = True,
    on_progress: ProgressCallback | None = None,
) -> tuple[list[MergedObject], int]:
    """The objects of a whole raster: every chip's masks, merged. Returns (objects, chips).

    ``generator`` replaces SAM (default: built from ``settings`` once per ``cache``).
    """
    stretch = JointStretch.fit_scene(scene)
    windows = chip_windows(scene.grid, *settings.tiling(grid=scene.grid))
    task = SamObjectsTask(scene.grid, settings.proposals, settings.hq, generator)
    jobs = chip_jobs(windows, scene.source, stretch, settings.recipe(), task)
    cache = ChipJobCache() if cache is None else cache
    cache.add_reader(scene.source, scene)
    found: list[tuple[ChipWindow, list[ChipObject]]] = []
    run_chips(
        jobs,
        lambda window, objects: found.append((window, objects)),
        cache=cache,
        show_progress=show_progress,
        description="segment",
        on_progress=on_progress,
        cluster=settings.engine,
    )
    return merge_objects(found, scene.grid, match_iou=settings.match_iou), len(windows)



def objects_frame(
    objects: Sequence[MergedObject],
    grid: RasterGrid,
    min_area: MinArea,
    simplify: float | None,
) -> gpd.GeoDataFrame:
    """The output table: objects ordered top-left first, small ones dropped, ids 1..n."""
    geometries = [o.geometry for o in objects]
    if simplify:
        geometries = [g.simplify(simplify, preserve_topology=True) for g in geometries]
    frame = gpd.GeoDataFrame(
        {
            "score": np.array([o.score for o in objects], dtype=np.float64),
            "stability": np.array([o.stability for o in objects], dtype=np.float64),
        },
        geometry=gpd.GeoSeries(geometries, crs=grid.crs),
        crs=grid.crs,
    )
    frame["area_m2"] = areas_m2(frame.geometry, grid.crs) if len(frame) else []
    if min_area.value > 0:
        if min_area.unit == "m2":
            keep = frame["area_m2"] >= min_area.value
        else:
            keep = frame.geometry.area / (grid.res[0] * grid.res[1]) >= min_area.value
        frame = frame[keep]
    if len(frame):  # top row first, then left: ids do not depend on processing order
        bounds = frame.geometry.bounds
        frame = frame.assign(_top=-bounds["maxy"].round(6), _left=bounds["minx"].round(6))
        frame = frame.sort_values(["_top", "_left"], kind="stable").drop(columns=["_top", "_left"])
    frame.insert(0, "id", np.arange(1, len(frame) + 1, dtype=np.int64))
    return frame[COLUMNS].reset_index(drop=True)
