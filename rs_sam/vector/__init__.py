"""Probability rasters to georeferenced vectors: polygonise, measure, write."""

from __future__ import annotations

from rs_sam.vector.area import areas_m2
from rs_sam.vector.io import SUPPORTED_SUFFIXES, check_output_path, write_vectors
from rs_sam.vector.polygonize import MinArea, polygonize_probability

__all__ = [
    "SUPPORTED_SUFFIXES",
    "MinArea",
    "areas_m2",
    "check_output_path",
    "polygonize_probability",
    "write_vectors",
]
