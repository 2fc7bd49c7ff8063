"""``rs-sam train`` refuses badly typed or out-of-range config values before creating anything."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from rs_sam.cli.main import cli
from tests.helpers.train_configs import segment_config

BAD_VALUES = [
    ("data", "batch_size", "two", "data.batch_size='two' must be an integer >= 1"),
    ("model", "lr", "fast", "model.lr='fast' must be a number >= 0"),
    ("trainer", "max_epochs", "one", "trainer.max_epochs='one' must be an integer >= -1"),
    ("trainer", "log_every_n_steps", "often", "trainer.log_every_n_steps='often' must be"),
    ("trainer", "limit_train_batches", 1.5, "trainer.limit_train_batches=1.5 must be"),
    ("trainer", "accelerator", 3, "trainer.accelerator=3 must be a string"),
    ("data", "chip_size", -64, "data.chip_size=-64 must be an integer >= 1"),
    ("model", "dropout", 2.0, "model.dropout=2.0 must be a number from 0 to 1"),
    ("model", "lr", "1e-3", "write it with a decimal point"),
    ("seed", None, "zero", "seed='zero'"),
]


def _bad_config(tmp_path: Path, section: str, key: str | None, value: Any) -> Path:
    path = segment_config(tmp_path)
    config = yaml.safe_load(path.read_text())
    if key is None:
        config[section] = value
    else:
        config[section][key] = value
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    return bad


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    BAD_VALUES,
    ids=[f"{s}.{k}" if k else s for s, k, *_ in BAD_VALUES],
)
def test_bad_value_is_a_one_line_error_before_the_run_folder(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    section: str,
    key: str | None,
    value: Any,
    message: str,
) -> None:
    config = _bad_config(tmp_path, section, key, value)
    monkeypatch.chdir(tmp_path)  # a default run folder would land here too
    result = CliRunner().invoke(cli, ["train", "segment", "--config", str(config), "-q"])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert message in lines[0]
    assert "Traceback" not in result.output
    assert not (tmp_path / "run").exists() and not (tmp_path / "runs").exists()
    assert not [p for p in tmp_path.rglob("logs")]
