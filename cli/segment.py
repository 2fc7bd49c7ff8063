"""``rs-sam segment IMAGE -o OUT`` and ``rs-sam sam-objects``: SAM objects of a raster.

The options come from :mod:`rs_sam.options`; the rules between them and the choice of
pipeline are :func:`rs_sam.api.segment`'s.
"""

from __future__ import annotations

from typing import Any

import click

from rs_sam.cli.options import (
    compose,
    handle_errors,
    quiet_option,
    run_and_report,
    setup_output,
    table_parameters,
    verbose_option,
)
from rs_sam.options import SAM_OBJECTS, SEGMENT


@click.command("segment")
@table_parameters(SEGMENT)
@compose(verbose_option, quiet_option)
@handle_errors
def segment(verbose: int, quiet: bool, **values: Any) -> None:
    """Segment IMAGE (GeoTIFF/COG/VRT) into objects, one polygon each, in its CRS.

    --mode anything: every object SAM finds; objects cut by chip borders are matched across
    the overlap and merged; polygons carry id, score (predicted IoU), stability, area_m2.
    --mode prompt: one polygon per prompt (id, prompt_id, mask_index, score, area_m2).
    --model: semantic segmentation, one polygon per connected area of a class.
    --hq / --hq-only (with an HQ-SAM encoder, e.g. --encoder sam_hq_vit_b): HQ-SAM masks for
    --mode anything and prompt.
    """
    setup_output(verbose, quiet)
    run_and_report(SEGMENT.name, values, quiet)


@click.command("sam-objects")
@table_parameters(SAM_OBJECTS)
@compose(verbose_option, quiet_option)
@handle_errors
def sam_objects(verbose: int, quiet: bool, **values: Any) -> None:
    """SAM object map (uint32 ids, 0 = none) and boundary map of SOURCE, for SSRS training.

    SOURCE is a georeferenced raster (outputs on its grid) or a folder of images (one
    <name>.tif per image in the output folders). Defaults follow SSRS (predicted IoU 0.96,
    box NMS 0.5, objects of at least 50 pixels).
    """
    setup_output(verbose, quiet)
    run_and_report(SAM_OBJECTS.name, values, quiet)
