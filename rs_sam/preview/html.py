"""A preview web page: one self-contained HTML file that opens offline.

Leaflet (vendored in ``leaflet/``, BSD-2-Clause) and the page's own script are inlined;
each panel is warped to Web Mercator and embedded as a base64 PNG image overlay; the
polygons are GeoJSON in WGS84 with their attributes in a popup. Two panels (change) get a
before/after swipe: the later image is clipped at a slider.
"""

from __future__ import annotations

import base64
import io
import json
from importlib import resources
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import rasterio.warp
from rasterio.crs import CRS
from rasterio.enums import Resampling

from rs_sam.data.colours import hex_colour
from rs_sam.preview.view import LABEL_COLOUR, SCORE_COLORMAP, PreviewView

WEB_MERCATOR = CRS.from_epsg(3857)
_LEAFLET = resources.files("rs_sam.preview") / "leaflet"

_STYLE = """
html, body { margin: 0; height: 100%; font: 14px/1.35 sans-serif; }
#frame { position: relative; height: 100%; }
#map { height: 100%; background: #2b2b2b; }
h1 { margin: 0; font-size: 16px; }
.box { background: rgba(255,255,255,.9); padding: 6px 9px; border-radius: 4px; }
.swatch { display: inline-block; width: 14px; height: 14px; margin-right: 6px;
  vertical-align: -2px; border: 1px solid #0006; }
.scale { width: 180px; height: 12px; border: 1px solid #0006; }
#swipe { position: absolute; left: 0; top: 50%; width: 100%; margin: 0; z-index: 1000;
  background: none; pointer-events: none; -webkit-appearance: none; appearance: none; }
#swipe::-webkit-slider-thumb { pointer-events: auto; -webkit-appearance: none; width: 26px;
  height: 26px; border-radius: 50%; background: #fff; border: 2px solid #333; cursor: ew-resize; }
#swipe::-moz-range-thumb { pointer-events: auto; width: 24px; height: 24px;
  border-radius: 50%; background: #fff; border: 2px solid #333; cursor: ew-resize; }
#divider { position: absolute; top: 0; bottom: 0; width: 2px; margin-left: -1px;
  background: #fff; z-index: 999; pointer-events: none; }
.label { position: absolute; top: 10px; z-index: 999; pointer-events: none; }
table.attrs td { padding: 0 6px 0 0; }
"""

_SCRIPT = """
const D = JSON.parse(document.getElementById('data').textContent);
const map = L.map('map', {zoomSnap: 0, zoomAnimation: false, attributionControl: false});
const bounds = L.latLngBounds(D.bounds);
const overlays = D.panels.map(p => L.imageOverlay(p.src, bounds).addTo(map));
map.fitBounds(bounds);
if (D.scale) L.control.scale({imperial: false, maxWidth: 200}).addTo(map);
const entities = {'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;'};
const esc = s => String(s).replace(/[&<>"]/g, c => entities[c]);
const popup = (f, layer) => layer.bindPopup('<table class="attrs">' +
  Object.entries(f.properties).filter(([k]) => k !== '_colour')
    .map(([k, v]) => `<tr><td><b>${esc(k)}</b></td><td>${esc(v)}</td></tr>`).join('') +
  '</table>');
L.geoJSON(D.polygons, {
  style: f => ({color: f.properties._colour, weight: 2, fillOpacity: 0.35}),
  onEachFeature: popup,
}).addTo(map);
if (D.outlines) L.geoJSON(D.outlines, {
  style: () => ({color: D.outline_colour, weight: 2.5, fill: false}), onEachFeature: popup,
}).addTo(map);
function control(position, html) {
  const c = L.control({position});
  c.onAdd = () => { const d = L.DomUtil.create('div', 'box'); d.innerHTML = html; return d; };
  c.addTo(map);
}
control('topleft', `<h1>${esc(D.title)}</h1>`);
control('bottomright', D.legend);
if (overlays.length === 2) {
  const slider = document.getElementById('swipe'), divider = document.getElementById('divider');
  const labelA = document.getElementById('label-a'), labelB = document.getElementById('label-b');
  slider.hidden = divider.hidden = labelA.hidden = labelB.hidden = false;
  const clip = () => {
    const x = slider.value / 1000 * map.getSize().x;
    const img = overlays[1].getElement();
    const left = map.containerPointToLayerPoint([x, 0]).x - L.DomUtil.getPosition(img).x;
    img.style.clipPath = `inset(0 0 0 ${Math.max(0, left)}px)`;
    divider.style.left = x + 'px';
    labelA.style.right = (map.getSize().x - x + 8) + 'px';
    labelB.style.left = (x + 8) + 'px';
  };
  slider.addEventListener('input', clip);
  map.on('move zoom resize viewreset zoomend', clip);
  clip();
}
console.log('rs-sam preview ready');
"""


def write_html(view: PreviewView, path: Path) -> None:
    """Write ``view`` as one offline web page to ``path``."""
    panels, bounds = _overlays(view)
    polygons = view.polygons.assign(_colour=view.legend.colours(view.polygons))
    outlines = None if view.outlines is None else _geojson(view.outlines)
    data = {
        "title": view.title,
        "bounds": bounds,
        "panels": [
            {"title": p.title, "src": src} for p, src in zip(view.panels, panels, strict=True)
        ],
        "polygons": _geojson(polygons),
        "outlines": outlines,
        "outline_colour": LABEL_COLOUR,
        "scale": view.metres_per_pixel > 0,  # not georeferenced: no scale
        "legend": _legend_html(view),
    }
    labels = ["", ""] if len(view.panels) < 2 else [_escape(p.title) for p in view.panels]
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_escape(view.title)}</title>
<style>{_read("leaflet.css")}</style>
<style>{_STYLE}</style>
</head><body>
<div id="frame"><div id="map"></div>
<div id="divider" hidden></div>
<input id="swipe" type="range" min="0" max="1000" value="500" hidden
  aria-label="before/after swipe">
<div id="label-a" class="label box" hidden>&#9664; {labels[0]}</div>
<div id="label-b" class="label box" hidden>{labels[1]} &#9654;</div>
</div>
<script id="data" type="application/json">{_script_safe(json.dumps(data))}</script>
<script>{_read("leaflet.js")}</script>
<script>{_SCRIPT}</script>
</body></html>
"""
    path.write_text(page, encoding="utf-8")


def _geojson(frame: gpd.GeoDataFrame) -> dict[str, Any]:
    """A GeoJSON FeatureCollection in WGS84."""
    frame = frame.to_crs(4326) if len(frame) else frame.set_crs(4326, allow_override=True)
    return json.loads(frame.to_json(na="null", drop_id=True))


def _overlays(view: PreviewView) -> tuple[list[str], list[list[float]]]:
    """Each panel warped to Web Mercator as a PNG data URL, and their [[S, W], [N, E]]."""
    grid = view.grid
    left, top = grid.transform.c, grid.transform.f
    right = left + grid.width * grid.transform.a
    bottom = top + grid.height * grid.transform.e
    transform, width, height = rasterio.warp.calculate_default_transform(
        grid.crs, WEB_MERCATOR, grid.width, grid.height, left, bottom, right, top
    )
    sources = []
    for panel in view.panels:
        rgba = np.dstack([panel.rgb, np.full(panel.rgb.shape[:2], 255, np.uint8)])
        warped = np.zeros((4, height, width), np.uint8)  # outside the raster: transparent
        rasterio.warp.reproject(
            np.moveaxis(rgba, -1, 0), warped, src_transform=grid.transform, src_crs=grid.crs,
            dst_transform=transform, dst_crs=WEB_MERCATOR, resampling=Resampling.nearest,
        )  # fmt: skip
        sources.append(_png_data_url(np.moveaxis(warped, 0, -1)))
    west, north = transform * (0, 0)
    east, south = transform * (width, height)
    (lon_w, lon_e), (lat_s, lat_n) = rasterio.warp.transform(
        WEB_MERCATOR, CRS.from_epsg(4326), [west, east], [south, north]
    )
    return sources, [[lat_s, lon_w], [lat_n, lon_e]]


def _png_data_url(rgba: np.ndarray) -> str:
    from matplotlib.image import imsave

    buffer = io.BytesIO()
    imsave(buffer, rgba, format="png")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _legend_html(view: PreviewView) -> str:
    legend = view.legend
    if legend.is_scale:
        from matplotlib import colormaps

        cmap = colormaps[SCORE_COLORMAP]
        stops = ", ".join(
            hex_colour(tuple(round(c * 255) for c in cmap(v)[:3]))  # type: ignore[arg-type]
            for v in np.linspace(0, 1, 11)
        )
        return (
            f"<b>{_escape(legend.title)}</b><br>"
            f'<div class="scale" style="background: linear-gradient(to right, {stops})"></div>'
            f'<span>{legend.low:.3g}</span><span style="float: right">{legend.high:.3g}</span>'
        )
    rows = "".join(
        f'<div><span class="swatch" style="background: {colour}"></span>{_escape(name)}</div>'
        for name, colour in legend.classes.items()
    )
    rows += "".join(
        f'<div><span class="swatch" style="background: none; border: 2px solid {colour}">'
        f"</span>{_escape(name)}</div>"
        for name, colour in legend.outlines.items()
    )
    return (f"<b>{_escape(legend.title)}</b>" if legend.title else "") + rows


def _read(name: str) -> str:
    return (_LEAFLET / name).read_text(encoding="utf-8")


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _script_safe(text: str) -> str:
    """JSON inside a <script> element: '</' could end the element early."""
    return text.replace("</", "<\\/")
