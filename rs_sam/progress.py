"""Chip progress for callers that are not Python code: QGIS and a parent process.

QGIS's in-process runs pass their own ``on_progress`` to the API (which cancels by raising
:class:`~rs_sam.errors.RunCancelled`); what follows is the CLI's side.

The long-running functions take ``on_progress(done, total)``, called after each chip; an
exception raised there stops the run before any output is finalised. The CLI passes
:func:`chip_progress`, which forwards each call to

* the hook installed with :func:`reporting` (a program running the CLI in its own process;
  a hook may raise :class:`~rs_sam.errors.RunCancelled` to stop the run), and
* with ``RS_SAM_PROGRESS=lines`` in the environment, a line ``rs-sam-progress DONE TOTAL``
  on stderr (a parent process running ``python -m rs_sam.cli``: QGIS with a configured
  interpreter reads these lines), and
* with ``RS_SAM_CANCEL_FILE`` set, a check after each chip: once that file exists the run
  stops with :class:`~rs_sam.errors.RunCancelled` (how that parent cancels, between chips).
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from rs_sam.errors import ConfigError, RunCancelled

ProgressCallback = Callable[[int, int], None]

PROGRESS_ENV = "RS_SAM_PROGRESS"
CANCEL_FILE_ENV = "RS_SAM_CANCEL_FILE"
LINE_PREFIX = "rs-sam-progress"

_hook: ContextVar[ProgressCallback | None] = ContextVar("rs_sam_progress_hook", default=None)


@contextmanager
def reporting(callback: ProgressCallback) -> Iterator[None]:
    """Send the chip progress of CLI commands run inside this block to ``callback``."""
    token = _hook.set(callback)
    try:
        yield
    finally:
        _hook.reset(token)


def format_line(done: int, total: int) -> str:
    """The machine-readable progress line (without newline)."""
    return f"{LINE_PREFIX} {done} {total}"


def parse_line(line: str) -> tuple[int, int] | None:
    """``(done, total)`` of a progress line, or None for any other line."""
    parts = line.split()
    if len(parts) != 3 or parts[0] != LINE_PREFIX:
        return None
    try:
        return int(parts[1]), int(parts[2])
    except ValueError:
        return None


def _print_line(done: int, total: int) -> None:
    print(format_line(done, total), file=sys.stderr, flush=True)


def _stop_if_exists(cancel_file: Path, done: int, total: int) -> None:
    if cancel_file.exists():
        raise RunCancelled(f"cancelled after {done} of {total} chips; no output was written")


def chip_progress() -> ProgressCallback | None:
    """The ``on_progress`` a CLI command passes on: hook, stderr lines, cancel file."""
    targets = [hook for hook in (_hook.get(),) if hook is not None]
    mode = os.environ.get(PROGRESS_ENV, "")
    if mode == "lines":
        targets.append(_print_line)
    elif mode:
        raise ConfigError(f"{PROGRESS_ENV}={mode!r} is not supported; use 'lines' or unset it")
    cancel_file = os.environ.get(CANCEL_FILE_ENV)
    if cancel_file:
        targets.append(functools.partial(_stop_if_exists, Path(cancel_file)))
    if not targets:
        return None

    def report(done: int, total: int) -> None:
        for target in targets:
            target(done, total)

    return report
