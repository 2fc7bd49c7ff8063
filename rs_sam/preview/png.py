"""A preview picture: the panels side by side, polygons over them, title, legend, scale bar.

Drawn with matplotlib's object API on the Agg canvas (no pyplot, no display, no global
state). Panel pixels map to picture pixels by one scale factor, returned in
:class:`PngLayout` so that callers (and tests) can find a polygon in the picture.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.collections import PathCollection
from matplotlib.colors import Normalize, to_rgba
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.path import Path as MplPath

from rs_sam.preview.view import (
    LABEL_COLOUR,
    MAX_SIDE,
    SCORE_COLORMAP,
    PreviewView,
    length_label,
    round_length,
)

DPI = 100
PAD = 16  # picture pixels around and between panels
TITLE_BAND = 56  # above the panels: the title, then each panel's own title
LEGEND_BAND = 84  # below the panels
MIN_PANEL_SIDE = 480  # small rasters are enlarged so that the text fits
MIN_WIDTH = 640  # narrower pictures get white margins (room for the title and legend)
FILL_ALPHA = 0.35
MAX_LEGEND_ENTRIES = 24


@dataclass(frozen=True)
class PngLayout:
    """Where the panels lie in the picture.

    Attributes:
        size: (width, height) of the picture in pixels.
        panels: each panel's top-left corner (x, y) in picture pixels.
        scale: picture pixels per panel pixel.
    """

    size: tuple[int, int]
    panels: tuple[tuple[float, float], ...]
    scale: float

    def to_picture(self, panel: int, column: float, row: float) -> tuple[int, int]:
        """Picture pixel (x, y) of a panel pixel position (column, row)."""
        x0, y0 = self.panels[panel]
        return int(x0 + column * self.scale), int(y0 + row * self.scale)


def layout_for(view: PreviewView, max_side: int = MAX_SIDE) -> PngLayout:
    """The picture's size and the panels' places (long side at most ``max_side``)."""
    n = len(view.panels)
    height, width = view.panels[0].rgb.shape[:2]
    fit_w = (max_side - (n + 1) * PAD) / (n * width)
    fit_h = (max_side - TITLE_BAND - LEGEND_BAND - PAD) / height
    enlarge = max(1.0, MIN_PANEL_SIDE / max(width, height))
    scale = min(fit_w, fit_h, enlarge)
    panel_w, panel_h = width * scale, height * scale
    content = n * panel_w + (n + 1) * PAD
    size = (round(max(content, MIN_WIDTH)), round(panel_h + TITLE_BAND + LEGEND_BAND + PAD))
    left = (size[0] - content) / 2 + PAD
    corners = tuple((left + i * (panel_w + PAD), float(TITLE_BAND)) for i in range(n))
    return PngLayout(size, corners, scale)


def write_png(view: PreviewView, path: Path, max_side: int = MAX_SIDE) -> PngLayout:
    """Draw ``view`` into the PNG file ``path``; returns where the panels lie."""

    layout = layout_for(view, max_side)
    width, height = layout.size
    figure = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, facecolor="white")
    FigureCanvasAgg(figure)
    # Bold text is about 0.68 em a character: the title shrinks to fit the width.
    fontsize = min(15.0, (width - 2 * PAD) / (0.68 * max(1, len(view.title))) * 72 / DPI)
    figure.text(0.5, 1 - 8 / height, view.title, ha="center", va="top", fontsize=fontsize,
                fontweight="bold")  # fmt: skip
    pixels = view.pixel_polygons()
    colours = view.legend.colours(view.polygons)
    outlines = None if view.outlines is None else view.pixel_polygons(view.outlines)
    rows, columns = view.panels[0].rgb.shape[:2]
    for i, panel in enumerate(view.panels):
        x0, y0 = layout.panels[i]
        box = [x0 / width, 1 - (y0 + rows * layout.scale) / height,
               columns * layout.scale / width, rows * layout.scale / height]  # fmt: skip
        axes = figure.add_axes(box)
        axes.imshow(panel.rgb, extent=(0, columns, rows, 0), interpolation="nearest")
        axes.set_xlim(0, columns)
        axes.set_ylim(rows, 0)
        axes.set_axis_off()
        axes.set_title(panel.title, fontsize=11, pad=4)
        _draw_polygons(axes, pixels, colours)
        if outlines is not None:
            _draw_outlines(axes, outlines, LABEL_COLOUR)
        _draw_scale_bar(axes, columns, rows, view.metres_per_pixel)
    _draw_legend(figure, view, width, height)
    figure.savefig(path, format="png", dpi=DPI)
    return layout


def _draw_polygons(axes: Axes, pixels: gpd.GeoSeries, colours: list[str]) -> None:
    """Filled (translucent) polygons with opaque outlines; holes stay holes."""

    paths, faces, edges = [], [], []
    for geometry, colour in zip(pixels, colours, strict=True):
        if geometry is None or geometry.is_empty:
            continue
        paths.append(_path(geometry))
        faces.append(to_rgba(colour, FILL_ALPHA))
        edges.append(to_rgba(colour, 1.0))
    if paths:
        collection = PathCollection(paths, facecolors=faces, edgecolors=edges, linewidths=1.5)
        axes.add_collection(collection)


def _draw_outlines(axes: Axes, pixels: gpd.GeoSeries, colour: str) -> None:
    """Unfilled polygons (labels over predictions), a little wider than the fills' edges."""
    paths = [_path(g) for g in pixels if g is not None and not g.is_empty]
    if paths:
        axes.add_collection(
            PathCollection(paths, facecolors="none", edgecolors=colour, linewidths=2.0)
        )


def _path(geometry: shapely.Geometry) -> MplPath:
    """A matplotlib Path of a (multi)polygon: every ring closed, holes included."""

    vertices, codes = [], []
    for ring in shapely.get_rings(shapely.get_parts(geometry)):
        xy = shapely.get_coordinates(ring)
        if len(xy) < 3:
            continue
        ring_codes = np.full(len(xy), MplPath.LINETO, dtype=np.uint8)
        ring_codes[0], ring_codes[-1] = MplPath.MOVETO, MplPath.CLOSEPOLY
        vertices.append(xy)
        codes.append(ring_codes)
    if not vertices:
        return MplPath(np.zeros((0, 2)))
    return MplPath(np.concatenate(vertices), np.concatenate(codes))


def _draw_scale_bar(axes: Axes, columns: int, rows: int, metres_per_pixel: float) -> None:
    """A bar about a quarter of the panel long, bottom left, with its length written above."""
    metres = round_length(columns / 4 * metres_per_pixel)
    if metres <= 0:
        return
    length = metres / metres_per_pixel
    x, y = columns * 0.04, rows * 0.95
    for colour, width in (("black", 6), ("white", 3)):
        axes.plot([x, x + length], [y, y], color=colour, linewidth=width,
                  solid_capstyle="butt")  # fmt: skip
    label = {"facecolor": "black", "alpha": 0.5, "pad": 1.5, "edgecolor": "none"}
    axes.text(
        x + length / 2, y - rows * 0.015, length_label(metres), ha="center", va="bottom",
        fontsize=10, color="white", fontweight="bold", bbox=label,
    )  # fmt: skip


def _draw_legend(figure: Figure, view: PreviewView, width: int, height: int) -> None:
    """Classes as swatches, or the score scale as a colour bar, under the panels."""

    legend = view.legend
    if legend.is_scale:
        bar = figure.add_axes([0.25, 16 / height + 0.5 * 28 / height, 0.5, 14 / height])
        mappable = ScalarMappable(Normalize(legend.low, legend.high), colormaps[SCORE_COLORMAP])
        figure.colorbar(mappable, cax=bar, orientation="horizontal")
        bar.set_title(f"polygon colour: {legend.title}", fontsize=10, pad=3)
        return
    names = list(legend.classes)
    shown = names[:MAX_LEGEND_ENTRIES]
    handles = [
        Patch(facecolor=legend.classes[n], edgecolor=legend.classes[n], label=n) for n in shown
    ]
    if len(names) > len(shown):
        handles.append(
            Patch(facecolor="white", edgecolor="white", label=f"+{len(names) - len(shown)} more")
        )
    handles += [
        Patch(facecolor="none", edgecolor=colour, linewidth=2, label=name)
        for name, colour in legend.outlines.items()
    ]
    figure.legend(
        handles=handles, loc="lower center", ncol=min(len(handles), 6), fontsize=10,
        title=legend.title or None, frameon=False, bbox_to_anchor=(0.5, 4 / height),
    )  # fmt: skip
