"""``segment_prompts``: SAM masks for point and box prompts from a vector file, to polygons.

raster -> prompts in its pixel grid (:mod:`rs_sam.segmentation.prompts`) -> for each prompt a
chip centred on it with context (:func:`~rs_sam.segmentation.prompts.prompt_window`) -> SAM
embedding once per distinct chip -> batched prompt decoding
(:mod:`rs_sam.segmentation.prompted`) -> one polygon per prompt (or per mask with
``multimask="all"``) -> vector file.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import geopandas as gpd
import numpy as np

from rs_sam.data.bands import select_bands
from rs_sam.data.grid import ChipWindow
from rs_sam.data.normalize import JointStretch
from rs_sam.data.rasters import DateInput, open_date
from rs_sam.data.scene import Scene
from rs_sam.errors import ConfigError
from rs_sam.inference.engine import ProgressCallback, run_chips
from rs_sam.inference.jobs import ChipJob, ChipJobCache
from rs_sam.inference.outputs import RunOutputs
from rs_sam.models.decoding import hq_encoder_error
from rs_sam.models.encoders import FrozenEncoder
from rs_sam.segmentation.anything import SegmentResult, check_sam
from rs_sam.segmentation.chip_tasks import PromptRows, PromptTask
from rs_sam.segmentation.prompted import Multimask
from rs_sam.segmentation.prompts import Prompt, PromptWarning, prompt_window, read_prompts
from rs_sam.segmentation.settings import SegmentSettings
from rs_sam.vector.area import areas_m2
from rs_sam.vector.io import write_vector_file

COLUMNS = ["id", "prompt_id", "mask_index", "score", "area_m2", "geometry"]
#: Default pixels of image around a prompt on the chip it is decoded on.
DEFAULT_CONTEXT = 128


def segment_prompts(
    image: DateInput,
    prompts: str | Path,
    output: str | Path,
    *,
    settings: SegmentSettings | None = None,
    multimask: Multimask = "best",
    context: int = DEFAULT_CONTEXT,
    encoder: FrozenEncoder | None = None,
    overwrite: bool = False,
    show_progress: bool = True,
    on_progress: ProgressCallback | None = None,
) -> SegmentResult:
    """One polygon per prompt (points with labels, grouped points, boxes from polygons).

    Args:
        image: the raster.
        prompts: vector file with a CRS; see :func:`~rs_sam.segmentation.prompts.read_prompts`.
        output: vector file with ``id``, ``prompt_id``, ``mask_index`` (the decoder output
            chosen), ``score`` (predicted IoU), ``area_m2``.
        settings: encoder, chip size and ``hq`` (HQ-SAM decoding with an ``sam_hq_*``
            encoder: SAM's logits plus the HQ token's, or the HQ token's alone).
        multimask: ``"best"``: one mask per prompt, SAM's choice of single or multimask
            output and the highest predicted IoU; ``"all"``: all three masks (not with
            HQ decoding, which gives one mask per prompt).
        context: pixels of image wanted around each prompt on its chip.
        encoder: an already loaded SAM encoder (default: ``settings``' encoder).

    Raises:
        RsSamError: a subclass naming the problem and the fix; no output is left behind.
    """
    started = time.perf_counter()
    settings = settings or SegmentSettings()
    if multimask not in ("best", "all"):
        raise ConfigError(f"multimask {multimask!r} is unknown; use 'best' or 'all'")
    if multimask == "all" and settings.hq != "off":
        raise ConfigError(
            "HQ-SAM decoding gives one mask per prompt; use --multimask best with --hq/--hq-only"
        )
    outputs = RunOutputs(overwrite=overwrite)
    output = outputs.vector(output)
    info = open_date(image)
    scene = Scene(info, bands=select_bands([info], settings.bands), nodata=settings.nodata)
    found = read_prompts(prompts, scene.grid)
    if encoder is None:
        check_sam(settings)
    elif settings.hq != "off" and encoder.hq_decoder is None:
        raise hq_encoder_error(encoder.spec.name)
    stretch = JointStretch.fit_scene(scene)

    # Prompts whose chips coincide share one embedding.
    by_window: dict[ChipWindow, list[Prompt]] = {}
    chip_size, _ = settings.tiling(grid=scene.grid)
    for prompt in found:
        window = prompt_window(prompt, scene.grid, chip_size, context=context)
        by_window.setdefault(window, []).append(prompt)
    recipe = settings.recipe()
    jobs = [
        ChipJob(
            window,
            scene.source,
            stretch,
            recipe,
            PromptTask(scene.grid, tuple(group), multimask, settings.hq, encoder),
        )
        for window, group in by_window.items()
    ]
    cache = ChipJobCache()
    cache.add_reader(scene.source, scene)
    rows: list[dict[str, object]] = []
    empty: list[object] = []

    def collect(_: ChipWindow, result: PromptRows) -> None:
        rows.extend(result[0])
        empty.extend(result[1])

    windows = list(by_window)
    run_chips(
        jobs,
        collect,
        cache=cache,
        show_progress=show_progress,
        description="segment prompts",
        on_progress=on_progress,
        cluster=settings.engine,
    )
    if empty:
        warnings.warn(
            PromptWarning(f"prompts {_listed(empty)} gave empty masks; no polygon for them"),
            stacklevel=2,
        )
    frame = _frame(rows, scene.grid.crs)
    with outputs.staging() as stage:
        write_vector_file(frame, stage.path(output))
    return SegmentResult(
        output=output,
        chips=len(windows),
        objects=len(frame),
        seconds=time.perf_counter() - started,
        megapixels=scene.grid.width * scene.grid.height / 1e6,
    )


def _frame(rows: list[dict[str, object]], crs: object) -> gpd.GeoDataFrame:
    if not rows:
        empty = gpd.GeoDataFrame(
            {name: [] for name in COLUMNS[:-1]}, geometry=gpd.GeoSeries([], crs=crs), crs=crs
        )
        return empty[COLUMNS]
    frame = gpd.GeoDataFrame(rows, geometry="geometry", crs=crs)
    frame.insert(0, "id", np.arange(1, len(frame) + 1, dtype=np.int64))
    frame["area_m2"] = areas_m2(frame.geometry, crs)
    return frame[COLUMNS]


def _listed(items: Sequence[object], limit: int = 10) -> str:
    shown = ", ".join(str(i) for i in items[:limit])
    return shown + (f", ... {len(items) - limit} more" if len(items) > limit else "")
