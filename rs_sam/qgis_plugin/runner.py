"""Run an ``rs-sam`` command for a Processing algorithm: in QGIS's own Python or in another.

* **In-process** when ``rs_sam`` (and torch) import in QGIS's Python: the click command runs
  in this process; a progress hook sets the progress bar and stops the run between chips
  when the user cancels (the library then removes its unfinished outputs).
* **Subprocess** otherwise: ``<python> -m rs_sam.cli ...`` in the interpreter configured by
  ``RS_SAM_PYTHON`` (environment), the Processing setting of the same name, or the record
  ``rs-sam qgis install`` wrote. Its progress lines are relayed; on cancel it is interrupted
  (so it removes its unfinished outputs) and killed if it does not stop.

Nothing here imports QGIS or rs_sam at module level; failures raise :class:`RunFailed`
with the CLI's one-line message.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import queue
import shlex
import signal
import subprocess
import sys
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

#: How to run: prefer in-process when possible, or force one way.
MODES = ("auto", "in-process", "subprocess")
PYTHON_SETTING = "RS_SAM_PYTHON"
MODE_SETTING = "RS_SAM_RUN_MODE"
#: rs_sam.progress's protocol (repeated: rs_sam may not import here).
PROGRESS_ENV = "RS_SAM_PROGRESS"
PROGRESS_PREFIX = "rs-sam-progress"
#: Seconds an interrupted child gets to clean up before it is killed.
STOP_GRACE_S = 10.0


class RunFailed(Exception):
    """The command failed or was cancelled; the message is one line for the user."""


class Feedback(Protocol):
    """What the runner needs of ``QgsProcessingFeedback``."""

    def setProgress(self, progress: float) -> None: ...
    def isCanceled(self) -> bool: ...
    def pushInfo(self, info: str) -> None: ...


@dataclass(frozen=True)
class RunSettings:
    """``mode`` (one of :data:`MODES`) and the interpreter for the subprocess path."""

    mode: str = "auto"
    python: str | None = None


def recorded_python(plugin_dir: Path | None = None) -> str | None:
    """The interpreter ``rs-sam qgis install`` recorded for this profile, if any.

    The plugin lives in ``<profile>/python/plugins/<name>``; the record in
    ``<profile>/rs_sam/interpreter.json``.
    """
    folder = Path(plugin_dir or Path(__file__).parent)
    if len(folder.parents) < 3:
        return None
    record = folder.parents[2] / "rs_sam" / "interpreter.json"
    try:
        python = json.loads(record.read_text(encoding="utf-8")).get("python")
    except (OSError, ValueError, AttributeError):
        return None
    return python if isinstance(python, str) and python else None


def in_process_available() -> bool:
    """True when rs_sam and torch import in this Python."""
    return all(importlib.util.find_spec(name) is not None for name in ("rs_sam", "torch"))


def run_command(command: list[str], feedback: Feedback, settings: RunSettings) -> None:
    """Run ``rs-sam <command>`` the way ``settings`` says; raises :class:`RunFailed`."""
    if settings.mode not in MODES:
        raise RunFailed(
            f"{MODE_SETTING}={settings.mode!r} is not a run mode; use one of {', '.join(MODES)}"
        )
    if feedback.isCanceled():
        raise RunFailed("cancelled before the start; no output was written")
    if settings.mode == "in-process" or (settings.mode == "auto" and in_process_available()):
        run_in_process(command, feedback)
        return
    if not settings.python:
        raise RunFailed(
            "rs-sam does not import in QGIS's Python and no interpreter is configured: run "
            "`rs-sam qgis install` in the environment that has rs-sam, or set "
            f"{PYTHON_SETTING} (environment or Processing > Options > Providers > rs-sam)"
        )
    run_subprocess(settings.python, command, feedback)


class _LineRelay:
    """A text stream that forwards each complete line to ``feedback.pushInfo``."""

    def __init__(self, feedback: Feedback) -> None:
        self.feedback = feedback
        self.pending = ""

    def write(self, text: str) -> int:
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            if line.strip():
                self.feedback.pushInfo(line.rstrip())
        return len(text)

    def flush(self) -> None:
        if self.pending.strip():
            self.feedback.pushInfo(self.pending.rstrip())
        self.pending = ""


def run_in_process(command: list[str], feedback: Feedback) -> None:
    """Run the click command here, relaying progress, warnings and cancellation."""
    import click

    from rs_sam.cli.main import cli
    from rs_sam.errors import RunCancelled
    from rs_sam.progress import reporting

    def on_progress(done: int, total: int) -> None:
        feedback.setProgress(100.0 * done / max(total, 1))
        if feedback.isCanceled():
            raise RunCancelled(f"cancelled after {done} of {total} chips; no output was written")

    relay = _LineRelay(feedback)
    try:
        # catch_warnings also restores warnings.showwarning, which the CLI replaces
        with warnings.catch_warnings(), reporting(on_progress):
            warnings.simplefilter("ignore", DeprecationWarning)  # for developers, not users
            warnings.simplefilter("ignore", PendingDeprecationWarning)
            with contextlib.redirect_stderr(relay):  # type: ignore[type-var]
                cli.main(args=[*command, "-q"], prog_name="rs-sam", standalone_mode=False)
    except click.ClickException as err:
        raise RunFailed(err.format_message()) from err
    except click.exceptions.Abort as err:
        raise RunFailed("aborted; no output was written") from err
    finally:
        relay.flush()


def run_subprocess(
    python: str, command: list[str], feedback: Feedback, *, poll_s: float = 0.1
) -> None:
    """Run ``python -m rs_sam.cli <command>``, relaying its output; stop it on cancel."""
    args = [python, "-m", "rs_sam.cli", *command, "-q"]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env[PROGRESS_ENV] = "lines"
    feedback.pushInfo(f"Running {shlex.join(args)}")
    windows = sys.platform == "win32"
    try:
        child = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            env=env,
            creationflags=subprocess.CREATE_NEW_PROCESS_GROUP if windows else 0,  # type: ignore[attr-defined]
        )
    except OSError as err:
        raise RunFailed(
            f"cannot start the configured Python {python} ({err.strerror}); fix "
            f"{PYTHON_SETTING} or run `rs-sam qgis install` again"
        ) from err
    with child:  # closes the pipe and reaps the process, also on cancel
        last_error = _relay(child, feedback, poll_s, windows)
        code = child.wait()
    if code != 0:
        raise RunFailed(last_error or f"rs-sam exited with code {code}; see the log above")


def _relay(child: subprocess.Popen[str], feedback: Feedback, poll_s: float, windows: bool) -> str:
    """Pass the child's lines on until it ends; returns its last ``Error:`` message."""
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_read_lines, args=(child, lines), daemon=True).start()
    last_error = ""
    while True:
        try:
            line = lines.get(timeout=poll_s)
        except queue.Empty:
            line = ""
        if line is None:
            return last_error
        progress = _parse_progress(line)
        if progress is not None:
            feedback.setProgress(100.0 * progress[0] / max(progress[1], 1))
        elif line.strip():
            feedback.pushInfo(line.rstrip())
            if line.startswith("Error: "):
                last_error = line[len("Error: ") :].strip()
        if feedback.isCanceled():
            _stop(child, windows)
            raise RunFailed("cancelled; the rs-sam process was stopped and wrote no output")


def _read_lines(child: subprocess.Popen[str], lines: queue.Queue[str | None]) -> None:
    assert child.stdout is not None
    with contextlib.suppress(ValueError, OSError):  # the pipe closed after a cancel
        for line in child.stdout:
            lines.put(line)
    lines.put(None)


def _parse_progress(line: str) -> tuple[int, int] | None:
    parts = line.split()
    if len(parts) == 3 and parts[0] == PROGRESS_PREFIX and (parts[1] + parts[2]).isdigit():
        return int(parts[1]), int(parts[2])
    return None


def _stop(child: subprocess.Popen[str], windows: bool) -> None:
    """Interrupt the child (it removes unfinished outputs), kill it after a grace period."""
    if child.poll() is not None:
        return
    child.send_signal(signal.CTRL_BREAK_EVENT if windows else signal.SIGINT)  # type: ignore[attr-defined]
    try:
        child.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
