"""Training configs: sections, unknown keys, environment variables."""

from __future__ import annotations

from pathlib import Path

import pytest

from rs_sam.errors import ConfigError
from rs_sam.training.config import build, load_config, trainer_arguments


def example(*, lr: float = 0.1, epochs: int = 2) -> dict[str, float]:
    return {"lr": lr, "epochs": epochs}


def test_keys_are_the_constructor_arguments() -> None:
    assert build(example, {"lr": 0.5}, "model") == {"lr": 0.5, "epochs": 2}
    with pytest.raises(ConfigError, match=r"unknown key\(s\) learning_rate in 'model'; valid: lr"):
        build(example, {"learning_rate": 0.5}, "model")


def test_unknown_section_and_trainer_key(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("model: {}\noptimiser: {}\n")
    with pytest.raises(ConfigError, match="unknown section"):
        load_config(path)
    with pytest.raises(ConfigError, match="max_epochs"):
        trainer_arguments({"epochs": 3})


def test_environment_variables_expand(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  root: ${RS_SAM_TEST_ROOT}/levir\n")
    monkeypatch.setenv("RS_SAM_TEST_ROOT", "/data")
    assert load_config(path)["data"]["root"] == "/data/levir"
    monkeypatch.delenv("RS_SAM_TEST_ROOT")
    with pytest.raises(ConfigError, match="RS_SAM_TEST_ROOT is not set"):
        load_config(path)
