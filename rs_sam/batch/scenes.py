"""The scene list of a batch (a CSV with a header) and its manifest of outcomes.

``PAIRS.csv`` has columns ``a``, ``b`` and ``name`` (detect-change), ``IMAGES.csv`` columns
``image`` and ``name`` (segment); ``name`` is the output's file stem. Relative input paths
are taken from the CSV's folder; URLs and ``/vsi...`` paths are kept as written. The
manifest (``OUT_DIR/manifest.csv``) has one row per scene finished: scene, status (``ok``,
``failed``, ``skipped``: done by an earlier run), seconds, polygons and the one-line error.
"""

from __future__ import annotations

import csv
import os
import re
import tempfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from rs_sam.errors import ConfigError, OutputPathError, RasterNotFoundError, looks_remote

#: The input columns of each batch command.
INPUT_COLUMNS = {"detect_change": ("a", "b"), "segment": ("image",)}
MANIFEST_NAME = "manifest.csv"
_STEM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._ -]*$")


@dataclass(frozen=True)
class BatchScene:
    """One row of the scene list: its output stem and input paths by column."""

    name: str
    inputs: dict[str, str]


@dataclass(frozen=True)
class SceneOutcome:
    """One row of the manifest."""

    scene: str
    status: str  # ok | failed | skipped
    seconds: float
    polygons: int | None
    error: str = ""


def read_scenes(path: str | Path, command: str) -> list[BatchScene]:
    """The scenes of a CSV, checked before any work.

    Raises:
        RasterNotFoundError: the CSV does not exist.
        ConfigError: a column is missing, a name is empty, repeated or not a file stem, or
            the list is empty.
    """
    path = Path(path)
    columns = (*INPUT_COLUMNS[command], "name")
    if not path.is_file():
        raise RasterNotFoundError(f"scene list {path} does not exist; give a CSV file")
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = [h.strip() for h in reader.fieldnames or []]
        missing = [c for c in columns if c not in header]
        if missing:
            raise ConfigError(
                f"scene list {path} has no column(s) {', '.join(missing)}; its header must "
                f"name {', '.join(columns)} (found: {', '.join(header) or 'nothing'})"
            )
        rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in reader]
    scenes: list[BatchScene] = []
    seen: set[str] = set()
    for line, row in enumerate(rows, start=2):
        name = row["name"]
        if not _STEM.match(name) or name in {".", ".."}:
            raise ConfigError(
                f"scene list {path}, line {line}: name {name!r} is not a file stem; use "
                "letters, digits, '.', '_', '-' or spaces"
            )
        if name in seen:
            raise ConfigError(f"scene list {path}, line {line}: name {name!r} is repeated")
        seen.add(name)
        empty = [c for c in INPUT_COLUMNS[command] if not row[c]]
        if empty:
            raise ConfigError(f"scene list {path}, line {line}: column {empty[0]} is empty")
        inputs = {c: _resolve(row[c], path.parent) for c in INPUT_COLUMNS[command]}
        scenes.append(BatchScene(name, inputs))
    if not scenes:
        raise ConfigError(f"scene list {path} lists no scene; add rows below the header")
    return scenes


def _resolve(value: str, folder: Path) -> str:
    """A path relative to the CSV's folder; URLs, absolute paths and lists as given."""
    if looks_remote(value) or "," in value or Path(value).is_absolute():
        return value
    return str(folder / value)


def read_manifest(out_dir: Path) -> dict[str, SceneOutcome]:
    """The outcomes of an earlier run, by scene (empty when there is none)."""
    path = out_dir / MANIFEST_NAME
    if not path.is_file():
        return {}
    outcomes: dict[str, SceneOutcome] = {}
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            try:
                polygons = int(row["polygons"]) if row.get("polygons") else None
                outcomes[row["scene"]] = SceneOutcome(
                    row["scene"], row["status"], float(row["seconds"]), polygons,
                    row.get("error") or "",
                )  # fmt: skip
            except (KeyError, ValueError):
                continue  # a hand-edited row: that scene is simply run again
    return outcomes


def write_manifest(out_dir: Path, outcomes: list[SceneOutcome]) -> Path:
    """Write the manifest atomically (a reader never sees half of it)."""
    path = out_dir / MANIFEST_NAME
    names = [f.name for f in fields(SceneOutcome)]
    handle = tempfile.NamedTemporaryFile(
        "w", newline="", encoding="utf-8", dir=out_dir, prefix=".manifest-", suffix=".csv",
        delete=False,
    )  # fmt: skip
    try:
        with handle:
            writer = csv.DictWriter(handle, fieldnames=names)
            writer.writeheader()
            for outcome in outcomes:
                row = asdict(outcome)
                row["seconds"] = f"{outcome.seconds:.2f}"
                row["polygons"] = "" if outcome.polygons is None else outcome.polygons
                writer.writerow(row)
        os.replace(handle.name, path)
    except OSError as err:
        Path(handle.name).unlink(missing_ok=True)
        raise OutputPathError(f"cannot write {path} ({err.strerror}); check the folder") from err
    return path
