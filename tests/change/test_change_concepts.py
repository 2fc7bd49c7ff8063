"""``detect-change --text``: only changes whose object on either date is a named concept."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest

from rs_sam.change import ChangeSettings
from rs_sam.models import concepts
from tests.conftest import CHANGE_COLS, CHANGE_ROWS
from tests.helpers.stand_ins import BlobConcepts, use_transparent_model
from tests.helpers.synthetic import paint_change, texture, write_raster


@pytest.fixture
def stand_ins(monkeypatch: pytest.MonkeyPatch) -> list[BlobConcepts]:
    """Transparent change model; every bright blob (> 200) is a 'building'. Returns the
    concept models built."""
    use_transparent_model(monkeypatch.setattr)
    built: list[BlobConcepts] = []

    def load(*args, **kwargs) -> BlobConcepts:
        built.append(BlobConcepts())
        return built[-1]

    monkeypatch.setattr(concepts, "load_concept_segmenter", load)
    return built


def test_changes_are_named_and_unnamed_ones_dropped(tmp_path: Path, stand_ins) -> None:
    from rs_sam import api

    image = (texture(180, 220, seed=1) * 150 + 20).astype(np.uint8)  # nothing above 200
    dark = paint_change(image, slice(10, 40), slice(10, 40), 0)  # a change, but no building
    later = paint_change(dark, CHANGE_ROWS, CHANGE_COLS, 250)  # a new bright 'building'
    a = write_raster(tmp_path / "a.tif", image)
    b = write_raster(tmp_path / "b.tif", later)
    settings = ChangeSettings(weights="random", chip_size=96, overlap=16, threshold=30.0)
    plain = api.detect_change(a, b, tmp_path / "all.gpkg", settings=settings, show_progress=False)
    named = api.detect_change(
        a, b, tmp_path / "named.gpkg", settings=settings, text="building", show_progress=False
    )
    everything = gpd.read_file(plain.output)
    kept = gpd.read_file(named.output)
    assert len(everything) > len(kept) >= 1  # the dark patch's change is dropped
    assert kept["id"].tolist() == list(range(1, len(kept) + 1))
    assert (kept.concept_b == "building").all() and kept.concept_a.isna().all()
    centre = kept.geometry.union_all().centroid
    assert centre.x == pytest.approx(500_000 + 110 * 10, abs=60)  # painted columns 80-140
    assert centre.y == pytest.approx(5_000_000 - 85 * 10, abs=60)  # painted rows 60-110
    assert named.polygons == len(kept)
    assert len(stand_ins) == 1  # one concept model for both dates
