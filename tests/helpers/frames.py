"""Comparing two runs' vector outputs exactly (every attribute, every vertex)."""

from __future__ import annotations

import geopandas as gpd


def assert_same_frames(first: gpd.GeoDataFrame, second: gpd.GeoDataFrame) -> None:
    """The same rows, attributes and geometries; at least two rows (not vacuous)."""
    assert len(first) >= 2  # the comparison is not vacuous
    assert first.columns.tolist() == second.columns.tolist()
    assert first.drop(columns="geometry").equals(second.drop(columns="geometry"))
    assert first.geometry.geom_equals_exact(second.geometry, 0).all()
