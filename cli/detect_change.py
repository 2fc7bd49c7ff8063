"""``rs-sam detect-change A B -o OUT``: zero-shot (AnyChange) or trained (SAM-CD) change."""

from __future__ import annotations

from pathlib import Path

import click

from rs_sam.cli.options import (
    bands_option,
    checkpoint_option,
    chip_size_option,
    compose,
    device_option,
    encoder_option,
    handle_errors,
    lora_option,
    merge_lora_option,
    min_area_option,
    nodata_option,
    overlap_option,
    overwrite_option,
    quiet_option,
    setup_output,
    simplify_option,
    verbose_option,
    weights_option,
)
from rs_sam.progress import chip_progress


@click.command("detect-change")
@click.argument("a")
@click.argument("b")
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False),
    help="Vector file (.gpkg, .geojson, .shp, .parquet).",
)
@compose(encoder_option, checkpoint_option, weights_option, device_option)
@compose(lora_option, merge_lora_option)
@compose(chip_size_option, overlap_option)
@click.option(
    "--batch-size", type=int, default=64, show_default=True, help="Point prompts decoded together."
)
@click.option(
    "--points-per-side",
    type=int,
    default=16,
    show_default=True,
    help="Prompt grid per chip and date.",
)
@click.option(
    "--pred-iou-thresh",
    type=float,
    default=0.5,
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
    "--threshold",
    type=float,
    default=None,
    help="Zero-shot: change angle in degrees [default: 145, AnyChange's library; the paper "
    "uses 155]. With --model: change probability [default: 0.5].",
)
@click.option(
    "--model",
    type=click.Path(dir_okay=False),
    default=None,
    help="SAM-CD checkpoint from `rs-sam train change` (supervised) instead of zero-shot.",
)
@click.option(
    "--semantic",
    is_flag=True,
    help="With --model: add class_a/class_b, each polygon's dominant latent class per date.",
)
@compose(min_area_option, simplify_option, bands_option, nodata_option)
@click.option(
    "--save-probability",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also write the per-pixel score (angle / 180) as a float32 GeoTIFF.",
)
@click.option(
    "--save-latent",
    type=click.Path(dir_okay=False),
    default=None,
    help="With --semantic: also write both dates' latent classes (bands 1, 2) as a GeoTIFF.",
)
@compose(overwrite_option, verbose_option, quiet_option)
@handle_errors
def detect_change(
    a: str,
    b: str,
    output: str,
    encoder: str,
    checkpoint: str | None,
    weights: str,
    device: str,
    lora: str | None,
    merge_lora: bool,
    chip_size: int | None,
    overlap: int | None,
    batch_size: int,
    points_per_side: int,
    pred_iou_thresh: float,
    stability_thresh: float,
    threshold: float | None,
    model: str | None,
    semantic: bool,
    min_area: str,
    simplify: float | None,
    bands: str | None,
    nodata: float | None,
    save_probability: str | None,
    save_latent: str | None,
    overwrite: bool,
    verbose: int,
    quiet: bool,
) -> None:
    """Detect changes between rasters A (earlier) and B (later).

    Zero-shot (AnyChange) by default, or with a SAM-CD head trained by `rs-sam train change`
    (--model). A and B are GeoTIFF/COG/VRT files, or comma-separated single-band files of
    one date. B is reprojected onto A's grid; only the overlap is processed. Output polygons
    carry id, area_m2, score_mean and score_max (zero-shot: change angle / 180; with
    --model: change probability), and with --semantic class_a and class_b.
    """
    setup_output(verbose, quiet)
    from rs_sam.change import ChangeSettings
    from rs_sam.change import detect_change as run
    from rs_sam.data.bands import parse_bands
    from rs_sam.vector.polygonize import MinArea

    settings = ChangeSettings(
        encoder=encoder,
        weights=weights,  # type: ignore[arg-type]
        checkpoint=Path(checkpoint) if checkpoint else None,
        device=device,
        chip_size=chip_size,
        overlap=overlap,
        batch_size=batch_size,
        points_per_side=points_per_side,
        pred_iou_thresh=pred_iou_thresh,
        stability_thresh=stability_thresh,
        threshold=threshold,
        model=Path(model) if model else None,
        min_area=MinArea.parse(min_area),
        simplify=simplify,
        bands=parse_bands(bands),
        nodata=nodata,
        semantic=semantic,
        lora=Path(lora) if lora else None,
        merge_lora=merge_lora,
    )
    result = run(
        a,
        b,
        output,
        settings=settings,
        save_probability=save_probability,
        save_latent=save_latent,
        overwrite=overwrite,
        show_progress=not quiet,
        on_progress=chip_progress(),
    )
    if not quiet:
        click.echo(result.summary(), err=True)
