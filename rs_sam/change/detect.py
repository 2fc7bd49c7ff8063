"""``detect_change``: the single entry behind the CLI, the examples and QGIS.

raster pair -> chips on a's grid -> joint normalisation -> frozen SAM encoder ->
per-chip scores (zero-shot AnyChange, or a trained SAM-CD head) -> blended probability
mosaic -> polygons -> vector file.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rs_sam.change.anychange import ChipScore
from rs_sam.change.chip_tasks import TrainedChangeTask, ZeroShotChangeTask
from rs_sam.change.concepts import name_changes
from rs_sam.change.settings import ChangeSettings
from rs_sam.data.bands import select_bands
from rs_sam.data.grid import ChipWindow, chip_windows
from rs_sam.data.normalize import JointStretch
from rs_sam.data.pair import BitemporalPair
from rs_sam.data.rasters import DateInput, open_date
from rs_sam.devices import resolve_device
from rs_sam.errors import ConfigError
from rs_sam.inference.classes import write_class_raster
from rs_sam.inference.engine import ProgressCallback, chip_jobs, run_chips
from rs_sam.inference.jobs import ChipJobCache, ChipTask
from rs_sam.inference.mosaic import ProbabilityMosaic
from rs_sam.inference.outputs import RunOutputs
from rs_sam.models.encoders import get_encoder
from rs_sam.models.trained import head_metadata
from rs_sam.segmentation.concepts import concept_texts
from rs_sam.vector.io import write_vector_file
from rs_sam.vector.polygonize import polygonize_probability
from rs_sam.vector.zonal import majority_class

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChangeResult:
    """What a run produced, for the summary line and for callers."""

    output: Path
    probability: Path | None
    latent: Path | None
    chips: int
    polygons: int
    seconds: float
    megapixels: float

    def summary(self) -> str:
        rate = self.megapixels / self.seconds if self.seconds > 0 else float("nan")
        return (
            f"{self.chips} chips, {self.polygons} change polygons -> {self.output} "
            f"in {self.seconds:.1f} s ({rate:.3g} MP/s)"
        )


def detect_change(
    a: DateInput,
    b: DateInput,
    output: str | Path,
    *,
    settings: ChangeSettings | None = None,
    save_probability: str | Path | None = None,
    save_latent: str | Path | None = None,
    overwrite: bool = False,
    show_progress: bool = True,
    on_progress: ProgressCallback | None = None,
    text: str | Sequence[str] | None = None,
) -> ChangeResult:
    """Change detection between two rasters of the same area, to polygons.

    Zero-shot (AnyChange latent matching with a SAM encoder) unless ``settings.model``
    names a SAM-CD checkpoint trained with ``rs-sam train change``.

    Args:
        a, b: the earlier and later date (a path, a comma-separated list or sequence of
            single-band files, or a folder of them). The output lies on a's grid; b is
            reprojected and resampled onto it, and only the overlap is processed.
        output: vector file (.gpkg, .geojson, .shp or .parquet) of change polygons with
            ``id``, ``area_m2``, ``score_mean``, ``score_max`` (zero-shot scores are
            change angles / 180; with a model, change probabilities), and with
            ``settings.semantic`` ``class_a``/``class_b``: the polygon's dominant latent
            class on each date.
        settings: model, tiling and thresholds (default: :class:`ChangeSettings`()).
        save_probability: optional float32 GeoTIFF of the blended per-pixel score.
        save_latent: optional uint8 GeoTIFF of both dates' latent classes (bands 1 and 2;
            needs ``settings.semantic``).
        overwrite: replace existing outputs; without it they are refused before any work.
        on_progress: called with (chips done, chips in all) after each chip.
        text: concepts (SAM 3 text prompts): keep only the changes whose object on either
            date is one of them, with ``concept_a``/``concept_b`` (see
            :mod:`rs_sam.change.concepts`).

    Raises:
        RsSamError: a subclass naming the problem and the fix; no output is left behind.
    """
    started = time.perf_counter()
    settings = settings or ChangeSettings()
    spec = get_encoder(settings.encoder)  # an unknown name fails before any data is read
    if settings.model is None and spec.embedding_dim is None:
        raise ConfigError(
            f"encoder '{spec.name}' has no SAM image embedding and mask decoder, which zero-shot "
            "change detection needs; use --encoder mobile_sam or sam_vit_b/l/h"
        )
    if save_latent is not None and not settings.semantic:
        raise ConfigError("--save-latent needs --semantic (latent classes come with --model)")
    texts = concept_texts(text)
    outputs = RunOutputs(overwrite=overwrite)
    output = outputs.vector(output)
    probability_path = outputs.raster(save_probability, what="probability raster")
    latent_path = outputs.raster(save_latent, what="latent-class raster")

    with outputs.staging() as stage:
        workdir = stage.workdir
        resolve_device(settings.device)  # an unknown device fails before any data is read
        info_a = open_date(a, workdir=workdir)
        info_b = open_date(b, workdir=workdir)
        recipe = settings.recipe(head=settings.model)
        head = head_metadata(settings.model, "change")[0] if settings.model is not None else None
        bands = select_bands([info_a, info_b], settings.bands or (head.bands if head else None))
        pair = BitemporalPair(info_a, info_b, bands=bands, nodata=settings.nodata)
        stretch = JointStretch.fit(pair)
        chip_size, overlap = settings.tiling(head.chip_size if head else None, grid=pair.grid)
        task: ChipTask[ChipScore] = (
            TrainedChangeTask(semantic=settings.semantic)
            if head is not None
            else ZeroShotChangeTask(settings.proposals)
        )
        windows = chip_windows(pair.grid, chip_size, overlap)
        jobs = chip_jobs(windows, pair.source, stretch, recipe, task)
        cache = ChipJobCache()
        cache.add_reader(pair.source, pair)

        # One mosaic of the change score, and with semantic output one of k latent-class
        # probabilities per date; all blended alike.
        layers = {"probability": 1}
        if settings.semantic:
            k = head.latent_classes  # type: ignore[union-attr]  # semantic needs a model
            layers.update(latent_a=k, latent_b=k)
        with contextlib.ExitStack() as stack:
            mosaics = {
                name: stack.enter_context(
                    ProbabilityMosaic(
                        pair.grid, chip_size=chip_size, overlap=overlap, workdir=workdir, bands=n
                    )
                )
                for name, n in layers.items()
            }

            def add(window: ChipWindow, result: ChipScore) -> None:
                for name, mosaic in mosaics.items():
                    mosaic.add(window, getattr(result, name), result.valid)

            run_chips(
                jobs,
                add,
                cache=cache,
                show_progress=show_progress,
                description="detect-change",
                on_progress=on_progress,
                cluster=settings.engine,
            )
            saved = {"probability": probability_path}
            blended = {
                name: m.finalize(
                    stage.path(saved[name]) if saved.get(name) else workdir / f"{name}.tif"
                )
                for name, m in mosaics.items()
            }

        polygons = polygonize_probability(
            blended["probability"],
            threshold=settings.probability_threshold,
            min_area=settings.min_area,
            simplify=settings.simplify,
        )
        classes_path = stage.path(latent_path) if latent_path else workdir / "latent_classes.tif"
        if settings.semantic:
            write_class_raster(
                [blended["latent_a"], blended["latent_b"]],
                classes_path,
                descriptions=["latent class, date a", "latent class, date b"],
            )
            polygons["class_a"] = majority_class(polygons, classes_path, band=1)
            polygons["class_b"] = majority_class(polygons, classes_path, band=2)
        if texts:
            polygons = name_changes(
                polygons, a, b, texts, settings, workdir, show_progress=show_progress
            )
        write_vector_file(polygons, stage.path(output))

    return ChangeResult(
        output=output,
        probability=probability_path,
        latent=latent_path,
        chips=len(windows),
        polygons=len(polygons),
        seconds=time.perf_counter() - started,
        megapixels=pair.grid.width * pair.grid.height / 1e6,
    )
