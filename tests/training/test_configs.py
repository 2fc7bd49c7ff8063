"""Every shipped config builds its task and data module (keys valid, values typed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rs_sam.training.change_data import ChangeDataModule
from rs_sam.training.change_task import ChangeTask
from rs_sam.training.config import check_arguments, load_config, trainer_arguments
from rs_sam.training.segment_data import SegmentDataModule
from rs_sam.training.segment_task import SegmentTask

ROOT = Path(__file__).parents[2] / "configs"
CONFIGS = sorted((ROOT / "change").glob("*.yaml"))
SEGMENT_CONFIGS = sorted((ROOT / "segment").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_keys_are_constructor_arguments(path: Path, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RS_SAM_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("LEVIR_CD", str(tmp_path))
    values = load_config(path)
    check_arguments(ChangeTask, values["model"], "model")
    check_arguments(ChangeDataModule, values["data"], "data")
    trainer_arguments(values["trainer"])
    ChangeDataModule(**values["data"])  # sources and layouts are checked on construction


def test_configs_exist() -> None:
    names = {p.name for p in CONFIGS}
    assert {"levir_mobile_sam.yaml", "levir_fastsam_x.yaml", "shared_data_frozen.yaml"} <= names


@pytest.mark.parametrize("path", SEGMENT_CONFIGS, ids=lambda p: p.name)
def test_segment_config_keys_are_constructor_arguments(path: Path, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("RS_SAM_DATA_DIR", str(tmp_path))
    values = load_config(path)
    check_arguments(SegmentTask, {**values["model"], "classes": {}}, "model")
    check_arguments(SegmentDataModule, values["data"], "data")
    trainer_arguments(values["trainer"])
    SegmentDataModule(**values["data"])


def test_segment_configs_exist() -> None:
    names = {p.name for p in SEGMENT_CONFIGS}
    assert {"dubai_superpixel_losses.yaml", "dubai_no_sam_losses.yaml"} <= names
