"""``rs-sam segment IMAGE -o OUT`` and ``rs-sam sam-objects``: SAM objects of a raster."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from rs_sam.cli.options import (
    bands_option,
    checkpoint_option,
    compose,
    device_option,
    encoder_option,
    handle_errors,
    lora_option,
    merge_lora_option,
    min_area_option,
    nodata_option,
    overwrite_option,
    quiet_option,
    setup_output,
    simplify_option,
    verbose_option,
    weights_option,
)
from rs_sam.progress import chip_progress

if TYPE_CHECKING:
    from rs_sam.segment.settings import SegmentSettings


@click.command("segment")
@click.argument("image")
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False),
    help="Vector file (.gpkg, .geojson, .shp, .parquet).",
)
@click.option(
    "--mode",
    type=click.Choice(["anything", "prompt"]),
    default="anything",
    show_default=True,
    help="anything: SAM automatic mask generation on every chip; prompt: one mask per "
    "prompt of --prompts.",
)
@click.option(
    "--prompts",
    type=click.Path(dir_okay=False),
    default=None,
    help="--mode prompt: points (attribute label 1/0, optional group) and polygons (boxes), "
    "in any CRS.",
)
@click.option(
    "--multimask",
    type=click.Choice(["best", "all"]),
    default="best",
    show_default=True,
    help="--mode prompt: the mask with the best predicted IoU, or all three.",
)
@click.option(
    "--context",
    type=int,
    default=128,
    show_default=True,
    help="--mode prompt: pixels of image around each prompt on its chip.",
)
@click.option(
    "--model",
    type=click.Path(dir_okay=False),
    default=None,
    help="Semantic segmentation with a checkpoint from `rs-sam train segment` (polygons "
    "with class_id, class_name, area_m2, score_mean) instead of SAM objects.",
)
@click.option(
    "--save-classes",
    type=click.Path(dir_okay=False),
    default=None,
    help="With --model: also write the class raster (uint8, colour table) as a GeoTIFF.",
)
@click.option(
    "--save-probability",
    type=click.Path(dir_okay=False),
    default=None,
    help="With --model: also write the per-class probabilities as a float32 GeoTIFF.",
)
@compose(encoder_option, checkpoint_option, weights_option, device_option)
@compose(lora_option, merge_lora_option)
@click.option(
    "--hq",
    is_flag=True,
    help="HQ-SAM decoding (--encoder sam_hq_vit_b/l/h/tiny): the HQ output token's mask "
    "logits added to SAM's; one mask per prompt or grid point.",
)
@click.option(
    "--hq-only",
    is_flag=True,
    help="HQ-SAM decoding with the HQ output token's mask alone (an sam_hq_* encoder).",
)
@click.option(
    "--chip-size", type=int, default=None, help="Chip side [default: 1024, or the model's]."
)
@click.option(
    "--overlap",
    type=int,
    default=None,
    help="Pixels shared by neighbouring chips; objects smaller than this are always seen "
    "whole [default: chip size / 4].",
)
@click.option(
    "--points-per-side", type=int, default=32, show_default=True, help="Prompt grid per chip."
)
@click.option(
    "--batch-size", type=int, default=64, show_default=True, help="Point prompts decoded together."
)
@click.option(
    "--pred-iou-thresh",
    type=float,
    default=0.88,
    show_default=True,
    help="Keep masks with predicted IoU above this.",
)
@click.option(
    "--stability-thresh",
    type=float,
    default=0.95,
    show_default=True,
    help="Keep masks with stability above this.",
)
@click.option(
    "--box-nms-thresh",
    type=float,
    default=0.7,
    show_default=True,
    help="Box IoU above which a chip's lower-scored mask is dropped.",
)
@compose(min_area_option, simplify_option, bands_option, nodata_option)
@compose(overwrite_option, verbose_option, quiet_option)
@handle_errors
def segment(
    image: str,
    output: str,
    mode: str,
    prompts: str | None,
    multimask: str,
    context: int,
    model: str | None,
    save_classes: str | None,
    save_probability: str | None,
    encoder: str,
    checkpoint: str | None,
    weights: str,
    device: str,
    lora: str | None,
    merge_lora: bool,
    hq: bool,
    hq_only: bool,
    chip_size: int | None,
    overlap: int | None,
    points_per_side: int,
    batch_size: int,
    pred_iou_thresh: float,
    stability_thresh: float,
    box_nms_thresh: float,
    min_area: str,
    simplify: float | None,
    bands: str | None,
    nodata: float | None,
    overwrite: bool,
    verbose: int,
    quiet: bool,
) -> None:
    """Segment IMAGE (GeoTIFF/COG/VRT) into objects, one polygon each, in its CRS.

    --mode anything: every object SAM finds; objects cut by chip borders are matched across
    the overlap and merged; polygons carry id, score (predicted IoU), stability, area_m2.
    --mode prompt: one polygon per prompt (id, prompt_id, mask_index, score, area_m2).
    --model: semantic segmentation, one polygon per connected area of a class.
    --hq / --hq-only (with an HQ-SAM encoder, e.g. --encoder sam_hq_vit_b): HQ-SAM masks for
    --mode anything and prompt.
    """
    setup_output(verbose, quiet)
    if hq and hq_only:
        raise click.UsageError("--hq and --hq-only exclude each other; give one")
    if (hq or hq_only) and model:
        raise click.UsageError("--hq/--hq-only apply to SAM masks, not to --model")
    if (hq or hq_only) and mode == "prompt" and multimask == "all":
        raise click.UsageError("--hq/--hq-only give one mask per prompt; drop --multimask all")
    if hq or hq_only:
        _check_hq_encoder(encoder, "--hq-only" if hq_only else "--hq")
    if (save_classes or save_probability) and not model:
        raise click.UsageError("--save-classes and --save-probability need --model")
    if model and mode != "anything":
        raise click.UsageError("--model replaces --mode; drop --mode prompt")
    if mode == "prompt" and not prompts:
        raise click.UsageError("--mode prompt needs --prompts FILE (points or polygons)")
    if mode == "anything" and prompts:
        raise click.UsageError("--prompts needs --mode prompt")
    settings = _settings(locals())
    if model:
        from rs_sam.segment.semantic import segment_semantic

        result = segment_semantic(
            image,
            model,
            output,
            settings=settings,
            save_classes=save_classes,
            save_probability=save_probability,
            overwrite=overwrite,
            show_progress=not quiet,
            on_progress=chip_progress(),
        )
    elif mode == "prompt":
        from rs_sam.segment.prompt_segmentation import segment_prompts

        result = segment_prompts(
            image,
            prompts,  # type: ignore[arg-type]  # checked above
            output,
            settings=settings,
            multimask=multimask,  # type: ignore[arg-type]
            context=context,
            overwrite=overwrite,
            show_progress=not quiet,
            on_progress=chip_progress(),
        )
    else:
        from rs_sam.segment.anything import segment_anything

        result = segment_anything(
            image,
            output,
            settings=settings,
            overwrite=overwrite,
            show_progress=not quiet,
            on_progress=chip_progress(),
        )
    if not quiet:
        click.echo(result.summary(), err=True)


@click.command("sam-objects")
@click.argument("source")
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(),
    help="Object-id raster (.tif) for a raster; a folder for a folder of images.",
)
@click.option(
    "--boundary",
    type=click.Path(),
    default=None,
    help="Also write the 0/1 boundary map (.tif, or a folder).",
)
@compose(encoder_option, checkpoint_option, weights_option, device_option)
@compose(lora_option, merge_lora_option)
@click.option(
    "--chip-size", type=int, default=None, help="Chip side [default: 1024, or the model's]."
)
@click.option(
    "--overlap", type=int, default=None, help="Pixels shared by chips [default: chip size / 4]."
)
@click.option(
    "--points-per-side", type=int, default=32, show_default=True, help="Prompt grid per chip."
)
@click.option(
    "--batch-size", type=int, default=64, show_default=True, help="Point prompts decoded together."
)
@click.option(
    "--pred-iou-thresh", type=float, default=0.96, show_default=True, help="SSRS's setting."
)
@click.option(
    "--stability-thresh", type=float, default=0.95, show_default=True, help="Mask stability."
)
@click.option(
    "--box-nms-thresh", type=float, default=0.5, show_default=True, help="SSRS's setting."
)
@click.option(
    "--min-area",
    default="50px",
    show_default=True,
    help="Drop objects smaller than this (SSRS: 50 px); '200m2' for square metres.",
)
@compose(bands_option, nodata_option, overwrite_option, verbose_option, quiet_option)
@handle_errors
def sam_objects(
    source: str,
    output: str,
    boundary: str | None,
    encoder: str,
    checkpoint: str | None,
    weights: str,
    device: str,
    lora: str | None,
    merge_lora: bool,
    chip_size: int | None,
    overlap: int | None,
    points_per_side: int,
    batch_size: int,
    pred_iou_thresh: float,
    stability_thresh: float,
    box_nms_thresh: float,
    min_area: str,
    bands: str | None,
    nodata: float | None,
    overwrite: bool,
    verbose: int,
    quiet: bool,
) -> None:
    """SAM object map (uint32 ids, 0 = none) and boundary map of SOURCE, for SSRS training.

    SOURCE is a georeferenced raster (outputs on its grid) or a folder of images (one
    <name>.tif per image in the output folders). Defaults follow SSRS (predicted IoU 0.96,
    box NMS 0.5, objects of at least 50 pixels).
    """
    setup_output(verbose, quiet)
    from rs_sam.segment.sam_objects import sam_objects as run

    values = dict(locals(), simplify=None)
    result = run(
        source,
        output,
        boundary_out=boundary,
        settings=_settings(values),
        overwrite=overwrite,
        show_progress=not quiet,
        on_progress=chip_progress(),
    )
    if not quiet:
        click.echo(result.summary(), err=True)


def _check_hq_encoder(encoder: str, flag: str) -> None:
    """One-line error (exit 2) for ``flag`` with a registered encoder that is not HQ-SAM."""
    from rs_sam.models.encoders.registry import ENCODERS
    from rs_sam.models.hq_decoder import hq_encoder_error

    spec = ENCODERS.get(encoder)
    if spec is not None and not spec.hq:  # an unknown name fails on its own a bit later
        raise hq_encoder_error(encoder, flag)


def _settings(options: dict[str, Any]) -> SegmentSettings:
    """SegmentSettings from a command's options."""
    from rs_sam.data.bands import parse_bands
    from rs_sam.segment.settings import SegmentSettings
    from rs_sam.vector.polygonize import MinArea

    return SegmentSettings(
        encoder=options["encoder"],
        weights=options["weights"],
        checkpoint=Path(options["checkpoint"]) if options["checkpoint"] else None,
        device=options["device"],
        chip_size=options["chip_size"],
        overlap=options["overlap"],
        points_per_side=options["points_per_side"],
        batch_size=options["batch_size"],
        pred_iou_thresh=options["pred_iou_thresh"],
        stability_thresh=options["stability_thresh"],
        box_nms_thresh=options["box_nms_thresh"],
        min_area=MinArea.parse(options["min_area"]),
        simplify=options["simplify"],
        bands=parse_bands(options["bands"]),
        nodata=options["nodata"],
        hq="only" if options.get("hq_only") else "add" if options.get("hq") else "off",
        lora=Path(options["lora"]) if options["lora"] else None,
        merge_lora=options["merge_lora"],
    )
