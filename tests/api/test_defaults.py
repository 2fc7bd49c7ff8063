"""One source of options: the API, the CLI and QGIS agree on every default of every command."""

from __future__ import annotations

import inspect
from typing import Any

import click
import pytest

from rs_sam import api
from rs_sam.change.settings import ChangeSettings
from rs_sam.cli.main import cli
from rs_sam.commands import hq_mode
from rs_sam.inference.settings import SharedSettings
from rs_sam.options import COMMANDS, DEFAULT_CHIP_SIZE, Command
from rs_sam.qgis_plugin.specs import ALGORITHMS
from rs_sam.segmentation.settings import SamObjectsSettings, SegmentSettings

SETTINGS: dict[str, type[SharedSettings]] = {
    "detect_change": ChangeSettings,
    "segment": SegmentSettings,
    "sam_objects": SamObjectsSettings,
}
#: API keywords whose name differs from the option's.
API_NAMES = {"boundary": "boundary_out"}


def _click_defaults(command: Command) -> dict[str, Any]:
    click_command = cli.commands[command.cli_name]
    context = click.Context(click_command)
    return {p.name: p.get_default(context, call=True) for p in click_command.params}


def test_every_command_is_checked_here_or_by_its_own_tests() -> None:
    # pseudo-label has no settings class: tests/qgis_plugin mirror its CLI defaults in QGIS
    assert set(COMMANDS) == set(SETTINGS) | {"pseudo_label", "pseudo_label_review"}


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_api_cli_and_qgis_give_the_same_defaults(name: str, monkeypatch) -> None:
    monkeypatch.delenv("RS_SAM_WEIGHTS", raising=False)
    command = COMMANDS[name]
    from_cli = _click_defaults(command)
    qgis = {p.key: p for p in next(s for s in ALGORITHMS if s.name == name).params}
    settings_class = SETTINGS[name]
    defaults = settings_class()
    from_text = settings_class.from_options(from_cli)  # the CLI's defaults, parsed
    signature = inspect.signature(getattr(api, name)).parameters
    assert set(qgis) == {o.name for o in command.options if not o.cli_only}
    assert set(from_cli) - {"verbose", "quiet"} == {o.name for o in command.options}
    assert {"cluster", "workers"} <= set(from_cli) - set(qgis)  # QGIS runs locally
    for option in command.options:
        if option.cli_only:  # a setting (cluster) or an API argument (preview), unset
            value = (
                getattr(defaults, option.name) if option.setting else signature[option.name].default
            )
            assert from_cli[option.name] is None and value is None, option.name
            continue
        if option.positional or option.required:  # inputs and outputs: no default anywhere
            assert qgis[option.name].default is None and not qgis[option.name].optional
            assert (
                option.positional
                or option.name not in signature
                or (signature[option.name].default is inspect.Parameter.empty)
            )
            continue
        if option.multiple:  # repeatable on the CLI (none: an empty tuple), one text in QGIS
            assert from_cli[option.name] == () and qgis[option.name].default is None
            assert signature[option.name].default is None, option.name
            continue
        assert qgis[option.name].default == from_cli[option.name], option.name
        if option.kind == "bool":
            assert from_cli[option.name] is False, option.name
        if option.setting:
            assert getattr(from_text, option.name) == getattr(defaults, option.name), option.name
        elif option.name in ("hq", "hq_only"):
            assert signature["hq"].default is None  # None: the settings' own, off
            assert hq_mode(from_cli["hq"], from_cli["hq_only"]) == defaults.hq == "off"  # type: ignore[attr-defined]
        else:
            keyword = API_NAMES.get(option.name, option.name)
            assert signature[keyword].default == from_cli[option.name], option.name


def test_each_command_keeps_its_own_defaults() -> None:
    change, segment, objects = ChangeSettings(), SegmentSettings(), SamObjectsSettings()
    assert (change.points_per_side, change.pred_iou_thresh) == (16, 0.5)
    assert (segment.points_per_side, segment.pred_iou_thresh, segment.box_nms_thresh) == (
        32, 0.88, 0.7,
    )  # fmt: skip
    assert (objects.pred_iou_thresh, objects.box_nms_thresh) == (0.96, 0.5)
    assert objects.min_area == SamObjectsSettings.from_options({"min_area": "50px"}).min_area
    assert objects.min_area != segment.min_area
    assert change.tiling() == (DEFAULT_CHIP_SIZE, DEFAULT_CHIP_SIZE // 8)
    assert segment.tiling() == objects.tiling() == (DEFAULT_CHIP_SIZE, DEFAULT_CHIP_SIZE // 4)
    assert change.tiling(512) == (512, 64) and segment.tiling(512) == (512, 128)
    assert change.proposals.box_nms_thresh == 0.7 and objects.proposals.box_nms_thresh == 0.5


@pytest.mark.parametrize("settings_class", [ChangeSettings, SegmentSettings, SamObjectsSettings])
def test_the_shared_checks_apply_to_every_command(settings_class) -> None:
    from rs_sam.errors import ConfigError

    for bad, message in [
        ({"weights": "pretrained"}, "weights 'pretrained' is unknown"),
        ({"chip_size": 16}, "too small"),
        ({"chip_size": 64, "overlap": 40}, "overlap"),
        ({"batch_size": 0}, "must be positive"),
        ({"stability_thresh": 1.5}, "stability_thresh 1.5 must be between 0 and 1"),
        ({"skip_covered": 1.5}, r"skip_covered 1.5 must be in \(0, 1\]"),
        ({"decoder_precision": "half"}, "decoder precision 'half' is unknown"),
    ]:
        with pytest.raises(ConfigError, match=message):
            settings_class(**bad)
    with pytest.raises(ConfigError, match=r"unknown setting\(s\) chipsize"):
        settings_class.from_mapping({"chipsize": 512})


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_weights_come_from_the_environment(name: str, monkeypatch) -> None:
    monkeypatch.setenv("RS_SAM_WEIGHTS", "random")
    command = cli.commands[COMMANDS[name].cli_name]
    weights = next(p for p in command.params if p.name == "weights")
    assert isinstance(weights, click.Option) and weights.envvar == "RS_SAM_WEIGHTS"
    assert weights.resolve_envvar_value(click.Context(command)) == "random"
