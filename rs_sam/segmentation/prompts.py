"""Reading point and box prompts from a vector file, in raster pixel coordinates.

``rs-sam segment --mode prompt --prompts prompts.gpkg`` reads any vector file GDAL reads
(GeoPackage, GeoJSON, shapefile...) with :func:`read_prompts`:

* The file must have a CRS; other CRSs than the raster's are transformed to it. (GeoJSON
  is always longitude/latitude; one whose coordinates are not is reported as missing its
  CRS.)
* Points are point prompts. A ``label`` attribute says foreground (1) or background (0);
  without the column, or where it is null, a point is foreground. MultiPoints are several
  points with the row's label.
* Points sharing a ``group`` attribute form ONE prompt of several points; points without
  a group (column missing or null) are one prompt each.
* Polygons and multipolygons are box prompts: the bounding box of the geometry. A group
  may also hold ONE polygon: its box and the group's points form one prompt (SAM takes one
  box plus points). Ungrouped polygons are box prompts of their own.
* A prompt needs a foreground: a box, or at least one point labelled 1. A prompt made only
  of background points is an error naming it.
* Ids: the ``id`` attribute when present and not null, else the 1-based row number; a
  group's id is its group value. Ids are not checked for uniqueness.

Coordinates are continuous raster pixel coordinates: ``x`` = column, ``y`` = row, the
top-left corner of the raster at (0, 0), so the centre of pixel (row r, col c) is
(c + 0.5, r + 0.5). Points outside the raster are dropped from their prompt and boxes are
clipped to it; prompts left without a foreground are skipped with one
:class:`PromptOutsideWarning` listing their ids.

:func:`prompt_window` chooses the chip a prompt is decoded on: centred on the prompt, with
``context`` pixels of margin where the raster allows.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from affine import Affine
from pyproj import CRS as ProjCRS

from rs_sam.data.grid import ChipWindow, RasterGrid
from rs_sam.errors import ConfigError, RsSamError

__all__ = [
    "Prompt",
    "PromptError",
    "PromptOutsideWarning",
    "PromptWarning",
    "prompt_window",
    "read_prompts",
]

#: Window sides larger than the chip size are rounded up to a multiple of this.
WINDOW_MULTIPLE = 16
#: Ids listed in a warning before "... N more".
_MAX_LISTED = 10


class PromptError(RsSamError, ValueError):
    """A prompt file cannot be used (unreadable, no CRS, bad labels, no usable prompt...)."""


class PromptWarning(UserWarning):
    """Some prompts of a prompt file are ignored."""


class PromptOutsideWarning(PromptWarning):
    """Prompts lie entirely outside the raster and are skipped."""


@dataclass(frozen=True, eq=False)
class Prompt:
    """One SAM prompt: points and/or a box, in pixel coordinates of a raster or a chip.

    Attributes:
        id: the prompt's id (``id`` attribute, 1-based row number or group value).
        points: ``(N, 2)`` float64 x/y (column, row) continuous pixel coordinates; may be
            ``(0, 2)``.
        labels: ``(N,)`` int64, 1 foreground, 0 background.
        box: ``(4,)`` float64 ``x0, y0, x1, y1`` (left, top, right, bottom), or None.

    The arrays are read-only copies.
    """

    id: int | str
    points: np.ndarray = field(repr=False)
    labels: np.ndarray = field(repr=False)
    box: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        points = np.array(self.points, dtype=np.float64).reshape(-1, 2)
        labels = np.array(self.labels, dtype=np.int64).reshape(-1)
        if labels.shape[0] != points.shape[0]:
            raise ValueError(f"prompt {self.id}: {len(points)} points but {len(labels)} labels")
        box = None if self.box is None else np.array(self.box, dtype=np.float64).reshape(4)
        for array in (points, labels, box):
            if array is not None:
                array.flags.writeable = False
        object.__setattr__(self, "points", points)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "box", box)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """``(x0, y0, x1, y1)`` pixel bounding box of the points and the box together."""
        xy = self.points
        if self.box is not None:
            xy = np.concatenate([xy, self.box.reshape(2, 2)])
        if len(xy) == 0:
            raise PromptError(f"prompt {self.id} has neither points nor a box")
        x0, y0 = xy.min(axis=0)
        x1, y1 = xy.max(axis=0)
        return (float(x0), float(y0), float(x1), float(y1))

    def shifted(self, dx: float, dy: float) -> Prompt:
        """The same prompt with ``(dx, dy)`` added to every x/y coordinate."""
        box = None if self.box is None else self.box + np.array([dx, dy, dx, dy])
        return Prompt(self.id, self.points + np.array([dx, dy]), self.labels, box)


# ------------------------------------------------------------------------------ reading
@dataclass
class _Row:
    """One feature of the file, converted to pixel coordinates."""

    number: int  # 1-based
    id: int | str
    group: Hashable | None
    points: np.ndarray  # (N, 2)
    labels: np.ndarray  # (N,)
    box: np.ndarray | None


def read_prompts(path: str | Path, grid: RasterGrid) -> list[Prompt]:
    """The prompts of a vector file, in pixel coordinates of ``grid``.

    Args:
        path: a vector file GDAL reads (GeoPackage, GeoJSON, shapefile...), first layer.
        grid: the raster's grid; the file is transformed to its CRS.

    Returns:
        The prompts in file order (a group at the position of its first row), without
        those entirely outside the raster.

    Raises:
        PromptError: unreadable or empty file, no CRS, unsupported geometry, bad labels,
            a prompt without foreground, or no prompt on the raster.

    Warns:
        PromptWarning: rows without geometry are ignored.
        PromptOutsideWarning: prompts entirely outside the raster are skipped.
    """
    path = Path(path)
    gdf = _read(path)
    gdf = _to_grid_crs(gdf, path, grid)
    rows = _rows(gdf, path, grid)
    prompts = _assemble(rows, path)
    inside: list[Prompt] = []
    outside: list[Prompt] = []
    for prompt in prompts:
        clipped = _clip(prompt, grid)
        if clipped is None:
            outside.append(prompt)
        else:
            inside.append(clipped)
    if outside:
        warnings.warn(
            PromptOutsideWarning(
                f"{len(outside)} prompt(s) of {path.name} lie outside the raster and are "
                f"skipped: ids {_listing([p.id for p in outside])}"
            ),
            stacklevel=2,
        )
    if not inside:
        raise PromptError(
            f"no prompt of {path} lies on the raster; check that the prompts cover the "
            "raster (and the file's CRS)"
        )
    return inside


def _read(path: Path) -> gpd.GeoDataFrame:
    if not path.exists():
        raise PromptError(f"prompt file {path} does not exist; check the --prompts path")
    try:
        gdf = gpd.read_file(path, engine="pyogrio")
    except Exception as err:  # pyogrio raises several error types
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise PromptError(
            f"cannot read prompt file {path} ({first}); use a vector file such as a "
            "GeoPackage, GeoJSON or shapefile"
        ) from err
    if len(gdf) == 0:
        raise PromptError(f"prompt file {path} has no features; add points or polygons to it")
    return gdf


def _to_grid_crs(gdf: gpd.GeoDataFrame, path: Path, grid: RasterGrid) -> gpd.GeoDataFrame:
    crs_hint = f"EPSG:{grid.crs.to_epsg()}" if grid.crs.to_epsg() else "EPSG:<code>"
    if gdf.crs is None:
        raise PromptError(
            f"prompt file {path} has no CRS; set its CRS, e.g. ogr2ogr -a_srs {crs_hint} "
            f"fixed{path.suffix} {path.name}"
        )
    if gdf.crs.is_geographic:
        minx, miny, maxx, maxy = gdf.total_bounds
        if min(minx, miny) < -180.0 or maxx > 360.0 or max(maxy, -miny) > 90.0:
            raise PromptError(
                f"prompt file {path} says {gdf.crs.name} but its coordinates are not "
                f"longitude/latitude (its CRS is missing or wrong); set the right CRS, e.g. "
                f"ogr2ogr -a_srs {crs_hint} fixed{path.suffix} {path.name}"
            )
    target = ProjCRS.from_user_input(grid.crs.to_wkt())
    if gdf.crs.equals(target, ignore_axis_order=True):
        return gdf
    return gdf.to_crs(target)


def _rows(gdf: gpd.GeoDataFrame, path: Path, grid: RasterGrid) -> list[_Row]:
    n = len(gdf)
    labels = _labels(gdf, path)
    groups = _column(gdf, "group")
    ids = _column(gdf, "id")
    inverse = ~grid.transform
    rows: list[_Row] = []
    no_geometry: list[int] = []
    for i, geom in enumerate(gdf.geometry.array):
        number = i + 1
        row_id = ids[i] if ids is not None and ids[i] is not None else number
        group = groups[i] if groups is not None else None
        if geom is None or geom.is_empty:
            no_geometry.append(number)
            continue
        kind = geom.geom_type
        if kind in ("Point", "MultiPoint"):
            px = _pixels(shapely.get_coordinates(geom), inverse)
            lab = np.full(len(px), labels[i], dtype=np.int64)
            rows.append(_Row(number, row_id, group, px, lab, None))
        elif kind in ("Polygon", "MultiPolygon"):
            if labels[i] != 1:
                raise PromptError(
                    f"row {number} of {path} is a polygon labelled {labels[i]}; polygons are "
                    "box prompts of the object, so give them label 1 (or no label)"
                )
            minx, miny, maxx, maxy = geom.bounds
            box = _pixels(np.array([[minx, maxy], [maxx, miny]]), inverse).reshape(4)
            rows.append(_Row(number, row_id, group, np.empty((0, 2)), np.empty(0), box))
        else:
            raise PromptError(
                f"row {number} of {path} is a {kind}; prompts must be points or polygons "
                "(convert lines to polygons or points first)"
            )
    if no_geometry:
        warnings.warn(
            PromptWarning(
                f"{len(no_geometry)} row(s) of {path.name} have no geometry and are ignored: "
                f"rows {_listing(no_geometry)}"
            ),
            stacklevel=3,
        )
    if len(no_geometry) == n:
        raise PromptError(f"prompt file {path} has no geometries; add points or polygons to it")
    return rows


def _pixels(xy: np.ndarray, inverse: Affine) -> np.ndarray:
    """``(N, 2)`` map x/y -> ``(N, 2)`` float64 pixel x/y through the grid's inverse affine."""
    a, b, c, d, e, f = tuple(inverse)[:6]
    x, y = xy[:, 0], xy[:, 1]
    return np.column_stack([a * x + b * y + c, d * x + e * y + f]).astype(np.float64)


def _labels(gdf: gpd.GeoDataFrame, path: Path) -> np.ndarray:
    """``(n,)`` int64 labels from the ``label`` column; 1 where missing or null."""
    values = _column(gdf, "label")
    if values is None:
        return np.ones(len(gdf), dtype=np.int64)
    out = np.ones(len(values), dtype=np.int64)
    bad: list[str] = []
    for i, value in enumerate(values):
        if value is None:
            continue
        if isinstance(value, str):
            text = value.strip()
            value = int(text) if text in ("0", "1") else text
        if isinstance(value, (bool, int, float)) and value in (0, 1):
            out[i] = int(value)
        elif repr(value) not in bad:
            bad.append(repr(value))
    if bad:
        raise PromptError(
            f"the label column of {path} has values {', '.join(bad[:_MAX_LISTED])}; use 1 "
            "(foreground) or 0 (background)"
        )
    return out


def _column(gdf: gpd.GeoDataFrame, name: str) -> list[Any] | None:
    """The column's values as plain Python scalars (None for nulls), or None if absent."""
    matches = [c for c in gdf.columns if isinstance(c, str) and c.lower() == name]
    if not matches or matches[0] == gdf.geometry.name:
        return None
    return [_scalar(v) for v in gdf[matches[0]].tolist()]


def _scalar(value: Any) -> Any:
    """A plain, hashable Python value; None for nulls, integral floats as int."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, (int, float, str)):
        return value
    return str(value)


def _assemble(rows: list[_Row], path: Path) -> list[Prompt]:
    """One prompt per ungrouped row and one per group, in file order."""
    order: list[tuple[str, Hashable]] = []
    groups: dict[Hashable, list[_Row]] = {}
    for row in rows:
        if row.group is None:
            order.append(("row", row.number))
        elif row.group not in groups:
            groups[row.group] = [row]
            order.append(("group", row.group))
        else:
            groups[row.group].append(row)
    by_number = {row.number: row for row in rows}
    prompts = []
    for kind, key in order:
        if kind == "row":
            row = by_number[key]
            members, prompt_id, name = [row], row.id, f"row {row.number} (id {row.id})"
        else:
            members, prompt_id, name = groups[key], key, f"group {key!r}"
        boxes = [m.box for m in members if m.box is not None]
        if len(boxes) > 1:
            raise PromptError(
                f"{name} of {path} has {len(boxes)} polygons; a prompt takes one box, so give "
                "each polygon its own group (or none)"
            )
        points = np.concatenate([m.points for m in members]).reshape(-1, 2)
        labels = np.concatenate([m.labels for m in members]).astype(np.int64)
        if not boxes and not (labels == 1).any():
            raise PromptError(
                f"{name} of {path} has only background points (label 0); add a foreground "
                "point (label 1) or a polygon to it"
            )
        prompts.append(Prompt(prompt_id, points, labels, boxes[0] if boxes else None))
    return prompts


def _clip(prompt: Prompt, grid: RasterGrid) -> Prompt | None:
    """The prompt without points outside the raster and its box clipped; None if no
    foreground is left."""
    x, y = prompt.points[:, 0], prompt.points[:, 1]
    keep = (x >= 0) & (x < grid.width) & (y >= 0) & (y < grid.height)  # NaN/inf: False
    box = prompt.box
    if box is not None:
        box = np.clip(box, 0.0, [grid.width, grid.height, grid.width, grid.height])
        if not (box[2] > box[0] and box[3] > box[1]):  # also False for NaN
            box = None
    labels = prompt.labels[keep]
    if box is None and not (labels == 1).any():
        return None
    return Prompt(prompt.id, prompt.points[keep], labels, box)


def _listing(values: list[Any]) -> str:
    """``a, b, c`` for up to 10 values, then ``... N more``."""
    text = ", ".join(str(v) for v in values[:_MAX_LISTED])
    if len(values) > _MAX_LISTED:
        text += f" ... {len(values) - _MAX_LISTED} more"
    return text


# ------------------------------------------------------------------------------ windows
def prompt_window(
    prompt: Prompt, grid: RasterGrid, chip_size: int, *, context: int, index: int = 0
) -> ChipWindow:
    """The square chip to decode ``prompt`` on, centred on it.

    The window has side ``chip_size`` when the prompt's bounds plus ``context`` pixels each
    side (cut at the raster's edges: margin beyond the raster is padding, so it is not
    asked for) fit in it; otherwise it has the smallest larger side that is a multiple of
    16. Such a window is read at full resolution and, like every chip, resized to the model
    input by the encoder, so the model sees it at a coarser scale.

    The window is centred on the prompt's bounds, then moved as little as needed to hold
    them with their margins and to stay inside the raster; a raster smaller than the
    window gets it at 0 on that axis (the rest is padding).

    Args:
        prompt: a prompt in pixel coordinates of ``grid``.
        grid: the raster's grid.
        chip_size: side of the usual chip in pixels.
        context: margin in pixels wanted around the prompt's bounds, >= 0.
        index: ``index`` of the returned window.

    Returns:
        The window; it contains the prompt's bounds plus ``context`` where the raster
        allows.

    Raises:
        ConfigError: ``chip_size < 1`` or ``context < 0``.
    """
    if isinstance(chip_size, bool) or not isinstance(chip_size, int) or chip_size < 1:
        raise ConfigError(f"chip_size={chip_size!r} is invalid; use a positive integer (e.g. 1024)")
    if isinstance(context, bool) or not isinstance(context, int) or context < 0:
        raise ConfigError(f"context={context!r} is invalid; use an integer >= 0 (e.g. 64)")
    x0, y0, x1, y1 = prompt.bounds
    spans = []
    for lo, hi, length in ((x0, x1, grid.width), (y0, y1, grid.height)):
        need_lo = math.floor(min(max(lo - context, 0.0), length))
        need_hi = math.ceil(max(min(hi + context, float(length)), need_lo))
        spans.append((lo, hi, need_lo, need_hi, length))
    need = max(hi - lo for _, _, lo, hi, _ in spans)
    size = chip_size if need <= chip_size else -(-need // WINDOW_MULTIPLE) * WINDOW_MULTIPLE
    offsets = []
    for lo, hi, need_lo, need_hi, length in spans:
        offset = round((lo + hi) / 2 - size / 2)
        offset = max(min(offset, need_lo), need_hi - size)  # hold bounds + margins
        offset = max(0, min(offset, length - size))  # inside the raster
        offsets.append(offset)
    return ChipWindow(row_off=offsets[1], col_off=offsets[0], size=size, index=index)
