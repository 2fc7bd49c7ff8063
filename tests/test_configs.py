"""Every shipped config builds its task and data module (keys valid, values typed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rs_sam.training.change_data import ChangeDataModule
from rs_sam.training.change_task import ChangeTask
from rs_sam.training.config import check_arguments, load_config, trainer_arguments

CONFIGS = sorted((Path(__file__).parents[1] / "configs" / "change").glob("*.yaml"))


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
