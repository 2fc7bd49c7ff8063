"""Training configs: YAML whose keys are the typed constructor arguments (LightningCLI style).

A config has three sections, each passed to one constructor::

    model:    # -> the task's __init__ (e.g. rs_sam.training.change_task.ChangeTask)
    data:     # -> the data module's __init__
    trainer:  # -> a few lightning.Trainer arguments (see TRAINER_KEYS)
    seed: 0

Unknown keys are errors that list the valid ones; ``${VAR}`` in strings is expanded from
the environment (e.g. ``${RS_SAM_DATA_DIR}``), and an unset variable is an error.
"""

from __future__ import annotations

import inspect
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from rs_sam.errors import ConfigError

#: The lightning.Trainer arguments a config may set.
TRAINER_KEYS = (
    "max_epochs",
    "max_steps",
    "accelerator",
    "devices",
    "precision",
    "log_every_n_steps",
    "check_val_every_n_epoch",
    "limit_train_batches",
    "limit_val_batches",
    "gradient_clip_val",
    "default_root_dir",
    "deterministic",
)

_SECTIONS = ("model", "data", "trainer", "seed")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML config, check its sections and expand ``${VAR}`` references."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config {path} does not exist; pass a YAML file, e.g. configs/change/")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"config {path} is not valid YAML ({str(err).splitlines()[0]})") from err
    if not isinstance(raw, dict):
        raise ConfigError(f"config {path} must be a mapping with sections {', '.join(_SECTIONS)}")
    unknown = sorted(set(raw) - set(_SECTIONS))
    if unknown:
        raise ConfigError(
            f"config {path} has unknown section(s) {', '.join(unknown)}; "
            f"valid: {', '.join(_SECTIONS)}"
        )
    expanded: dict[str, Any] = _expand(raw, str(path))
    return expanded


def check_arguments(target: Callable[..., Any], values: Mapping[str, Any], where: str) -> None:
    """Raise ConfigError for keys that ``target``'s signature does not accept."""
    parameters = inspect.signature(target).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    valid = [name for name in parameters if name != "self"]
    unknown = sorted(set(values) - set(valid))
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(unknown)} in '{where}'; valid: {', '.join(valid)}"
        )


def build(target: Callable[..., Any], values: Mapping[str, Any] | None, where: str) -> Any:
    """``target(**values)`` after checking the keys; TypeErrors become ConfigErrors."""
    values = dict(values or {})
    check_arguments(target, values, where)
    try:
        return target(**values)
    except TypeError as err:
        raise ConfigError(f"'{where}' in the config is invalid: {err}") from err


def trainer_arguments(values: Mapping[str, Any] | None) -> dict[str, Any]:
    """The ``trainer`` section, restricted to :data:`TRAINER_KEYS`."""
    values = dict(values or {})
    unknown = sorted(set(values) - set(TRAINER_KEYS))
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(unknown)} in 'trainer'; valid: {', '.join(TRAINER_KEYS)}"
        )
    return values


def _expand(value: Any, source: str) -> Any:
    if isinstance(value, str):

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in os.environ:
                raise ConfigError(
                    f"config {source} uses ${{{name}}} but {name} is not set; export it first"
                )
            return os.environ[name]

        return _VAR.sub(replace, value)
    if isinstance(value, list):
        return [_expand(v, source) for v in value]
    if isinstance(value, dict):
        return {k: _expand(v, source) for k, v in value.items()}
    return value
