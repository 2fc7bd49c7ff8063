"""``segment --text`` and ``detect-change --text`` end to end with a tiny random SAM 3."""

from __future__ import annotations

import functools
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
from click.testing import CliRunner

from rs_sam.cli.main import cli
from rs_sam.models import concepts
from tests.helpers.stand_ins import blob_scene
from tests.helpers.synthetic import write_raster

FAST = ["--weights", "random", "--chip-size", "96", "--overlap", "16", "-q"]


@pytest.fixture
def tiny_sam3(monkeypatch: pytest.MonkeyPatch) -> None:
    """The concept model's loader builds the tiny random SAM 3 configuration."""
    load = concepts.load_concept_segmenter

    @functools.wraps(load)
    def tiny(name: str, **kwargs):
        kwargs.update(tiny=True, weights="random", checkpoint=None)
        return load(name, **kwargs)

    monkeypatch.setattr(concepts, "load_concept_segmenter", tiny)


def run(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result.exit_code, result.output


def test_segment_text_runs_end_to_end(tmp_path: Path, tiny_sam3) -> None:
    raster = write_raster(tmp_path / "img.tif", blob_scene())
    out = tmp_path / "found.gpkg"
    code, text = run("segment", raster, "-o", out, "--text", "roof", "--text", "car",
                     "--score-thresh", "0", *FAST)  # fmt: skip
    assert code == 0, text
    found = gpd.read_file(out)
    assert found.columns.tolist() == ["id", "prompt", "score", "area_m2", "geometry"]
    assert len(found) > 0 and set(found.prompt) <= {"roof", "car"}
    assert found.score.between(0, 1).all() and np.isfinite(found.area_m2).all()


def test_detect_change_text_runs_end_to_end(pair_paths, tmp_path: Path, tiny_sam3, tiny_encoder):
    a, b = pair_paths
    out = tmp_path / "named.gpkg"
    code, text = run("detect-change", a, b, "-o", out, "--text", "building",
                     "--points-per-side", "4", "--pred-iou-thresh", "0", "--stability-thresh",
                     "0", "--threshold", "20", *FAST)  # fmt: skip
    assert code == 0, text
    named = gpd.read_file(out)
    assert {"concept_a", "concept_b"} <= set(named.columns)
    assert (named.concept_a.notna() | named.concept_b.notna()).all()


def test_text_with_another_encoder_is_one_line(tmp_path: Path) -> None:
    raster = write_raster(tmp_path / "img.tif", blob_scene())
    code, text = run("segment", raster, "-o", tmp_path / "o.gpkg", "--text", "roof",
                     "--encoder", "sam_vit_b", "-q")  # fmt: skip
    assert code == 2 and "takes no text" in text and text.count("\n") == 1
    code, text = run("segment", raster, "-o", tmp_path / "o.gpkg", "--text", "roof",
                     "--checkpoint", tmp_path / "missing", "-q")  # fmt: skip
    assert code == 2 and text.count("\n") == 1
    assert not (tmp_path / "o.gpkg").exists()
