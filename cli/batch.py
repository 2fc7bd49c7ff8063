"""``rs-sam batch detect-change PAIRS.csv -o OUT_DIR`` and ``rs-sam batch segment IMAGES.csv``."""

from __future__ import annotations

from typing import Any

import click

from rs_sam.cli.options import (
    RsSamCommandError,
    click_parameter,
    compose,
    handle_errors,
    quiet_option,
    setup_output,
    verbose_option,
)
from rs_sam.options import DETECT_CHANGE, SEGMENT, Command

FORMAT_CHOICES = ("gpkg", "geojson", "shp", "parquet")


@click.group("batch")
def batch() -> None:
    """Run detect-change or segment on every scene of a CSV, with a manifest and resume.

    Each scene's output is written atomically to OUT_DIR/<name>.<format>; a rerun skips
    scenes whose output exists (--overwrite runs them again). A failed scene is recorded
    with its error in OUT_DIR/manifest.csv (scene, status, seconds, polygons, error) and
    does not stop the others; the exit code is 1 when any scene failed. With --cluster or
    --workers the scenes run in parallel on dask workers, one scene per task.
    """


def _batch_command(table: Command, columns: str) -> click.Command:
    from rs_sam.batch.runner import PER_SCENE

    shared = [o for o in table.options if o.name not in PER_SCENE and not o.positional]

    @click.command(table.cli_name, help=_help(table, columns))
    @click.argument("scene_list", metavar="SCENES.csv", type=click.Path(dir_okay=False))
    @click.option(
        "-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False),
        help="Folder for the outputs (created if missing) and manifest.csv.",
    )  # fmt: skip
    @click.option(
        "--format", "output_format", type=click.Choice(FORMAT_CHOICES), default="gpkg",
        show_default=True, help="Format of every scene's output.",
    )  # fmt: skip
    @compose(*(click_parameter(option) for option in shared))
    @compose(verbose_option, quiet_option)
    @handle_errors
    def command(
        verbose: int, quiet: bool, scene_list: str, out_dir: str, output_format: str, **values: Any
    ) -> None:
        from rs_sam.batch import run_batch

        setup_output(verbose, quiet)
        result = run_batch(
            table.name, scene_list, out_dir, values, output_format=output_format,
            show_progress=not quiet,
        )  # fmt: skip
        if result.failed:
            raise RsSamCommandError(result.summary(), 1)
        if not quiet:
            click.echo(result.summary(), err=True)

    return command


def _help(table: Command, columns: str) -> str:
    return (
        f"Run `rs-sam {table.cli_name}` on every scene of SCENES.csv (header: {columns}; "
        "name = the output's file stem; relative paths are from the CSV's folder). The other "
        f"options are those of `rs-sam {table.cli_name}` and apply to every scene."
    )


batch.add_command(_batch_command(DETECT_CHANGE, "a, b, name"))
batch.add_command(_batch_command(SEGMENT, "image, name"))
