"""``detect-change --text``: keep the changes whose object on either date is a named concept.

Both dates are segmented into concept instances (SAM 3, tiled like every run); a change
polygon keeps ``concept_a`` / ``concept_b``, the concept whose instance on that date covers
most of it (empty when none does), and is dropped when neither date has one. "New
buildings since 2009" is then ``concept_b == "building"`` and ``concept_a`` empty.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import geopandas as gpd
import numpy as np

from rs_sam.change.settings import ChangeSettings
from rs_sam.data.rasters import DateInput
from rs_sam.inference.cluster import session
from rs_sam.inference.jobs import ChipJobCache
from rs_sam.models.concepts.registry import DEFAULT_CONCEPT_MODEL
from rs_sam.segmentation.concepts import segment_concepts
from rs_sam.segmentation.settings import SegmentSettings

#: The concept model of ``--text`` (the change run's encoder stays what it is).
CONCEPT_ENCODER = DEFAULT_CONCEPT_MODEL


def concept_settings(settings: ChangeSettings) -> SegmentSettings:
    """The concept runs' settings: SAM 3 with the change run's data, device and engine."""
    kept = ("weights", "device", "chip_size", "overlap", "bands", "nodata", "cluster", "workers")
    return SegmentSettings(encoder=CONCEPT_ENCODER, **{k: getattr(settings, k) for k in kept})


def name_changes(
    polygons: gpd.GeoDataFrame,
    a: DateInput,
    b: DateInput,
    texts: Sequence[str],
    settings: ChangeSettings,
    workdir: Path,
    *,
    show_progress: bool = True,
) -> gpd.GeoDataFrame:
    """``polygons`` with ``concept_a``/``concept_b``, only those matching a concept."""
    named = polygons.copy()
    segment = concept_settings(settings)
    cache = ChipJobCache()  # one SAM 3 (and one cluster) for both dates
    with session(segment.engine):
        for date, image in (("a", a), ("b", b)):
            path = workdir / f"concepts_{date}.gpkg"
            segment_concepts(image, path, texts=texts, settings=segment, cache=cache,
                             show_progress=show_progress)  # fmt: skip
            named[f"concept_{date}"] = _dominant(named, gpd.read_file(path).to_crs(named.crs))
    keep = named["concept_a"].notna() | named["concept_b"].notna()
    named = named[keep].reset_index(drop=True)
    if "id" in named.columns:
        named["id"] = np.arange(1, len(named) + 1, dtype=np.int64)
    return named


def _dominant(polygons: gpd.GeoDataFrame, instances: gpd.GeoDataFrame) -> list[str | None]:
    """Per polygon, the prompt of the instance covering most of it, or None."""
    result: list[str | None] = [None] * len(polygons)
    if polygons.empty or instances.empty:
        return result
    left, right = instances.sindex.query(polygons.geometry, predicate="intersects")
    best = np.zeros(len(polygons))
    for i, j in zip(left, right, strict=True):
        shared = polygons.geometry.iloc[i].intersection(instances.geometry.iloc[j]).area
        if shared > best[i]:
            best[i], result[i] = shared, str(instances["prompt"].iloc[j])
    return result
