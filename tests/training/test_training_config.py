"""Training configs: sections, unknown keys, environment variables, typed values and ranges."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pytest
import yaml

from rs_sam.errors import ConfigError
from rs_sam.training.config import RANGES, build, check_value, load_config, trainer_arguments

if TYPE_CHECKING:
    from rs_sam.models.encoders import FrozenEncoder


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


def typed(
    *,
    size: int = 4,
    rate: float = 0.1,
    name: str = "a",
    flag: bool = False,
    mode: Literal["x", "y"] = "x",
    bands: tuple[int, ...] | None = None,
    sources: Sequence[Mapping[str, Any]] = (),
    hook: Callable[[int], int] | None = None,
) -> dict[str, Any]:
    return {"size": size, "rate": rate}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"size": "two"}, "model.size='two' must be an integer"),
        ({"size": 2.0}, "model.size=2.0 must be an integer"),
        ({"size": True}, "model.size=True must be an integer"),
        ({"rate": "fast"}, "model.rate='fast' must be a number"),
        ({"name": 3}, "model.name=3 must be a string"),
        ({"flag": "yes please"}, "model.flag='yes please' must be true or false"),
        ({"mode": "z"}, "model.mode='z' must be one of 'x', 'y'"),
        ({"bands": [1, "2"]}, r"model.bands=\[1, '2'\] must be a list of integers or null"),
        ({"bands": "1,2"}, "must be a list of integers or null"),
        ({"sources": ["a"]}, "model.sources=\\['a'\\] must be a list of mappings"),
    ],
)
def test_values_are_checked_against_the_annotations(values: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        build(typed, values, "model")
    assert "\n" not in str(info.value)


def test_well_typed_values_pass_and_ints_are_numbers() -> None:
    values = {"size": 8, "rate": 1, "flag": True, "mode": "y", "bands": [3, 2, 1],
              "sources": [{"layout": "folders"}], "hook": abs}  # fmt: skip
    assert build(typed, values, "model") == {"size": 8, "rate": 1}
    assert build(typed, {"bands": None}, "model") == {"size": 4, "rate": 0.1}


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("batch_size", 0, "data.batch_size=0 must be an integer >= 1"),
        ("overlap", -1, "data.overlap=-1 must be an integer >= 0"),
        ("dropout", 1.5, "data.dropout=1.5 must be a number from 0 to 1"),
        ("temperature", 0.0, "data.temperature=0.0 must be a number > 0"),
        ("lr", float("nan"), "data.lr=nan must be a number >= 0"),
        ("pos_weight", -1.0, "data.pos_weight=-1.0 must be a number > 0, or null"),
    ],
)
def test_ranges_by_key(key: str, value: Any, message: str) -> None:
    annotation = float | None if key == "pos_weight" else (int if "size" in key else float)
    annotation = int if key in ("batch_size", "overlap") else annotation
    with pytest.raises(ConfigError, match=re.escape(message)):
        check_value(f"data.{key}", value, annotation, RANGES[key])
    check_value(f"data.{key}", 1 if annotation is int else 0.5, annotation, RANGES[key])


def test_yaml_exponent_without_a_point_gets_a_hint() -> None:
    with pytest.raises(ConfigError, match=r"model.lr='1e-3' .*\(YAML reads 1e-3 as text"):
        check_value("model.lr", "1e-3", float, RANGES["lr"])


def test_trainer_values_are_typed() -> None:
    good = {"max_epochs": -1, "max_steps": 10, "devices": [0], "precision": "32-true",
            "limit_train_batches": 0.5, "limit_val_batches": 3, "deterministic": "warn",
            "gradient_clip_val": None, "check_val_every_n_epoch": 2}  # fmt: skip
    assert trainer_arguments(good) == good
    for key, value, message in [
        ("max_epochs", "one", "trainer.max_epochs='one' must be an integer >= -1, or null"),
        ("max_steps", -2, "trainer.max_steps=-2 must be an integer >= -1"),
        ("limit_val_batches", 1.5, "a number from 0 to 1 (a fraction)"),
        ("limit_val_batches", -1, "an integer >= 0 (batches)"),
        ("deterministic", "always", "trainer.deterministic='always' must be true or false"),
        ("default_root_dir", ["a"], "must be a string"),
        ("check_val_every_n_epoch", 0, "must be an integer >= 1"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(message)):
            trainer_arguments({key: value})


def test_seed_must_be_an_integer(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    for seed in ("zero", -1, 2**32, 1.5, True):
        path.write_text(yaml.safe_dump({"seed": seed}))
        with pytest.raises(ConfigError, match=r"seed=.* must be an integer from 0 to 4294967295"):
            load_config(path)
    path.write_text("seed: 7\n")
    assert load_config(path)["seed"] == 7


def only_for_type_checkers(*, size: int = 1, encoder: FrozenEncoder | None = None) -> int:
    return size


def test_annotations_only_for_type_checkers_are_skipped() -> None:
    target = only_for_type_checkers  # FrozenEncoder is imported under TYPE_CHECKING only
    assert build(target, {"size": 2, "encoder": object()}, "model") == 2
    with pytest.raises(ConfigError, match=r"model\.size='x' must be an integer"):
        build(target, {"size": "x"}, "model")
