"""What a preview shows: decimated RGB panels, the polygons on their pixels, a legend.

The panels come from the same decimated reads the joint stretch is fitted on
(:meth:`~rs_sam.data.pair.BitemporalPair.read_overview`), so a preview of a huge raster
reads at most ``max_side`` pixels a side per date: memory does not grow with the raster.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyproj
import shapely
from affine import Affine
from pyproj import CRS

from rs_sam.data.bands import select_bands
from rs_sam.data.colours import default_palette, hex_colour
from rs_sam.data.grid import RasterGrid, overview_steps
from rs_sam.data.normalize import JointStretch
from rs_sam.data.pair import BitemporalPair
from rs_sam.data.rasters import DateInput, open_date
from rs_sam.data.scene import Scene

#: Longest side of a preview picture in pixels (panels side by side included).
MAX_SIDE = 2048
#: Colour of the polygons when they have neither classes nor scores.
PLAIN_COLOUR = "#FF1493"
#: Attributes that name a polygon's class (a categorical legend), in order of preference.
CLASS_COLUMNS = ("class_name", "prompt")
#: Attributes that score a polygon (a colour scale), in order of preference.
SCORE_COLUMNS = ("score_mean", "score")
#: The colour scale of scores (a matplotlib colormap name).
SCORE_COLORMAP = "plasma"
#: Colour of outline-only polygons (an evaluation's labels over its predictions).
LABEL_COLOUR = "#00FFFF"


@dataclass(frozen=True)
class Panel:
    """One image of a preview: a title and (H, W, 3) uint8 RGB, north up."""

    title: str
    rgb: np.ndarray


@dataclass(frozen=True)
class Legend:
    """How polygons are coloured: by class (``classes``), by score (``column``), or plainly."""

    title: str
    classes: dict[str, str]  # class -> '#RRGGBB' (categorical, or one entry when plain)
    column: str | None = None  # the class or score attribute; None: one colour for all
    low: float = 0.0  # the score scale's range
    high: float = 1.0
    outlines: dict[str, str] = field(default_factory=dict)  # outline-only entries: name -> colour

    @property
    def is_scale(self) -> bool:
        return self.column is not None and not self.classes

    def colours(self, polygons: gpd.GeoDataFrame) -> list[str]:
        """Each polygon's colour, '#RRGGBB'."""
        if self.column is None:
            return [next(iter(self.classes.values()))] * len(polygons)
        if not self.is_scale:
            return [self.classes[str(v)] for v in polygons[self.column]]
        from matplotlib import colormaps

        cmap = colormaps[SCORE_COLORMAP]
        span = self.high - self.low
        values = (polygons[self.column].to_numpy(dtype=float) - self.low) / span
        return [hex_colour(tuple(round(c * 255) for c in cmap(v)[:3])) for v in values]  # type: ignore[arg-type]


@dataclass(frozen=True)
class PreviewView:
    """Everything a preview draws.

    Attributes:
        title: the picture's or page's title.
        panels: one image (segment) or the two dates side by side (change).
        grid: the panels' pixel grid (decimated; the same for every panel).
        polygons: the output polygons in the grid's CRS.
        legend: how the polygons are coloured.
        metres_per_pixel: ground size of one panel pixel (for the scale bar); 0: none, the
            panels are not georeferenced.
        outlines: polygons drawn as outlines only, in :data:`LABEL_COLOUR`, over the others.
    """

    title: str
    panels: tuple[Panel, ...]
    grid: RasterGrid
    polygons: gpd.GeoDataFrame
    legend: Legend
    metres_per_pixel: float
    outlines: gpd.GeoDataFrame | None = None

    def pixel_polygons(self, frame: gpd.GeoDataFrame | None = None) -> gpd.GeoSeries:
        """The polygons (or ``frame``) in panel pixel coordinates (column, row), simplified
        to half a pixel."""
        frame = self.polygons if frame is None else frame
        inverse = ~self.grid.transform
        moved = shapely.transform(
            frame.geometry.to_numpy(),
            lambda xy: np.column_stack(inverse * (xy[:, 0], xy[:, 1])),
        )
        return gpd.GeoSeries(shapely.simplify(moved, 0.5), index=frame.index)


def change_view(
    a: DateInput,
    b: DateInput,
    polygons: gpd.GeoDataFrame,
    *,
    bands: tuple[int, ...] | None,
    nodata: float | None,
    workdir: Path,
    title: str,
    max_side: int = MAX_SIDE,
) -> PreviewView:
    """Both dates side by side on a's grid, each at most ``max_side / 2`` pixels wide."""
    info_a, info_b = open_date(a, workdir=workdir), open_date(b, workdir=workdir)
    pair = BitemporalPair(
        info_a, info_b, bands=select_bands([info_a, info_b], bands), nodata=nodata
    )
    stretch = JointStretch.fit(pair)
    side = panel_side(pair.grid, panels=2, max_side=max_side)
    image_a, image_b, valid = pair.read_overview(side)
    grid = decimated_grid(pair.grid, side, image_a.shape[1:])
    panels = (
        Panel(f"A: {Path(str(info_a.label)).name}", _rgb(stretch, image_a, valid)),
        Panel(f"B: {Path(str(info_b.label)).name}", _rgb(stretch, image_b, valid)),
    )
    return _view(title, panels, grid, polygons, default_label="change")


def scene_view(
    image: DateInput,
    polygons: gpd.GeoDataFrame,
    *,
    bands: tuple[int, ...] | None,
    nodata: float | None,
    workdir: Path,
    title: str,
    max_side: int = MAX_SIDE,
) -> PreviewView:
    """One raster, at most ``max_side`` pixels a side."""
    info = open_date(image, workdir=workdir)
    scene = Scene(info, bands=select_bands([info], bands), nodata=nodata)
    stretch = JointStretch.fit_scene(scene)
    side = panel_side(scene.grid, panels=1, max_side=max_side)
    raw, valid = scene.read_overview(side)
    grid = decimated_grid(scene.grid, side, raw.shape[1:])
    panels = (Panel(Path(str(info.label)).name, _rgb(stretch, raw, valid)),)
    return _view(title, panels, grid, polygons, default_label="object")


def legend_for(polygons: gpd.GeoDataFrame, default_label: str) -> Legend:
    """Classes if the polygons have a class attribute, else a score scale, else one colour."""
    for column in CLASS_COLUMNS:
        if column in polygons.columns:
            names = sorted({str(v) for v in polygons[column]})
            palette = default_palette(len(names))
            return Legend(
                column, {n: hex_colour(c) for n, c in zip(names, palette, strict=True)}, column
            )
    for column in SCORE_COLUMNS:
        if column in polygons.columns and len(polygons):
            values = polygons[column].to_numpy(dtype=float)
            low, high = float(np.nanmin(values)), float(np.nanmax(values))
            if not high > low:  # one value (or one polygon): a scale around it
                low, high = low - 0.05, high + 0.05
            return Legend(column, {}, column, low, high)
    return Legend("", {f"{default_label} ({len(polygons)})": PLAIN_COLOUR})


def ground_metres_per_pixel(grid: RasterGrid) -> float:
    """Ground distance of one pixel's width at the grid's centre, in metres."""
    crs = CRS.from_user_input(grid.crs)
    t = grid.transform
    x, y = t * (grid.width / 2, grid.height / 2)
    if crs.is_geographic:
        lon, lat = _to_lonlat(crs, x, y)
        lon1, lat1 = _to_lonlat(crs, x + t.a, y)
        return float(pyproj.Geod(ellps="WGS84").inv(lon, lat, lon1, lat1)[2])
    factor = crs.axis_info[0].unit_conversion_factor if crs.axis_info else 1.0
    return abs(t.a) * factor


def _to_lonlat(crs: CRS, x: float, y: float) -> tuple[float, float]:
    to_lonlat = pyproj.Transformer.from_crs(crs, crs.geodetic_crs, always_xy=True)
    lon, lat = to_lonlat.transform(x, y)
    return float(lon), float(lat)


def _view(
    title: str,
    panels: tuple[Panel, ...],
    grid: RasterGrid,
    polygons: gpd.GeoDataFrame,
    default_label: str,
) -> PreviewView:
    if polygons.crs is not None and not CRS.from_user_input(polygons.crs).equals(grid.crs):
        polygons = polygons.to_crs(grid.crs)
    return PreviewView(
        title,
        panels,
        grid,
        polygons,
        legend_for(polygons, default_label),
        ground_metres_per_pixel(grid),
    )


def panel_side(grid: RasterGrid, *, panels: int, max_side: int) -> int:
    """The decimated read's longest side so that ``panels`` side by side fit ``max_side``."""
    wide = grid.width * panels >= grid.height
    return max(1, max_side // panels) if wide else max_side


def decimated_grid(grid: RasterGrid, side: int, shape: tuple[int, int]) -> RasterGrid:
    """The grid of a decimated read (as in ``read_overview``) of shape (rows, columns)."""
    step_x, step_y = overview_steps(grid, side)
    transform = grid.transform * Affine.scale(step_x, step_y)
    return RasterGrid(grid.crs, transform, width=shape[1], height=shape[0])


def _rgb(stretch: JointStretch, raw: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(C, H, W) raw values -> (H, W, 3) uint8, nodata black."""
    rgb = np.moveaxis(stretch.apply(raw), 0, -1)
    rgb[~valid] = 0
    return np.round(rgb).astype(np.uint8)


def round_length(metres: float) -> float:
    """The largest 1, 2 or 5 x 10^n not above ``metres`` (a scale bar's length)."""
    if not metres > 0 or not math.isfinite(metres):
        return 0.0
    power = 10 ** math.floor(math.log10(metres))
    return max(m * power for m in (1, 2, 5) if m * power <= metres)


def length_label(metres: float) -> str:
    return f"{metres / 1000:g} km" if metres >= 1000 else f"{metres:g} m"
