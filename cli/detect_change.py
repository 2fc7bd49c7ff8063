"""``rs-sam detect-change A B -o OUT``: zero-shot (AnyChange) or trained (SAM-CD) change."""

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
from rs_sam.options import DETECT_CHANGE


@click.command("detect-change")
@table_parameters(DETECT_CHANGE)
@compose(verbose_option, quiet_option)
@handle_errors
def detect_change(verbose: int, quiet: bool, **values: Any) -> None:
    """Detect changes between rasters A (earlier) and B (later).

    Zero-shot (AnyChange) by default, or with a SAM-CD head trained by `rs-sam train change`
    (--model). A and B are GeoTIFF/COG/VRT files, or comma-separated single-band files of
    one date. B is reprojected onto A's grid; only the overlap is processed. Output polygons
    carry id, area_m2, score_mean and score_max (zero-shot: change angle / 180; with
    --model: change probability), and with --semantic class_a and class_b.
    """
    setup_output(verbose, quiet)
    run_and_report(DETECT_CHANGE.name, values, quiet)
