"""Runs of the QGIS runner in tests: a configured "Python" with tiny models, leftovers."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

TINY_CLI = Path(__file__).with_name("tiny_cli.py")


def tiny_python(folder: Path) -> str:
    """An executable that runs the CLI with tiny random encoders, like a configured Python."""
    script = folder / "tiny-python"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{TINY_CLI}" "$@"\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


def leftovers(folder: Path) -> list[str]:
    """Files besides the inputs (and the ``.aux.xml`` statistics QGIS writes beside them)."""
    return sorted(
        p.name
        for p in folder.iterdir()
        if p.name not in ("a.tif", "b.tif") and not p.name.endswith(".aux.xml")
    )
