"""``detect_change``: the single entry behind the CLI, the examples and QGIS.

raster pair -> chips on a's grid -> joint normalisation -> frozen SAM encoder ->
AnyChange scores -> blended probability mosaic -> polygons -> vector file.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from rs_sam.change.anychange import ChipScore, sam_proposer, score_chip
from rs_sam.change.settings import ChangeSettings
from rs_sam.data.bands import select_bands
from rs_sam.data.normalize import JointStretch
from rs_sam.data.pair import BitemporalPair
from rs_sam.data.rasters import DateInput, open_date
from rs_sam.devices import resolve_device
from rs_sam.errors import ConfigError, OutputExistsError, OutputPathError
from rs_sam.inference.engine import ProgressCallback, run_chips
from rs_sam.inference.grid import ChipWindow, chip_windows
from rs_sam.inference.mosaic import ProbabilityMosaic
from rs_sam.models.encoders import get_encoder, load_encoder
from rs_sam.vector.io import check_output_path, write_vectors
from rs_sam.vector.polygonize import polygonize_probability

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChangeResult:
    """What a run produced, for the summary line and for callers."""

    output: Path
    probability: Path | None
    chips: int
    polygons: int
    seconds: float
    megapixels: float

    def summary(self) -> str:
        rate = self.megapixels / self.seconds if self.seconds > 0 else float("nan")
        return (
            f"{self.chips} chips, {self.polygons} change polygons -> {self.output} "
            f"in {self.seconds:.1f} s ({rate:.2f} MP/s)"
        )


def detect_change(
    a: DateInput,
    b: DateInput,
    output: str | Path,
    *,
    settings: ChangeSettings | None = None,
    save_probability: str | Path | None = None,
    overwrite: bool = False,
    show_progress: bool = True,
    on_progress: ProgressCallback | None = None,
) -> ChangeResult:
    """Zero-shot change detection between two rasters of the same area.

    Args:
        a, b: the earlier and later date (a path, a comma-separated list or sequence of
            single-band files, or a folder of them). The output lies on a's grid; b is
            reprojected and resampled onto it, and only the overlap is processed.
        output: vector file (.gpkg, .geojson, .shp or .parquet) of change polygons with
            ``id``, ``area_m2``, ``score_mean``, ``score_max`` (scores are angles / 180).
        settings: model, tiling and thresholds (default: :class:`ChangeSettings`()).
        save_probability: optional float32 GeoTIFF of the blended per-pixel score.
        overwrite: replace existing outputs; without it they are refused before any work.
        on_progress: called with (chips done, chips in all) after each chip.

    Raises:
        RsSamError: a subclass naming the problem and the fix; no output is left behind.
    """
    started = time.perf_counter()
    settings = settings or ChangeSettings()
    spec = get_encoder(settings.encoder)  # an unknown name fails before any data is read
    if spec.embedding_dim is None:
        raise ConfigError(
            f"encoder '{spec.name}' has no SAM image embedding and mask decoder, which zero-shot "
            "change detection needs; use --encoder mobile_sam or sam_vit_b/l/h"
        )
    output = check_output_path(Path(output), overwrite=overwrite)
    probability_path = _check_probability_path(save_probability, overwrite)

    with tempfile.TemporaryDirectory(prefix=".rs-sam-", dir=output.parent) as tmp:
        workdir = Path(tmp)
        info_a = open_date(a, workdir=workdir)
        info_b = open_date(b, workdir=workdir)
        bands = select_bands([info_a, info_b], settings.bands)
        pair = BitemporalPair(info_a, info_b, bands=bands, nodata=settings.nodata)
        stretch = JointStretch.fit(pair)
        device = resolve_device(settings.device)
        encoder = load_encoder(
            settings.encoder,
            weights=settings.weights,
            checkpoint=settings.checkpoint,
            device=device,
        )
        proposer = sam_proposer(encoder, settings.proposals)
        windows = chip_windows(pair.grid, settings.chip_size, settings.overlap)

        def compute(window: ChipWindow) -> ChipScore:
            chip = pair.read_chip(window)
            return score_chip(
                chip, stretch.apply(chip.image_a), stretch.apply(chip.image_b), encoder, proposer
            )

        mosaic_path = workdir / "probability.tif"
        with ProbabilityMosaic(
            pair.grid,
            chip_size=settings.chip_size,
            overlap=settings.overlap,
            workdir=workdir,
        ) as mosaic:
            run_chips(
                windows,
                compute,
                lambda window, score: mosaic.add(window, score.probability, score.valid),
                show_progress=show_progress,
                description="detect-change",
                on_progress=on_progress,
            )
            mosaic.finalize(mosaic_path)

        polygons = polygonize_probability(
            mosaic_path,
            threshold=settings.threshold / 180.0,
            min_area=settings.min_area,
            simplify=settings.simplify,
        )
        write_vectors(polygons, output, overwrite=overwrite)
        if probability_path is not None:
            shutil.move(str(mosaic_path), probability_path)

    return ChangeResult(
        output=output,
        probability=probability_path,
        chips=len(windows),
        polygons=len(polygons),
        seconds=time.perf_counter() - started,
        megapixels=pair.grid.width * pair.grid.height / 1e6,
    )


def _check_probability_path(path: str | Path | None, overwrite: bool) -> Path | None:
    if path is None:
        return None
    path = Path(path)
    if path.suffix.lower() not in {".tif", ".tiff"}:
        raise OutputPathError(f"probability raster {path} must end in .tif; rename it")
    if not path.parent.is_dir():
        raise OutputPathError(
            f"folder {path.parent} for {path.name} does not exist; create it first"
        )
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} exists; pass --overwrite to replace it")
    return path
