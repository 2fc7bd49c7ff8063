"""Options and error handling shared by the ``rs-sam`` commands."""

from __future__ import annotations

import functools
import logging
import sys
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


class RsSamCommandError(click.ClickException):
    """A library error shown as one line, with the error's own exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]  # click declares it on the class


def handle_errors(func: F) -> F:
    """Turn :class:`~rs_sam.errors.RsSamError` into a one-line message and exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from rs_sam.errors import RsSamError

        try:
            return func(*args, **kwargs)
        except RsSamError as err:
            raise RsSamCommandError(str(err), err.exit_code) from err

    return wrapper  # type: ignore[return-value]


def _show_warning(message: Any, category: type[Warning], *args: Any, **kwargs: Any) -> None:
    click.echo(f"WARNING: {message}", err=True)


def setup_output(verbose: int, quiet: bool) -> None:
    """Log level from -v/-q; warnings printed as single 'WARNING:' lines on stderr.

    Python's default filter shows each warning once per run (not once per chip).
    """
    level = (
        logging.ERROR
        if quiet
        else (logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING)
    )
    logging.basicConfig(
        level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    warnings.showwarning = _show_warning


verbose_option = click.option("-v", "--verbose", count=True, help="More log output (-vv: debug).")
quiet_option = click.option("-q", "--quiet", is_flag=True, help="No progress bar; errors only.")
overwrite_option = click.option(
    "--overwrite", is_flag=True, help="Replace existing outputs (refused otherwise)."
)
encoder_option = click.option(
    "--encoder",
    default="mobile_sam",
    show_default=True,
    help="Encoder from the registry (see `rs-sam weights list`).",
)
checkpoint_option = click.option(
    "--checkpoint",
    type=click.Path(dir_okay=False, path_type=str),
    default=None,
    help="Checkpoint file to use instead of the cached/downloaded official one.",
)
weights_option = click.option(
    "--weights",
    type=click.Choice(["official", "random"]),
    default="official",
    show_default=True,
    envvar="RS_SAM_WEIGHTS",
    show_envvar=True,
    help="'random' = untrained weights, for tests and benchmarks only (meaningless results).",
)
device_option = click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda", "mps"]),
    default="auto",
    show_default=True,
    help="Where the model runs.",
)
chip_size_option = click.option(
    "--chip-size",
    type=int,
    default=None,
    help="Chip side in pixels of a's grid [default: 1024, or the model's training chip].",
)
overlap_option = click.option(
    "--overlap",
    type=int,
    default=None,
    help="Pixels shared by neighbouring chips, blended smoothly; < chip size / 2 "
    "[default: chip size / 8].",
)
bands_option = click.option(
    "--bands",
    default=None,
    help="1-based bands to use, 1 or 3 of them, e.g. 3,2,1 [default: 1,2,3].",
)
nodata_option = click.option(
    "--nodata", type=float, default=None, help="Value marking missing data [default: the file's]."
)
min_area_option = click.option(
    "--min-area",
    default="0",
    show_default=True,
    help="Drop polygons smaller than this: pixels ('50' or '50px') or square metres ('200m2').",
)
simplify_option = click.option(
    "--simplify",
    type=float,
    default=None,
    help="Simplify polygons with this tolerance (map units).",
)


lora_option = click.option(
    "--lora",
    type=click.Path(dir_okay=False),
    default=None,
    help="LoRA adapter from `rs-sam train lora` for the encoder (same base encoder).",
)
merge_lora_option = click.option(
    "--merge-lora",
    is_flag=True,
    help="Fold the LoRA adapter into the encoder's weights first (same output, faster).",
)


def compose(*decorators: Callable[[F], F]) -> Callable[[F], F]:
    """Apply several click decorators in the order written."""

    def apply(func: F) -> F:
        for decorator in reversed(decorators):
            func = decorator(func)
        return func

    return apply
