"""``rs-sam segment IMAGE -o OUT``: SAM objects of a raster, one polygon each."""

from __future__ import annotations

from pathlib import Path

import click

from rs_sam.cli.options import (
    bands_option,
    checkpoint_option,
    compose,
    device_option,
    encoder_option,
    handle_errors,
    min_area_option,
    nodata_option,
    overwrite_option,
    quiet_option,
    setup_output,
    simplify_option,
    verbose_option,
    weights_option,
)


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
    type=click.Choice(["anything"]),
    default="anything",
    show_default=True,
    help="anything: SAM automatic mask generation on every chip.",
)
@compose(encoder_option, checkpoint_option, weights_option, device_option)
@click.option("--chip-size", type=int, default=1024, show_default=True, help="Chip side (pixels).")
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
    encoder: str,
    checkpoint: str | None,
    weights: str,
    device: str,
    chip_size: int,
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
    """Segment IMAGE (GeoTIFF/COG/VRT) into objects, one polygon each.

    Objects cut by chip borders are matched across the overlap and merged; polygons carry
    id, score (predicted IoU), stability and area_m2, in the raster's CRS.
    """
    setup_output(verbose, quiet)
    from rs_sam.data.bands import parse_bands
    from rs_sam.segment.anything import segment_anything
    from rs_sam.segment.settings import SegmentSettings
    from rs_sam.vector.polygonize import MinArea

    settings = SegmentSettings(
        encoder=encoder,
        weights=weights,  # type: ignore[arg-type]
        checkpoint=Path(checkpoint) if checkpoint else None,
        device=device,
        chip_size=chip_size,
        overlap=overlap,
        points_per_side=points_per_side,
        batch_size=batch_size,
        pred_iou_thresh=pred_iou_thresh,
        stability_thresh=stability_thresh,
        box_nms_thresh=box_nms_thresh,
        min_area=MinArea.parse(min_area),
        simplify=simplify,
        bands=parse_bands(bands),
        nodata=nodata,
    )
    result = segment_anything(
        image, output, settings=settings, overwrite=overwrite, show_progress=not quiet
    )
    if not quiet:
        click.echo(result.summary(), err=True)
