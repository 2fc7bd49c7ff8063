"""The library's three runs: :func:`detect_change`, :func:`segment` and :func:`sam_objects`.

Each takes its inputs, its outputs and a settings object whose defaults are the CLI's and
QGIS's (all three come from :mod:`rs_sam.options`). :func:`segment` holds the rules between
its modes and dispatches to the automatic, prompted or semantic pipeline. The pipelines are
imported on first use.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from rs_sam.change.settings import ChangeSettings
from rs_sam.errors import ConfigError
from rs_sam.models.concepts.registry import CONCEPT_MODELS, DEFAULT_CONCEPT_MODEL
from rs_sam.models.decoding import HqMode, hq_encoder_error
from rs_sam.options import SEGMENT
from rs_sam.progress import ProgressCallback
from rs_sam.segmentation.settings import SamObjectsSettings, SegmentSettings

if TYPE_CHECKING:
    from geopandas import GeoDataFrame

    from rs_sam.change.detect import ChangeResult
    from rs_sam.preview import PreviewView
    from rs_sam.segmentation.anything import SegmentResult
    from rs_sam.segmentation.sam_objects import ObjectMapsResult

SegmentMode = Literal["anything", "prompt"]
Multimask = Literal["best", "all"]
PathLike = str | Path
#: segment's defaults of its own arguments, from the option table.
MODE_DEFAULT: SegmentMode = SEGMENT.default("mode")
MULTIMASK_DEFAULT: Multimask = SEGMENT.default("multimask")
CONTEXT_DEFAULT: int = SEGMENT.default("context")
SCORE_THRESH_DEFAULT: float = SEGMENT.default("score_thresh")
#: Models that take concept prompts (text, example boxes), the default first.
CONCEPT_ENCODERS = (DEFAULT_CONCEPT_MODEL, *sorted(set(CONCEPT_MODELS) - {DEFAULT_CONCEPT_MODEL}))


def detect_change(
    a: PathLike,
    b: PathLike,
    output: PathLike,
    *,
    settings: ChangeSettings | None = None,
    save_probability: PathLike | None = None,
    save_latent: PathLike | None = None,
    text: str | Sequence[str] | None = None,
    preview: PathLike | None = None,
    overwrite: bool = False,
    show_progress: bool = True,
    on_progress: ProgressCallback | None = None,
) -> ChangeResult:
    """Changes between rasters ``a`` (earlier) and ``b`` (later) as polygons in ``output``.

    Zero-shot (AnyChange) by default, or with a SAM-CD head (``settings.model``). ``text``
    (concepts, SAM 3) keeps only changes whose object on either date is one of them, with
    ``concept_a``/``concept_b``.
    ``on_progress(done, total)`` is called after each chip; raising there stops the run
    before any output is finalised. ``preview`` (.png or .html): also draw both dates side
    by side with the polygons (see :mod:`rs_sam.preview`), published with the outputs.
    """
    from rs_sam.change.detect import detect_change as run

    settings = settings or ChangeSettings()

    def pipeline(vector: PathLike, rasters: dict[str, Path | None]) -> ChangeResult:
        return run(
            a,
            b,
            vector,
            settings=settings,
            save_probability=rasters["probability raster"],
            save_latent=rasters["latent-class raster"],
            overwrite=overwrite,
            show_progress=show_progress,
            on_progress=on_progress,
            text=text,
        )

    rasters = {"probability raster": save_probability, "latent-class raster": save_latent}
    if preview is None:
        return pipeline(output, rasters)  # type: ignore[arg-type]
    from rs_sam.preview import change_view, run_with_preview

    def view(polygons: GeoDataFrame, workdir: Path) -> PreviewView:
        title = _preview_title("Changes", len(polygons), settings.weights)
        return change_view(
            a, b, polygons, bands=settings.bands, nodata=settings.nodata, workdir=workdir,
            title=title,
        )  # fmt: skip

    return run_with_preview(
        pipeline, view, preview=preview, output=output, rasters=rasters, overwrite=overwrite
    )


def _preview_title(what: str, count: int, weights: str) -> str:
    """A preview's title; untrained weights say so (their polygons mean nothing)."""
    note = " - RANDOM WEIGHTS: masks are meaningless" if weights == "random" else ""
    return f"{what}: {count} polygon{'s' * (count != 1)}{note}"


def segment(
    image: PathLike,
    output: PathLike,
    *,
    mode: SegmentMode = MODE_DEFAULT,
    prompts: PathLike | None = None,
    model: PathLike | None = None,
    multimask: Multimask = MULTIMASK_DEFAULT,
    context: int = CONTEXT_DEFAULT,
    hq: HqMode | None = None,
    text: str | Sequence[str] | None = None,
    exemplars: PathLike | None = None,
    score_thresh: float = SCORE_THRESH_DEFAULT,
    save_classes: PathLike | None = None,
    save_probability: PathLike | None = None,
    preview: PathLike | None = None,
    settings: SegmentSettings | None = None,
    overwrite: bool = False,
    show_progress: bool = True,
    on_progress: ProgressCallback | None = None,
) -> SegmentResult:
    """Objects of ``image`` as polygons in ``output``, in the image's CRS.

    ``mode="anything"``: every object SAM finds, merged across chip borders; ``"prompt"``:
    one object per point or box of ``prompts``; ``model``: semantic segmentation with a
    checkpoint from ``rs-sam train segment`` instead (``save_classes``/``save_probability``
    also write its rasters). ``hq`` (``"add"``/``"only"``, default ``settings.hq``) selects
    HQ-SAM decoding for SAM's masks. ``text`` (one or several noun phrases) and/or
    ``exemplars`` (a vector file of example boxes) select SAM 3 concept segmentation: every
    instance, one polygon each with ``prompt`` and ``score`` (kept from ``score_thresh``).
    Inconsistent combinations raise :class:`ConfigError`. ``preview`` (.png or .html): also
    draw the image with the polygons, published with the outputs.
    """
    settings = settings or SegmentSettings()
    if preview is not None:
        from rs_sam.preview import run_with_preview, scene_view

        def pipeline(vector: PathLike, rasters: dict[str, Path | None]) -> SegmentResult:
            return segment(
                image, vector, mode=mode, prompts=prompts, model=model, multimask=multimask,
                context=context, hq=hq, text=text, exemplars=exemplars,
                score_thresh=score_thresh, save_classes=rasters["class raster"],
                save_probability=rasters["probability raster"], settings=settings,
                overwrite=overwrite, show_progress=show_progress, on_progress=on_progress,
            )  # fmt: skip

        def view(polygons: GeoDataFrame, workdir: Path) -> PreviewView:
            title = _preview_title("Objects", len(polygons), settings.weights)
            return scene_view(
                image, polygons, bands=settings.bands, nodata=settings.nodata, workdir=workdir,
                title=title,
            )  # fmt: skip

        rasters = {"class raster": save_classes, "probability raster": save_probability}
        return run_with_preview(
            pipeline, view, preview=preview, output=output, rasters=rasters, overwrite=overwrite
        )
    hq = settings.hq if hq is None else hq
    if text or exemplars is not None:
        settings = _concept_settings(settings, mode, prompts, model, hq)
        from rs_sam.segmentation.concepts import concept_texts, segment_concepts

        return segment_concepts(
            image,
            output,
            texts=concept_texts(text),
            exemplars=exemplars,
            score_thresh=score_thresh,
            settings=settings,
            overwrite=overwrite,
            show_progress=show_progress,
            on_progress=on_progress,
        )
    check_segment_request(
        mode=mode,
        prompts=prompts,
        model=model,
        multimask=multimask,
        hq=hq,
        encoder=settings.encoder,
        saves=save_classes is not None or save_probability is not None,
    )
    if hq != settings.hq:
        settings = dataclasses.replace(settings, hq=hq)
    progress = {"overwrite": overwrite, "show_progress": show_progress, "on_progress": on_progress}
    if model is not None:
        from rs_sam.segmentation.semantic import segment_semantic

        return segment_semantic(
            image,
            model,
            output,
            settings=settings,
            save_classes=save_classes,
            save_probability=save_probability,
            **progress,  # type: ignore[arg-type]
        )
    if mode == "prompt":
        from rs_sam.segmentation.prompt_segmentation import segment_prompts

        return segment_prompts(
            image,
            prompts,  # type: ignore[arg-type]  # checked above
            output,
            settings=settings,
            multimask=multimask,
            context=context,
            **progress,  # type: ignore[arg-type]
        )
    from rs_sam.segmentation.anything import segment_anything

    return segment_anything(image, output, settings=settings, **progress)  # type: ignore[arg-type]


def check_segment_request(
    *,
    mode: str,
    prompts: object,
    model: object,
    multimask: str,
    hq: str,
    encoder: str,
    saves: bool,
) -> None:
    """The rules between :func:`segment`'s arguments, as one-line :class:`ConfigError`."""
    if mode not in SEGMENT.option("mode").choices:
        raise ConfigError(f"mode {mode!r} is unknown; use 'anything' or 'prompt'")
    if multimask not in SEGMENT.option("multimask").choices:
        raise ConfigError(f"multimask {multimask!r} is unknown; use 'best' or 'all'")
    if hq != "off" and model is not None:
        raise ConfigError("--hq/--hq-only apply to SAM masks, not to --model")
    if hq != "off" and mode == "prompt" and multimask == "all":
        raise ConfigError("--hq/--hq-only give one mask per prompt; drop --multimask all")
    if hq != "off":
        _check_hq_encoder(encoder, "--hq-only" if hq == "only" else "--hq")
    if saves and model is None:
        raise ConfigError("--save-classes and --save-probability need --model")
    if model is not None and mode != "anything":
        raise ConfigError("--model replaces --mode; drop --mode prompt")
    if mode == "prompt" and not prompts:
        raise ConfigError("--mode prompt needs --prompts FILE (points or polygons)")
    if mode == "anything" and prompts:
        raise ConfigError("--prompts needs --mode prompt")


def _concept_settings(
    settings: SegmentSettings, mode: str, prompts: object, model: object, hq: str
) -> SegmentSettings:
    """The settings of a concept run: SAM 3 unless ``--encoder`` names another such model."""
    if mode == "prompt" or prompts:
        raise ConfigError("--text/--exemplars and --mode prompt/--prompts exclude each other")
    if model is not None:
        raise ConfigError("--text/--exemplars and --model exclude each other")
    if hq != "off":
        raise ConfigError("--hq/--hq-only apply to SAM's point and box masks, not to --text")
    if settings.encoder == SegmentSettings().encoder:  # the default: the concept model
        return dataclasses.replace(settings, encoder=CONCEPT_ENCODERS[0])
    if settings.encoder not in CONCEPT_ENCODERS:
        raise ConfigError(
            f"encoder '{settings.encoder}' takes no text or example boxes; concept "
            f"segmentation needs {' or '.join(CONCEPT_ENCODERS)} (leave --encoder out)"
        )
    return settings


def _check_hq_encoder(encoder: str, flag: str) -> None:
    """One-line error for ``flag`` with a registered encoder that is not HQ-SAM."""
    from rs_sam.models.encoders.registry import ENCODERS

    spec = ENCODERS.get(encoder)
    if spec is not None and not spec.hq:  # an unknown name fails on its own a bit later
        raise hq_encoder_error(encoder, flag)


def sam_objects(
    source: PathLike,
    output: PathLike,
    *,
    boundary_out: PathLike | None = None,
    settings: SegmentSettings | None = None,
    overwrite: bool = False,
    show_progress: bool = True,
    on_progress: ProgressCallback | None = None,
) -> ObjectMapsResult:
    """SAM object map (uint32 ids, 0 = none) and boundary map of ``source``, for SSRS.

    ``source`` is a georeferenced raster (outputs on its grid) or a folder of images (one
    ``<name>.tif`` per image in the output folders). Defaults follow SSRS
    (:class:`SamObjectsSettings`: predicted IoU 0.96, box NMS 0.5, objects of >= 50 pixels).
    """
    from rs_sam.segmentation.sam_objects import sam_objects as run

    return run(
        source,
        output,
        boundary_out=boundary_out,
        settings=settings or SamObjectsSettings(),
        overwrite=overwrite,
        show_progress=show_progress,
        on_progress=on_progress,
    )
