"""Options and error handling shared by the ``rs-sam`` commands.

The options of ``detect-change``, ``segment`` and ``sam-objects`` are generated from the
option table :mod:`rs_sam.options`; only ``-v`` and ``-q`` are the CLI's own.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import traceback
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

import click

from rs_sam.options import PATH_KINDS, Command, Option
from rs_sam.progress import chip_progress

F = TypeVar("F", bound=Callable[..., Any])


class RsSamCommandError(click.ClickException):
    """A library error shown as one line, with the error's own exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]  # click declares it on the class


def handle_errors(func: F) -> F:
    """Every failure as one line on stderr with its exit code; ``-v`` also shows the traceback.

    :class:`~rs_sam.errors.RsSamError` (bad input: 2, environment: 1) keeps its own code; any
    other exception is an internal error (1). Ctrl-C (SIGINT) is the tool's own
    cancellation: the run's temporaries are removed on the way out, and the command exits
    130 with one line, not click's "Aborted!".
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from rs_sam.errors import RsSamError, RunCancelled

        verbose = bool(kwargs.get("verbose"))
        try:
            return func(*args, **kwargs)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except KeyboardInterrupt as interrupt:
            cancelled = RunCancelled("cancelled; no output was written")
            raise RsSamCommandError(str(cancelled), cancelled.exit_code) from interrupt
        except RsSamError as err:
            _show_traceback(verbose)
            raise RsSamCommandError(str(err), err.exit_code) from err
        except Exception as err:
            _show_traceback(verbose)
            text = " ".join(str(err).split())[:300] or "no message"
            hint = "" if verbose else "; run again with -v for the traceback"
            raise RsSamCommandError(
                f"internal error ({type(err).__name__}: {text}){hint}; please report it", 1
            ) from err

    return wrapper  # type: ignore[return-value]


def _show_traceback(verbose: bool) -> None:
    if verbose:
        click.echo(traceback.format_exc().rstrip(), err=True)


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
    # dask.distributed (--cluster, --workers) reads this when imported, here and in workers
    os.environ.setdefault(
        "DASK_LOGGING__DISTRIBUTED", "info" if verbose > 1 else "warning" if verbose else "error"
    )
    warnings.showwarning = _show_warning


verbose_option = click.option("-v", "--verbose", count=True, help="More log output (-vv: debug).")
quiet_option = click.option("-q", "--quiet", is_flag=True, help="No progress bar; errors only.")


def _click_type(option: Option) -> click.ParamType:
    if option.kind == "enum":
        return click.Choice(list(option.choices))
    if option.kind in PATH_KINDS:
        return click.Path(dir_okay=option.folders)
    return {"int": click.INT, "float": click.FLOAT}.get(option.kind, click.STRING)


def click_parameter(option: Option) -> Callable[[F], F]:
    """The click argument or option of one entry of the option table."""
    if option.positional:
        return click.argument(option.name)
    flags = [option.short, option.flag] if option.short else [option.flag]
    if option.kind == "bool":
        return click.option(*flags, is_flag=True, help=option.help)
    if option.multiple:
        return click.option(
            *flags, multiple=True, default=(), type=_click_type(option), help=option.help
        )
    extra: dict[str, Any] = {"envvar": option.envvar, "show_envvar": True} if option.envvar else {}
    return click.option(
        *flags,
        type=_click_type(option),
        default=option.default,
        required=option.required,
        show_default=option.default is not None,
        help=option.help,
        **extra,
    )


def table_parameters(command: Command) -> Callable[[F], F]:
    """Every argument and option of a command, from :mod:`rs_sam.options`.

    The help lists the required ones (``-o``) first, then the table's order.
    """
    options = sorted(command.options, key=lambda o: not (o.positional or o.required))
    return compose(*(click_parameter(option) for option in options))


def run_and_report(command: str, values: dict[str, Any], quiet: bool) -> None:
    """Run a command through the API with chip progress; print its summary unless quiet."""
    from rs_sam.commands import run

    result = run(command, values, show_progress=not quiet, on_progress=chip_progress())
    if not quiet:
        click.echo(result.summary(), err=True)


def compose(*decorators: Callable[[F], F]) -> Callable[[F], F]:
    """Apply several click decorators in the order written."""

    def apply(func: F) -> F:
        for decorator in reversed(decorators):
            func = decorator(func)
        return func

    return apply
