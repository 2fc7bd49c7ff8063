"""Concept segmentation (``--text``, ``--exemplars``) through the tiling, with a stand-in model.

The stand-in finds every bright blob of a chip (one instance each), for every query, so the
expected objects are known: each bright rectangle exactly once, whatever the chip borders.
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
from affine import Affine
from shapely.geometry import box

from rs_sam.errors import ConfigError
from rs_sam.segmentation.concepts import concept_texts, segment_concepts
from rs_sam.segmentation.prompts import PromptError
from rs_sam.segmentation.settings import SegmentSettings
from tests.helpers.stand_ins import BlobConcepts, blob_scene
from tests.helpers.synthetic import ORIGIN, UTM33, write_raster

TILING = SegmentSettings(encoder="sam3", chip_size=64, overlap=16)


def run(raster: Path, out: Path, **kwargs) -> gpd.GeoDataFrame:
    kwargs.setdefault("segmenter", BlobConcepts())
    segment_concepts(raster, out, settings=TILING, show_progress=False, **kwargs)
    return gpd.read_file(out)


def rectangles(frame: gpd.GeoDataFrame) -> list[tuple[float, ...]]:
    return sorted(tuple(round(v, 6) for v in g.bounds) for g in frame.geometry)


def test_each_instance_once_across_chip_borders(tmp_path: Path) -> None:
    raster = write_raster(tmp_path / "img.tif", blob_scene())
    found = run(raster, tmp_path / "o.gpkg", texts=["building", "solar panel"])
    assert found.columns.tolist() == ["id", "prompt", "score", "area_m2", "geometry"]
    assert found["id"].tolist() == list(range(1, 11))
    for prompt in ("building", "solar panel"):
        objects = found[found.prompt == prompt]
        assert len(objects) == 5  # the five rectangles, several cut by chip borders
        assert all(g.equals(g.envelope) for g in objects.geometry)  # each one whole rectangle
        assert np.allclose(objects.score, 0.9)
    big = box(ORIGIN.c + 20 * 10, ORIGIN.f - 140 * 10, ORIGIN.c + 150 * 10, ORIGIN.f - 90 * 10)
    assert any(g.equals(big) for g in found.geometry)
    assert found.area_m2.max() == pytest.approx(big.area)
    assert gpd.read_file(tmp_path / "o.gpkg").crs == UTM33


def test_objects_do_not_depend_on_the_extent(tmp_path: Path) -> None:
    image = blob_scene()
    whole = run(write_raster(tmp_path / "a.tif", image), tmp_path / "a.gpkg", texts=["x"])
    # the same scene without its first 3 rows and 2 columns: other chip borders, same map
    crop = image[:, 3:, 2:]
    transform = Affine(10.0, 0.0, ORIGIN.c + 20.0, 0.0, -10.0, ORIGIN.f - 30.0)
    cropped = run(write_raster(tmp_path / "b.tif", crop, transform=transform),
                  tmp_path / "b.gpkg", texts=["x"])  # fmt: skip
    assert rectangles(whole) == rectangles(cropped)


def test_score_threshold_and_text_checks(tmp_path: Path) -> None:
    raster = write_raster(tmp_path / "img.tif", blob_scene())
    unsure = run(raster, tmp_path / "o.gpkg", texts=["x"], segmenter=BlobConcepts(score=0.3))
    assert len(unsure) == 0
    kept = run(raster, tmp_path / "p.gpkg", texts=["x"], score_thresh=0.2,
               segmenter=BlobConcepts(score=0.3))  # fmt: skip
    assert len(kept) == 5
    assert concept_texts("building, solar  panel") == ("building", "solar panel")
    assert concept_texts(("a", "b,c")) == ("a", "b", "c")
    with pytest.raises(ConfigError, match="given twice"):
        concept_texts(["roof", "roof"])
    with pytest.raises(ConfigError, match="is empty"):
        concept_texts("roof,,")
    with pytest.raises(ConfigError, match="needs --text or --exemplars"):
        segment_concepts(raster, tmp_path / "q.gpkg", settings=TILING, segmenter=BlobConcepts())
    assert not (tmp_path / "q.gpkg").exists()


def test_exemplar_boxes_in_any_crs_reach_the_chips_that_hold_them(tmp_path: Path) -> None:
    raster = write_raster(tmp_path / "img.tif", blob_scene())
    # one positive example around the small top-left rectangle, one negative elsewhere
    examples = gpd.GeoDataFrame(
        {"label": [1, 0]},
        geometry=[
            box(ORIGIN.c + 40, ORIGIN.f - 160, ORIGIN.c + 210, ORIGIN.f - 40),
            box(ORIGIN.c + 1000, ORIGIN.f - 600, ORIGIN.c + 1100, ORIGIN.f - 500),
        ],
        crs=UTM33,
    ).to_crs(4326)
    examples.to_file(tmp_path / "examples.gpkg")
    segmenter = BlobConcepts()
    found = run(raster, tmp_path / "o.gpkg", exemplars=tmp_path / "examples.gpkg",
                segmenter=segmenter)  # fmt: skip
    assert set(found.prompt) == {"exemplar"}
    assert segmenter.asked and all(q.text is None for q in segmenter.asked)
    assert all(any(q.positive) for q in segmenter.asked)  # only chips holding a positive box
    # the example box, in chip pixels of the first chip (~ columns 4-21, rows 4-16)
    first = segmenter.asked[0]
    assert first.boxes[0] == pytest.approx((4.0, 4.0, 21.0, 16.0), abs=0.05)
    # with a text, every chip is asked, with the example boxes it holds
    both = BlobConcepts()
    run(raster, tmp_path / "t.gpkg", texts=["roof"], exemplars=tmp_path / "examples.gpkg",
        segmenter=both)  # fmt: skip
    assert {q.label for q in both.asked} == {"roof"} and any(not q.boxes for q in both.asked)


def test_bad_exemplar_files_are_one_line(tmp_path: Path) -> None:
    raster = write_raster(tmp_path / "img.tif", blob_scene())
    negative_only = gpd.GeoDataFrame(
        {"label": [0]}, geometry=[box(ORIGIN.c, ORIGIN.f - 100, ORIGIN.c + 100, ORIGIN.f)],
        crs=UTM33,
    )  # fmt: skip
    negative_only.to_file(tmp_path / "neg.gpkg")
    with pytest.raises(PromptError, match="no positive example box"):
        run(raster, tmp_path / "o.gpkg", exemplars=tmp_path / "neg.gpkg")
    (tmp_path / "bad.gpkg").write_text("not a vector file")
    with pytest.raises(PromptError, match="cannot be read"):
        run(raster, tmp_path / "o.gpkg", exemplars=tmp_path / "bad.gpkg")
    assert not (tmp_path / "o.gpkg").exists()


def test_concept_requests_are_checked_before_any_work(tmp_path: Path) -> None:
    from rs_sam import api

    out = tmp_path / "o.gpkg"
    with pytest.raises(ConfigError, match="exclude each other"):
        api.segment("i.tif", out, text="roof", mode="prompt", prompts="p.gpkg")
    with pytest.raises(ConfigError, match="'sam_vit_b' takes no text"):
        api.segment("i.tif", out, text="roof", settings=SegmentSettings(encoder="sam_vit_b"))
    with pytest.raises(ConfigError, match="not to --text"):
        api.segment("i.tif", out, text="roof", hq="add")
    assert not out.exists()


def test_qgis_gives_the_texts_as_one_comma_separated_value() -> None:
    from rs_sam.options import SEGMENT

    arguments = SEGMENT.cli_arguments({"image": "i.tif", "text": "building, solar panel"})
    assert arguments == ["i.tif", "--text", "building", "--text", "solar panel"]
    assert SEGMENT.cli_arguments({"text": ("a", "b")}) == ["--text", "a", "--text", "b"]
