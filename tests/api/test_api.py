"""``rs_sam.api.segment``'s rules and dispatch, ``rs_sam.sam_objects``'s SSRS defaults, and the
option values the CLI and QGIS hand to :func:`rs_sam.commands.run` (pipelines stubbed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import rs_sam
from rs_sam import api, commands
from rs_sam.errors import ConfigError
from rs_sam.segmentation import anything, prompt_segmentation, sam_objects, semantic
from rs_sam.segmentation.settings import SamObjectsSettings, SegmentSettings
from rs_sam.vector.polygonize import MinArea


@pytest.fixture
def calls(monkeypatch) -> list[tuple[str, tuple, dict[str, Any]]]:
    """Every pipeline call, instead of running it."""
    seen: list[tuple[str, tuple, dict[str, Any]]] = []

    def stub(name: str):
        def record(*args: Any, **kwargs: Any) -> str:
            seen.append((name, args, kwargs))
            return name

        return record

    monkeypatch.setattr(anything, "segment_anything", stub("anything"))
    monkeypatch.setattr(prompt_segmentation, "segment_prompts", stub("prompt"))
    monkeypatch.setattr(semantic, "segment_semantic", stub("semantic"))
    monkeypatch.setattr(sam_objects, "sam_objects", stub("sam_objects"))
    return seen


def test_rs_sam_exports_the_api() -> None:
    assert rs_sam.sam_objects is api.sam_objects and rs_sam.detect_change is api.detect_change
    # the segmentation package is imported (above), and rs_sam.segment is still the API call
    assert rs_sam.segment is api.segment and callable(rs_sam.segment)
    assert rs_sam.SamObjectsSettings is SamObjectsSettings
    assert {"sam_objects", "detect_change", "segment", "SegmentSettings"} <= set(rs_sam.__all__)


def test_segment_dispatches_to_one_pipeline(calls) -> None:
    assert api.segment("i.tif", "o.gpkg") == "anything"
    assert api.segment("i.tif", "o.gpkg", mode="prompt", prompts="p.gpkg", context=32,
                          multimask="all") == "prompt"  # fmt: skip
    assert api.segment("i.tif", "o.gpkg", model="m.ckpt", save_classes="c.tif") == "semantic"
    (_, args, kwargs), (_, p_args, p_kwargs), (_, s_args, s_kwargs) = calls
    assert args == ("i.tif", "o.gpkg") and kwargs["settings"] == SegmentSettings()
    assert p_args == ("i.tif", "p.gpkg", "o.gpkg")
    assert (p_kwargs["context"], p_kwargs["multimask"]) == (32, "all")
    assert s_args == ("i.tif", "m.ckpt", "o.gpkg") and s_kwargs["save_classes"] == "c.tif"


def test_segment_hq_goes_into_the_settings(calls) -> None:
    settings = SegmentSettings(encoder="sam_hq_vit_b", chip_size=128)
    api.segment("i.tif", "o.gpkg", hq="only", settings=settings, overwrite=True)
    used = calls[0][2]["settings"]
    assert used.hq == "only" and used.chip_size == 128 and calls[0][2]["overwrite"] is True
    api.segment("i.tif", "o.gpkg", settings=SegmentSettings(encoder="sam_hq_vit_b", hq="add"))
    assert calls[1][2]["settings"].hq == "add"  # hq=None: the settings' own


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"hq": "add", "model": "m.ckpt"}, "--hq/--hq-only apply to SAM masks, not to --model"),
        ({"hq": "add", "mode": "prompt", "prompts": "p", "multimask": "all"},
         "--hq/--hq-only give one mask per prompt; drop --multimask all"),
        ({"hq": "only", "encoder": "sam_vit_b"}, "--hq-only needs an HQ-SAM encoder"),
        ({"hq": "add"}, "--hq needs an HQ-SAM encoder: --encoder sam_hq_vit_b"),
        ({"save_probability": "p.tif"}, "--save-classes and --save-probability need --model"),
        ({"model": "m.ckpt", "mode": "prompt"}, "--model replaces --mode; drop --mode prompt"),
        ({"mode": "prompt"}, r"--mode prompt needs --prompts FILE \(points or polygons\)"),
        ({"prompts": "p.gpkg"}, "--prompts needs --mode prompt"),
        ({"mode": "boxes"}, "mode 'boxes' is unknown"),
    ],
)  # fmt: skip
def test_segment_rules_are_one_line_config_errors(calls, arguments, message) -> None:
    encoder = arguments.pop("encoder", "mobile_sam")
    settings = SegmentSettings(encoder=encoder)
    with pytest.raises(ConfigError, match=message) as caught:
        api.segment("i.tif", "o.gpkg", settings=settings, **arguments)
    assert caught.value.exit_code == 2 and "\n" not in str(caught.value)
    assert calls == []


def test_sam_objects_uses_the_ssrs_defaults(calls) -> None:
    rs_sam.sam_objects("i.tif", "ids.tif", boundary_out="b.tif")
    (_, args, kwargs) = calls[0]
    assert args == ("i.tif", "ids.tif") and kwargs["boundary_out"] == "b.tif"
    settings = kwargs["settings"]
    assert isinstance(settings, SamObjectsSettings)
    assert (settings.pred_iou_thresh, settings.box_nms_thresh) == (0.96, 0.5)
    assert settings.min_area == MinArea(50.0, "px")


def test_option_values_become_settings_and_arguments(calls) -> None:
    commands.run("segment", {"image": "i.tif", "output": "o.gpkg", "hq": True,
                             "encoder": "sam_hq_vit_b", "min_area": "20m2", "bands": "3,2,1",
                             "checkpoint": "c.pth", "chip_size": 96},
                 show_progress=False)  # fmt: skip
    settings = calls[0][2]["settings"]
    assert (settings.hq, settings.min_area, settings.bands) == ("add", MinArea(20.0, "m2"),
                                                               (3, 2, 1))  # fmt: skip
    assert settings.checkpoint == Path("c.pth") and settings.chip_size == 96
    assert calls[0][2]["show_progress"] is False
    commands.run("sam_objects", {"source": "s.tif", "output": "ids", "boundary": "b"})
    assert calls[1][2]["boundary_out"] == "b" and calls[1][2]["settings"] == SamObjectsSettings()


def test_bad_option_values_are_one_line_errors(calls) -> None:
    with pytest.raises(ConfigError, match="--hq and --hq-only exclude each other; give one"):
        commands.run("segment", {"image": "i", "output": "o", "hq": True, "hq_only": True})
    with pytest.raises(ConfigError, match="segment has no option"):
        commands.run("segment", {"image": "i", "output": "o", "threshold": 3.0})
    with pytest.raises(ConfigError, match="command 'train' is unknown"):
        commands.run("train", {})
    assert calls == []
