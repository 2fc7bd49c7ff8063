"""Run an rs-sam command for a Processing algorithm: in QGIS's own Python or in another.

A run is a command of the option table (``detect_change``, ``segment``, ``sam_objects``)
and its option values, keyed by option name.

* **In-process** when ``rs_sam`` and torch import in QGIS's Python: the values go to the
  library API (:func:`rs_sam.commands.run`) in this process (one run at a time: warnings
  and error logs are relayed through process-wide hooks); a progress callback sets the
  progress bar and stops the run between chips on cancel (the library then removes its
  unfinished outputs).
* **Subprocess** otherwise (or while another run holds this process): ``<python> -m
  rs_sam.cli ...`` with the options the table makes of the values, in the interpreter
  configured by ``RS_SAM_PYTHON`` (environment), the Processing setting of the same name,
  or the record ``rs-sam qgis install`` wrote. Its progress lines are relayed. On cancel a
  file tells it to stop after the current chip; one that does not stop in time is
  interrupted, then killed.

Nothing here imports QGIS or rs_sam at module level; failures raise :class:`RunFailed`
with the CLI's one-line message.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import traceback
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .specs import options

#: How to run: prefer in-process when possible, or force one way.
MODES = ("auto", "in-process", "subprocess")
PYTHON_SETTING = "RS_SAM_PYTHON"
MODE_SETTING = "RS_SAM_RUN_MODE"
#: rs_sam.progress's protocol (repeated: rs_sam may not import here).
PROGRESS_ENV = "RS_SAM_PROGRESS"
PROGRESS_PREFIX = "rs-sam-progress"
CANCEL_FILE_ENV = "RS_SAM_CANCEL_FILE"
#: Seconds a cancelled child gets to finish its chip, then to clean up after an interrupt.
FINISH_CHIP_S = 120.0
INTERRUPT_GRACE_S = 10.0
#: QGIS's own Python and GDAL/PROJ settings: the child has its own (rasterio bundles GDAL).
CHILD_ENV_DROP = ("PYTHONPATH", "PYTHONHOME", "GDAL_DATA", "GDAL_DRIVER_PATH", "PROJ_LIB",
                  "PROJ_DATA")  # fmt: skip

_in_process_lock = threading.Lock()


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


def import_problem() -> str | None:
    """Why rs-sam cannot run in this Python (one line), or None when it can."""
    try:
        import torch  # noqa: F401

        import rs_sam.commands  # noqa: F401
    except Exception as err:  # ImportError, or an OSError/ABI error from a compiled module
        return _one_line(err)
    return None


def run_command(
    command: str, values: Mapping[str, Any], feedback: Feedback, settings: RunSettings
) -> None:
    """Run ``command`` with option ``values`` the way ``settings`` says; raises
    :class:`RunFailed`."""
    if settings.mode not in MODES:
        raise RunFailed(
            f"{MODE_SETTING}={settings.mode!r} is not a run mode; use one of {', '.join(MODES)}"
        )
    if feedback.isCanceled():
        raise RunFailed("cancelled before the start; no output was written")
    problem = None
    if settings.mode != "subprocess":
        problem = import_problem()
        if problem is None:
            # one in-process run at a time; with an interpreter, don't wait for it
            if _in_process_lock.acquire(blocking=not settings.python):
                try:
                    run_in_process(command, values, feedback)
                finally:
                    _in_process_lock.release()
                return
            feedback.pushInfo("Another rs-sam run is using QGIS's Python; this one runs apart")
        elif settings.mode == "in-process":
            raise RunFailed(
                f"{MODE_SETTING} is in-process but rs-sam does not import in QGIS's Python "
                f"({problem}); install it there or set {MODE_SETTING}=auto"
            )
    if not settings.python:
        reason = (
            f"rs-sam does not import in QGIS's Python ({problem})"
            if problem
            else f"{MODE_SETTING} is subprocess"
        )
        raise RunFailed(
            f"{reason} and no interpreter is configured: run `rs-sam qgis install` in the "
            f"environment that has rs-sam, or set {PYTHON_SETTING} (environment variable, or "
            "Settings > Options > Processing > Providers > rs-sam)"
        )
    run_subprocess(settings.python, cli_arguments(command, values), feedback)


def cli_arguments(command: str, values: Mapping[str, Any]) -> list[str]:
    """The ``rs-sam`` arguments (command name first) of a run."""
    table = options.COMMANDS[command]
    return [table.cli_name, *table.cli_arguments(values)]


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


def _push(feedback: Feedback, line: str) -> None:
    """A log line to the feedback: the CLI's ``WARNING:`` lines as warnings."""
    push_warning = getattr(feedback, "pushWarning", None)
    if line.startswith("WARNING: ") and callable(push_warning):
        push_warning(line[len("WARNING: ") :])
    else:
        feedback.pushInfo(line)


class _LineRelay:
    """A text stream that forwards each complete line to the feedback."""

    def __init__(self, feedback: Feedback) -> None:
        self.feedback = feedback
        self.pending = ""

    def write(self, text: str) -> int:
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            if line.strip():
                _push(self.feedback, line.rstrip())
        return len(text)

    def flush(self) -> None:
        if self.pending.strip():
            _push(self.feedback, self.pending.rstrip())
        self.pending = ""


def run_in_process(command: str, values: Mapping[str, Any], feedback: Feedback) -> None:
    """Run the command through the library API here, relaying progress, warnings, error
    logs and cancellation; warning and logging hooks are restored afterwards."""
    from rs_sam.commands import run
    from rs_sam.errors import RsSamError, RunCancelled

    def on_progress(done: int, total: int) -> None:
        feedback.setProgress(100.0 * done / max(total, 1))
        if feedback.isCanceled():
            raise RunCancelled(f"cancelled after {done} of {total} chips; no output was written")

    def show_warning(message: Any, category: type[Warning], *args: Any, **kwargs: Any) -> None:
        _push(feedback, f"WARNING: {message}")

    relay = _LineRelay(feedback)
    errors = logging.StreamHandler(relay)  # type: ignore[arg-type]
    errors.setLevel(logging.ERROR)  # what the CLI shows with -q
    errors.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(errors)
    try:
        with warnings.catch_warnings():  # restores showwarning and the filters
            warnings.simplefilter("ignore", DeprecationWarning)  # for developers, not users
            warnings.simplefilter("ignore", PendingDeprecationWarning)
            warnings.showwarning = show_warning
            with contextlib.redirect_stderr(relay):  # type: ignore[type-var]
                run(command, values, show_progress=False, on_progress=on_progress)
    except RsSamError as err:
        raise RunFailed(str(err)) from err
    except Exception as err:  # a bug or an environment problem: one line, details in the log
        push_debug = getattr(feedback, "pushDebugInfo", feedback.pushInfo)
        push_debug(traceback.format_exc())
        raise RunFailed(f"rs-sam failed: {_one_line(err)}") from err
    finally:
        root.removeHandler(errors)
        relay.flush()


def run_subprocess(
    python: str, command: list[str], feedback: Feedback, *, poll_s: float = 0.1
) -> None:
    """Run ``python -m rs_sam.cli <command>``, relaying its output; stop it on cancel."""
    args = [python, "-m", "rs_sam.cli", *command, "-q"]
    with tempfile.TemporaryDirectory(prefix="rs-sam-run-") as folder:
        cancel_file = Path(folder) / "cancel"
        env = {k: v for k, v in os.environ.items() if k not in CHILD_ENV_DROP}
        env.update({PROGRESS_ENV: "lines", CANCEL_FILE_ENV: str(cancel_file),
                    "PYTHONIOENCODING": "utf-8"})  # fmt: skip
        feedback.pushInfo(f"Running {shlex.join(args)}")
        windows = sys.platform == "win32"
        flags = 0
        if windows:  # no console window; a group of its own for Ctrl-Break
            flags = subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.CREATE_NO_WINDOW  # type: ignore[attr-defined]
        try:
            child = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                encoding="utf-8",
                errors="replace",
                bufsize=1,
                env=env,
                creationflags=flags,
            )
        except OSError as err:
            raise RunFailed(
                f"cannot start the configured Python {python} ({err.strerror}); fix "
                f"{PYTHON_SETTING} or run `rs-sam qgis install` again"
            ) from err
        with child:  # closes the pipe and reaps the process
            last_error, cancelled = _relay(child, feedback, poll_s, cancel_file, windows)
            code = child.wait()
    if cancelled and code == 0:
        feedback.pushInfo("rs-sam finished before the cancel took effect; its outputs are complete")
    elif cancelled:
        raise RunFailed(last_error or "cancelled; the rs-sam process was stopped")
    elif code != 0:
        raise RunFailed(last_error or f"rs-sam exited with code {code}; see the log above")


def _relay(
    child: subprocess.Popen[str], feedback: Feedback, poll_s: float, cancel_file: Path,
    windows: bool,
) -> tuple[str, bool]:  # fmt: skip
    """Pass the child's lines on until it ends; returns its last error line and whether the
    run was cancelled."""
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_read_lines, args=(child, lines), daemon=True).start()
    last_error = ""
    stopper: threading.Thread | None = None
    while True:
        try:
            line = lines.get(timeout=poll_s)
        except queue.Empty:
            line = ""
        if line is None:
            return last_error, stopper is not None
        progress = _parse_progress(line)
        if progress is not None:
            feedback.setProgress(100.0 * progress[0] / max(progress[1], 1))
        elif line.strip():
            _push(feedback, line.rstrip())
            if line.startswith("Error: "):
                last_error = line[len("Error: ") :].strip()
        if stopper is None and feedback.isCanceled():
            cancel_file.touch()  # the child stops after its current chip
            stopper = threading.Thread(target=_stop, args=(child, windows), daemon=True)
            stopper.start()


def _read_lines(child: subprocess.Popen[str], lines: queue.Queue[str | None]) -> None:
    assert child.stdout is not None
    with contextlib.suppress(ValueError, OSError):  # the pipe closed under us
        for line in child.stdout:
            lines.put(line)
    lines.put(None)


def _parse_progress(line: str) -> tuple[int, int] | None:
    parts = line.split()
    if len(parts) == 3 and parts[0] == PROGRESS_PREFIX and (parts[1] + parts[2]).isdigit():
        return int(parts[1]), int(parts[2])
    return None


def _stop(child: subprocess.Popen[str], windows: bool) -> None:
    """Escalate if the child does not stop by itself: interrupt (it removes unfinished
    outputs), then kill."""
    try:
        child.wait(timeout=FINISH_CHIP_S)
        return
    except subprocess.TimeoutExpired:
        pass
    try:
        child.send_signal(signal.CTRL_BREAK_EVENT if windows else signal.SIGINT)  # type: ignore[attr-defined]
        child.wait(timeout=INTERRUPT_GRACE_S)
    except (OSError, subprocess.TimeoutExpired):  # no console to signal (Windows), or stuck
        child.kill()
