"""Chip progress for callers that are not Python code: QGIS and a parent process.

The long-running functions take ``on_progress(done, total)``, called after each chip; an
exception raised there stops the run before any output is finalised. The CLI passes
:func:`chip_progress`, which forwards each call to

* the hook installed with :func:`reporting` (QGIS running the CLI in its own process: the
  hook sets the progress bar and raises :class:`~rs_sam.errors.RunCancelled` on cancel), and
* with ``RS_SAM_PROGRESS=lines`` in the environment, a line ``rs-sam-progress DONE TOTAL``
  on stderr (a parent process running ``python -m rs_sam.cli``: QGIS with a configured
  interpreter reads these lines and kills the child on cancel).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

ProgressCallback = Callable[[int, int], None]

PROGRESS_ENV = "RS_SAM_PROGRESS"
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


def chip_progress() -> ProgressCallback | None:
    """The ``on_progress`` a CLI command passes on: the installed hook and/or stderr lines."""
    targets = [hook for hook in (_hook.get(),) if hook is not None]
    mode = os.environ.get(PROGRESS_ENV, "")
    if mode == "lines":
        targets.append(_print_line)
    elif mode:
        from rs_sam.errors import ConfigError

        raise ConfigError(f"{PROGRESS_ENV}={mode!r} is not supported; use 'lines' or unset it")
    if not targets:
        return None

    def report(done: int, total: int) -> None:
        for target in targets:
            target(done, total)

    return report
