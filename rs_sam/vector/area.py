"""Polygon areas in square metres, whatever the CRS.

Geographic CRS: geodesic area on the CRS's own ellipsoid (:class:`pyproj.Geod`), so polygons
in EPSG:4326 get real square metres, not square degrees. Projected CRS: planar area times
the square of the linear unit's size in metres (feet, US survey feet...).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import shapely
from pyproj import CRS as ProjCRS
from pyproj import Geod
from shapely.geometry.base import BaseGeometry

from rs_sam.errors import InputRasterError

if TYPE_CHECKING:
    from geopandas import GeoSeries


def _horizontal_crs(crs: Any) -> ProjCRS:
    """The 2D (horizontal) pyproj CRS of a rasterio/pyproj CRS, EPSG code or WKT."""
    if crs is None:
        raise InputRasterError("no CRS given; areas in m2 need one: give the raster a CRS")
    try:
        pcrs = ProjCRS.from_user_input(crs)
    except Exception as exc:  # pyproj raises CRSError, rasterio objects may fail otherwise
        raise InputRasterError(
            f"CRS {crs!r} is not understood by PROJ ({exc}); use an EPSG code or WKT"
        ) from exc
    if pcrs.is_bound and pcrs.source_crs is not None:
        pcrs = pcrs.source_crs
    if pcrs.is_compound:
        pcrs = pcrs.sub_crs_list[0]
    return pcrs


def areas_m2(geometries: GeoSeries | Sequence[BaseGeometry], crs: Any) -> np.ndarray:
    """Area of each geometry in square metres.

    Args:
        geometries: a GeoSeries or a sequence of shapely geometries, coordinates in ``crs``
            (x = easting/longitude, y = northing/latitude, as GDAL orders them).
        crs: anything :meth:`pyproj.CRS.from_user_input` accepts (rasterio CRS, EPSG code...).

    Returns:
        float64 array of shape ``(N,)``; 0 for empty or non-areal geometries.

    Raises:
        InputRasterError: the CRS is missing, unknown, or neither geographic nor projected.
    """
    geoms = np.asarray(list(geometries), dtype=object)
    pcrs = _horizontal_crs(crs)
    if pcrs.is_geographic:
        geod = pcrs.get_geod()
        if geod is None:
            raise InputRasterError(f"CRS '{pcrs.name}' has no ellipsoid; use a CRS with a datum")
        # Angular unit to degrees (a no-op for degrees; grads and radians exist).
        to_deg = pcrs.axis_info[0].unit_conversion_factor / (math.pi / 180.0)
        return np.array([_geodesic_area(g, geod, to_deg) for g in geoms], dtype=np.float64)
    if pcrs.is_projected:
        factor = pcrs.axis_info[0].unit_conversion_factor  # metres per CRS unit
        return shapely.area(geoms).astype(np.float64) * factor * factor
    raise InputRasterError(
        f"CRS '{pcrs.name}' is neither geographic nor projected; reproject the raster "
        "to a projected CRS (e.g. its UTM zone)"
    )


def _geodesic_area(geom: BaseGeometry | None, geod: Geod, to_deg: float) -> float:
    if geom is None or geom.is_empty:
        return 0.0
    if to_deg != 1.0:
        geom = shapely.transform(geom, lambda xy: xy * to_deg)
    # Exterior counter-clockwise, holes clockwise: pyproj adds signed ring areas.
    geom = shapely.orient_polygons(geom, exterior_cw=False)
    area, _ = geod.geometry_area_perimeter(geom)
    return abs(float(area))
