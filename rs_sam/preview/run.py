"""A run with a preview: the pipeline's outputs and the preview are published together.

The pipeline runs unchanged, but writes its outputs into this run's staging folder; the
preview is then drawn from the staged vector file, and only when that succeeds are all
outputs renamed into place (:class:`~rs_sam.inference.outputs.RunOutputs`). Every output
path, the preview's included, is checked before any work, and a failure anywhere leaves
every output path as it was.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import geopandas as gpd

from rs_sam.errors import OutputPathError
from rs_sam.inference.outputs import RunOutputs
from rs_sam.preview.html import write_html
from rs_sam.preview.png import write_png
from rs_sam.preview.view import PreviewView

#: Preview formats by suffix.
PREVIEW_SUFFIXES = (".png", ".html")

R = TypeVar("R")
#: Runs the pipeline: (vector path, {raster output name: path or None}) -> its result.
Pipeline = Callable[[Path, dict[str, Path | None]], R]
#: Builds the view: (the output polygons, a scratch folder) -> what the preview draws.
ViewMaker = Callable[[gpd.GeoDataFrame, Path], PreviewView]


def check_preview_path(path: str | Path) -> Path:
    """A preview's suffix (.png or .html) and folder, checked before any work."""
    path = Path(path).expanduser()
    if path.suffix.lower() not in PREVIEW_SUFFIXES:
        raise OutputPathError(
            f"preview {path} must end in .png (a picture) or .html (an offline map); rename it"
        )
    if not path.parent.is_dir():
        raise OutputPathError(f"folder {path.parent} for {path.name} does not exist; create it")
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise OutputPathError(f"folder {path.parent} for {path.name} is not writable")
    return path


def write_preview(view: PreviewView, path: Path) -> None:
    """Draw ``view`` into ``path``: a picture (.png) or a web page (.html), by its suffix."""
    if path.suffix.lower() == ".html":
        write_html(view, path)
    else:
        write_png(view, path)


def run_with_preview(
    pipeline: Pipeline[R],
    make_view: ViewMaker,
    *,
    preview: str | Path,
    output: str | Path,
    rasters: Mapping[str, str | Path | None],
    overwrite: bool,
) -> R:
    """Run ``pipeline`` into staging, draw the preview of its polygons, publish everything.

    Args:
        pipeline: the run, given staged paths for ``output`` and each of ``rasters``.
        make_view: the preview's image and polygons.
        preview: the preview's path (.png or .html).
        output: the vector output.
        rasters: optional raster outputs by what they are (None: not written).
        overwrite: replace existing outputs; without it they are refused before any work.

    Returns:
        The pipeline's result, with the final paths in place of the staged ones.
    """
    outputs = RunOutputs(overwrite=overwrite)
    vector = outputs.vector(output)
    finals = {what: outputs.raster(path, what=what) for what, path in rasters.items()}
    preview_path = outputs.file(check_preview_path(preview), "preview")  # exists: --overwrite
    with outputs.staging() as stage:
        staged = {p: stage.path(p) for p in (vector, *finals.values()) if p is not None}
        result = pipeline(staged[vector], {what: p and staged[p] for what, p in finals.items()})
        polygons = _read_polygons(staged[vector])
        view = make_view(polygons, stage.workdir)
        write_preview(view, stage.path(preview_path))
    return _with_paths(result, {s: p for p, s in staged.items()})


def _read_polygons(path: Path) -> gpd.GeoDataFrame:
    if path.suffix.lower() == ".parquet":
        return gpd.read_parquet(path)
    return gpd.read_file(path)


def _with_paths(result: R, renamed: Mapping[Path, Path]) -> R:
    """``result`` (a dataclass) with each staged path field replaced by its final path."""
    if not dataclasses.is_dataclass(result):
        return result
    changes: dict[str, Any] = {}
    for field in dataclasses.fields(result):
        value = getattr(result, field.name)
        if isinstance(value, Path) and value in renamed:
            changes[field.name] = renamed[value]
    return dataclasses.replace(result, **changes)  # type: ignore[type-var]
