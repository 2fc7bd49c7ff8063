"""``rs-sam pseudo-label``: training data from proposals, and its rebuild from a review."""

from __future__ import annotations

from typing import Any

import click

from rs_sam.cli.options import (
    click_parameter,
    compose,
    handle_errors,
    quiet_option,
    run_and_report,
    setup_output,
    verbose_option,
)
from rs_sam.options import PSEUDO_LABELS

GENERATE, REVIEW = PSEUDO_LABELS


def _parameters() -> list[Any]:
    """Both tables' options, once each; the rasters are optional (none with --from-review)."""
    seen: set[str] = set()
    parameters = []
    for option in (*GENERATE.options, *REVIEW.options):
        if option.name in seen:
            continue
        seen.add(option.name)
        if option.positional:
            parameters.append(click.argument(option.name, required=False))
        else:
            parameters.append(click_parameter(option.but(required=option.name == "output")))
    return parameters


@click.command("pseudo-label")
@compose(*_parameters())
@compose(verbose_option, quiet_option)
@handle_errors
def pseudo_label(verbose: int, quiet: bool, **values: Any) -> None:
    """Training data from proposals: IMAGE [LATER] -o FOLDER.

    \b
    Two rasters: change labels (zero-shot detect-change); one: segment labels (SAM objects,
    --prompts, or --text concepts); --vectors FILE: the polygons of a file instead.
    FOLDER gets label.tif on IMAGE's grid (0 background, 1.. objects, 255 ignore),
    review.gpkg (status proposed, score) and train_change.yaml / train_segment.yaml.
    Objects scoring at least --min-score are labels; from --uncertain-score up to it, ignore.

    \b
    Review in QGIS: set status to accepted or rejected, redraw, add polygons (status added),
    save, then rebuild: rs-sam pseudo-label --from-review FOLDER/review.gpkg -o FOLDER
    --overwrite (accepted/added: labels; rejected: background; proposed: ignore).
    """
    setup_output(verbose, quiet)
    if values["from_review"]:
        given = {k: v for k, v in values.items() if v not in (None, ()) and v is not False}
        extra = sorted(set(given) - {o.name for o in REVIEW.options} - {"score_field"})
        extra = [k for k in extra  # set, and not by default or the environment
                 if given[k] != GENERATE.default(k) and not GENERATE.option(k).envvar]  # fmt: skip
        if extra:
            flags = ", ".join(GENERATE.option(k).flag or k.upper() for k in extra)
            raise click.UsageError(f"--from-review rebuilds from the review alone; drop {flags}")
        run_and_report(REVIEW.name, {o.name: values[o.name] for o in REVIEW.options}, quiet)
        return
    if not values["image"]:
        raise click.UsageError("give IMAGE (and LATER for change labels), or --from-review FILE")
    run_and_report(GENERATE.name, {o.name: values[o.name] for o in GENERATE.options}, quiet)
