"""A real headless browser for the HTML previews: Debian's ``chromium``, offline.

Tests skip with a reason where chromium is missing, except on CI (``CI=true``), where
``.ci/run`` installs it and a missing browser is a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

#: Console lines chromium logs for uncaught exceptions and console.error/warn.
_ERRORS = ("Uncaught", "Error", "error", "Failed", "WARNING:CONSOLE", "ERROR:CONSOLE")


def chromium() -> str:
    """The chromium executable; skips the test (fails on CI) without one."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is missing on CI; .ci/run installs it (apt-get install chromium)")
        pytest.skip("chromium is not installed (Debian: apt-get install chromium)")
    return found


def browse(
    page: Path, folder: Path, size: tuple[int, int] = (900, 650)
) -> tuple[np.ndarray, list[str]]:
    """Open ``page`` headless with every host unreachable; returns the screenshot as
    (H, W, 3) uint8 and the page's console lines (chromium's ``CONSOLE`` log)."""
    shot = folder / f"{page.stem}-screenshot.png"
    run = subprocess.run(
        [chromium(), "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run",
         f"--user-data-dir={folder / 'chromium-profile'}", "--enable-logging=stderr", "--v=0",
         "--host-resolver-rules=MAP * ~NOTFOUND", "--virtual-time-budget=5000",
         f"--window-size={size[0]},{size[1]}", f"--screenshot={shot}", page.resolve().as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert shot.exists(), run.stderr[-2000:]
    console = [line for line in run.stderr.splitlines() if ":CONSOLE" in line]
    rgb = (imread(shot)[..., :3] * 255).round().astype(np.uint8)
    return rgb, console


def console_errors(console: list[str]) -> list[str]:
    """The console lines that report an error (anything but the page's own log lines)."""
    return [
        line for line in console if "INFO:CONSOLE" not in line or any(e in line for e in _ERRORS)
    ]
