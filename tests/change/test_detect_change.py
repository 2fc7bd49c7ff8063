"""``rs_sam.detect_change`` through the real pipeline with a transparent model.

The encoder's embedding is the local mean colour and the proposer returns a fixed grid of
square masks, so the expected result is known: polygons where the change was painted, in
the right place on a's grid, and nothing elsewhere.
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import pytest
from shapely.geometry import box

from rs_sam.change import ChangeSettings, detect
from tests.conftest import CHANGE_COLS, CHANGE_ROWS
from tests.helpers.stand_ins import use_transparent_model
from tests.helpers.synthetic import ORIGIN


@pytest.fixture
def transparent_model(monkeypatch: pytest.MonkeyPatch) -> None:
    use_transparent_model(monkeypatch.setattr)


def test_polygons_sit_on_the_painted_change(
    pair_paths: tuple[Path, Path], tmp_path: Path, transparent_model
) -> None:
    a, b = pair_paths
    settings = ChangeSettings(weights="random", chip_size=96, overlap=16, threshold=30.0)
    result = detect.detect_change(a, b, tmp_path / "c.gpkg", settings=settings, show_progress=False)
    polygons = gpd.read_file(result.output)
    assert result.chips == 9 and len(polygons) >= 1
    painted = box(
        ORIGIN.c + CHANGE_COLS.start * ORIGIN.a,
        ORIGIN.f + CHANGE_ROWS.stop * ORIGIN.e,
        ORIGIN.c + CHANGE_COLS.stop * ORIGIN.a,
        ORIGIN.f + CHANGE_ROWS.start * ORIGIN.e,
    )
    detected = polygons.union_all()
    # Masks are 12 px blocks: the detection covers the painted core and stays within
    # one block (120 m) of it.
    assert detected.contains(painted.buffer(-130))
    assert painted.buffer(130).contains(detected)
    assert polygons.area_m2.sum() == pytest.approx(detected.area, rel=1e-6)
    assert (polygons.score_max >= 30 / 180).all()


def test_no_change_gives_no_polygons(pair_paths, tmp_path: Path, transparent_model) -> None:
    a, _ = pair_paths
    settings = ChangeSettings(weights="random", chip_size=96, overlap=16, threshold=30.0)
    result = detect.detect_change(a, a, tmp_path / "c.gpkg", settings=settings, show_progress=False)
    assert result.polygons == 0
    empty = gpd.read_file(result.output)
    assert len(empty) == 0 and empty.crs is not None


def test_unknown_setting_is_rejected() -> None:
    from rs_sam.errors import ConfigError

    with pytest.raises(ConfigError, match=r"unknown setting.*chipsize.*valid:.*chip_size"):
        ChangeSettings.from_mapping({"chipsize": 512})
