"""Training configs: YAML whose keys are the typed constructor arguments (LightningCLI style).

A config has three sections, each passed to one constructor::

    model:    # -> the task's __init__ (e.g. rs_sam.training.change_task.ChangeTask)
    data:     # -> the data module's __init__
    trainer:  # -> a few lightning.Trainer arguments (see TRAINER_KEYS)
    seed: 0

The ``trainer`` section also chooses the devices: ``accelerator``, ``devices``, ``num_nodes``,
``strategy`` (one of :data:`STRATEGIES`, e.g. ``ddp``: one process per device) and
``precision`` (one of :data:`PRECISIONS`); their values are checked here, before Lightning
sees them.

Unknown keys are errors that list the valid ones; ``${VAR}`` in strings is expanded from
the environment (e.g. ``${RS_SAM_DATA_DIR}``), and an unset variable is an error. The
constructors' annotations are the schema: every value is checked against its annotation (and
against :data:`RANGES` where its key has one) before anything is built, so a wrong value is a
one-line ConfigError naming the key, the value and what is expected.
"""

from __future__ import annotations

import inspect
import logging
import math
import os
import re
import sys
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml

from rs_sam.errors import ConfigError

log = logging.getLogger(__name__)

#: The lightning.Trainer arguments a config may set.
TRAINER_KEYS = (
    "max_epochs",
    "max_steps",
    "accelerator",
    "devices",
    "num_nodes",
    "strategy",
    "precision",
    "log_every_n_steps",
    "check_val_every_n_epoch",
    "limit_train_batches",
    "limit_val_batches",
    "gradient_clip_val",
    "default_root_dir",
    "deterministic",
)

#: The type of each trainer argument, as lightning.Trainer takes it from a config.
TRAINER_TYPES: dict[str, Any] = {
    "max_epochs": int | None,
    "max_steps": int,
    "accelerator": str,
    "devices": int | str | list[int],
    "num_nodes": int,
    "strategy": str,
    "precision": int | str,
    "log_every_n_steps": int | None,
    "check_val_every_n_epoch": int | None,
    "limit_train_batches": int | float | None,
    "limit_val_batches": int | float | None,
    "gradient_clip_val": int | float | None,
    "default_root_dir": str,
    "deterministic": bool | Literal["warn"] | None,
}

#: Accelerators a config may name (Lightning's; ``gpu`` is its alias of ``cuda``/``mps``).
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")

_DDP = ("ddp", "ddp_spawn", "ddp_fork", "ddp_notebook")
_UNUSED = ("_find_unused_parameters_true", "_find_unused_parameters_false")
#: Strategies a config may name: Lightning's choice, one device, or data parallel (DDP: one
#: process per device, the small trained parts replicated; ``ddp`` starts the other ranks by
#: running the same command again). Sharding strategies (fsdp, deepspeed) are left out: the
#: trained parts are a few MB, and sharded checkpoints are not the head files rs-sam reads.
STRATEGIES = ("auto", "single_device", *_DDP, *(d + u for d in _DDP for u in _UNUSED))

#: Precisions a config may name (Lightning's), and the older spellings Lightning maps to them.
PRECISIONS = ("32-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "64-true")
_OLD_PRECISIONS: dict[Any, str] = {
    32: "32-true", "32": "32-true", 16: "16-mixed", "16": "16-mixed",
    "bf16": "bf16-mixed", 64: "64-true", "64": "64-true",
}  # fmt: skip
_DEVICES_TEXT = re.compile(r"-1|\d+|\d+(,\d+)*,?")  # Lightning's "2", "0,1", "-1"

_SECTIONS = ("model", "data", "trainer", "seed")
_SEED_MAX = 2**32 - 1  # numpy's seed range, which lightning.seed_everything follows
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
    if "seed" in expanded:
        seed = expanded["seed"]
        if not _matches(seed, int) or not 0 <= seed <= _SEED_MAX:
            raise ConfigError(f"seed={seed!r} in {path} must be an integer from 0 to {_SEED_MAX}")
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


def check_values(target: Callable[..., Any], values: Mapping[str, Any], where: str) -> None:
    """Raise ConfigError for a value that does not fit its annotation in ``target``'s signature.

    Also checks the value's range when its key is in :data:`RANGES`. Annotations that a YAML
    value cannot be checked against (classes, callables) are left to ``target`` itself.
    """
    annotations = _annotations(target)
    for key, value in values.items():
        check_value(f"{where}.{key}", value, annotations.get(key, Any), RANGES.get(key))


def build(target: Callable[..., Any], values: Mapping[str, Any] | None, where: str) -> Any:
    """``target(**values)`` after checking keys, types and ranges (TypeError: ConfigError)."""
    values = dict(values or {})
    check_arguments(target, values, where)
    check_values(target, values, where)
    try:
        return target(**values)
    except TypeError as err:
        raise ConfigError(f"'{where}' in the config is invalid: {err}") from err


def trainer_arguments(values: Mapping[str, Any] | None) -> dict[str, Any]:
    """The ``trainer`` section, restricted to :data:`TRAINER_KEYS` and checked by type/range."""
    values = dict(values or {})
    unknown = sorted(set(values) - set(TRAINER_KEYS))
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(unknown)} in 'trainer'; valid: {', '.join(TRAINER_KEYS)}"
        )
    for key, value in values.items():
        check_value(f"trainer.{key}", value, TRAINER_TYPES[key], RANGES.get(key))
    if "devices" in values:
        _check_devices(values["devices"])
    for key, choices in (("accelerator", ACCELERATORS), ("strategy", STRATEGIES)):
        if key in values and values[key] not in choices:
            sharded = str(values[key]).startswith(("fsdp", "deepspeed"))
            hint = " (no sharding: the trained parts are small, ddp replicates them)"
            raise ConfigError(
                f"trainer.{key}={values[key]!r} is not one of {', '.join(choices)}"
                + (hint if sharded else "")
            )
    if "precision" in values:
        precision = _OLD_PRECISIONS.get(values["precision"], values["precision"])
        if precision not in PRECISIONS:
            raise ConfigError(
                f"trainer.precision={values['precision']!r} is not one of {', '.join(PRECISIONS)}"
            )
        values["precision"] = precision
    return values


def _check_devices(devices: Any) -> None:
    """Lightning's ``devices``: a count (-1: all), a list of indices, "auto" or "0,1"."""
    if isinstance(devices, int):
        fits = devices == -1 or devices >= 1
    elif isinstance(devices, str):
        fits = devices == "auto" or _DEVICES_TEXT.fullmatch(devices.replace(" ", "")) is not None
    else:
        fits = bool(devices) and len(set(devices)) == len(devices) and min(devices) >= 0
    if not fits:
        raise ConfigError(
            f"trainer.devices={devices!r} must be a count >= 1 (-1: all), a list of distinct "
            'device indices, "auto", or indices as text ("0,1")'
        )


@dataclass(frozen=True)
class Range:
    """Bounds of a numeric config value (None: unbounded on that side)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False  # low itself is excluded

    def admits(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or value <= self.high

    def describe(self) -> str:
        if self.low is not None and self.high is not None:
            return f"from {self.low:g} to {self.high:g}"
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        return f"<= {self.high:g}"


@dataclass(frozen=True)
class BatchLimit(Range):
    """Lightning's ``limit_*_batches``: a count (integer >= 0) or a fraction from 0 to 1."""

    def admits(self, value: float) -> bool:
        return value >= 0 if isinstance(value, int) else 0 <= value <= 1

    def describe(self) -> str:
        return "an integer >= 0 (batches) or a number from 0 to 1 (a fraction)"


_AT_LEAST_1 = Range(1)
_AT_LEAST_0 = Range(0)
_POSITIVE = Range(0, low_open=True)
_UNIT = Range(0, 1)
_UNLIMITED = Range(-1)  # lightning's -1: no limit

#: Ranges by key name, shared by every section (and every task/data constructor).
RANGES: dict[str, Range] = {
    **dict.fromkeys(
        (
            "chip_size",
            "batch_size",
            "decoder_channels",
            "latent_classes",
            "adapter_reduction",
            "window_size",
            "num_heads",
            "rank",
            "max_prompts",
            "max_objects",
            "check_val_every_n_epoch",
            "num_nodes",
        ),
        _AT_LEAST_1,
    ),
    **dict.fromkeys(
        (
            "overlap",
            "num_workers",
            "residual_blocks",
            "points",
            "min_area",
            "log_every_n_steps",
            "lr",
            "weight_decay",
            "bce_weight",
            "dice_weight",
            "temporal_weight",
            "object_weight",
            "boundary_weight",
            "aux_weight",
            "box_noise",
            "gradient_clip_val",
        ),
        _AT_LEAST_0,
    ),
    **dict.fromkeys(("temperature", "pos_weight", "alpha"), _POSITIVE),
    **dict.fromkeys(("dropout", "momentum"), _UNIT),
    **dict.fromkeys(("max_epochs", "max_steps"), _UNLIMITED),
    **dict.fromkeys(("limit_train_batches", "limit_val_batches"), BatchLimit()),
}


def check_value(name: str, value: Any, annotation: Any, bounds: Range | None = None) -> None:
    """Raise ConfigError when ``value`` does not fit ``annotation`` (and ``bounds``, if numeric)."""
    fits = _matches(value, annotation)
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if fits and not (bounds is not None and number and not bounds.admits(value)):
        return
    expected = _describe(annotation)
    if bounds is not None and _is_numeric(annotation):
        numeric = _describe(annotation, with_none=False)
        limits = bounds.describe()
        expected = limits if isinstance(bounds, BatchLimit) else f"{numeric} {limits}"
        if _matches(None, annotation):
            expected += ", or null"
    hint = ""
    if isinstance(value, str) and _is_numeric(annotation) and _is_number_text(value):
        hint = f" (YAML reads {value} as text: write it with a decimal point, e.g. 1.0e-3)"
    raise ConfigError(f"{name}={value!r} must be {expected}{hint}")


def _annotations(target: Callable[..., Any]) -> dict[str, Any]:
    """``target``'s parameter annotations, resolved (unresolvable ones become Any)."""
    function = target.__init__ if isinstance(target, type) else target  # type: ignore[misc]
    try:
        return typing.get_type_hints(function)
    except (NameError, TypeError, AttributeError):
        log.debug("resolving %s's annotations one by one", target)  # a TYPE_CHECKING-only name
    scope = dict(vars(sys.modules.get(function.__module__, types.ModuleType("_"))))
    resolved: dict[str, Any] = {}
    for name, parameter in inspect.signature(function).parameters.items():
        one = types.SimpleNamespace(__annotations__={name: parameter.annotation})
        try:
            resolved[name] = typing.get_type_hints(one, globalns=scope)[name]
        except Exception:
            resolved[name] = Any
    return resolved


def _matches(value: Any, annotation: Any) -> bool:
    """Whether a YAML value fits ``annotation`` (unknown kinds of annotation always fit)."""
    origin, args = get_origin(annotation), get_args(annotation)
    if annotation is Any:
        return True
    if annotation is None or annotation is type(None):
        return value is None
    if origin is Union or origin is types.UnionType:
        return any(_matches(value, arg) for arg in args)
    if origin is Literal:
        return any(value == arg and type(value) is type(arg) for arg in args)
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    if annotation is Path:
        return isinstance(value, str | Path)
    container = origin or annotation
    if container in (list, tuple, set, frozenset, Sequence):
        if not isinstance(value, list | tuple):
            return False
        if container is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(map(_matches, value, args))
        return not args or all(_matches(item, args[0]) for item in value)
    if container in (dict, Mapping):
        if not isinstance(value, Mapping):
            return False
        key, item = args or (Any, Any)
        return all(_matches(k, key) and _matches(v, item) for k, v in value.items())
    return True  # classes, callables...: checked by the constructor itself


def _describe(annotation: Any, *, with_none: bool = True) -> str:
    """``annotation`` in words: "an integer", "a list of integers or null"..."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Union or origin is types.UnionType:
        words = [_describe(arg) for arg in args if arg is not type(None)]
        if type(None) in args and with_none:
            words.append("null")
        return " or ".join(dict.fromkeys(words))
    if origin is Literal:
        return "one of " + ", ".join(repr(arg) for arg in args)
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string",
             Path: "a path", type(None): "null", None: "null"}  # fmt: skip
    if annotation in names:
        return names[annotation]
    container = origin or annotation
    if container in (list, tuple, set, frozenset, Sequence):
        return "a list" + (f" of {_plural(args[0])}" if args and args[0] is not Any else "")
    if container in (dict, Mapping):
        return "a mapping"
    return f"a {getattr(annotation, '__name__', annotation)}"


def _plural(annotation: Any) -> str:
    words = _describe(annotation)
    for single, plural in (("an integer", "integers"), ("a number", "numbers"),
                           ("a string", "strings"), ("a mapping", "mappings")):  # fmt: skip
        words = words.replace(single, plural)
    return words


def _is_numeric(annotation: Any) -> bool:
    if get_origin(annotation) in (Union, types.UnionType):
        return any(_is_numeric(arg) for arg in get_args(annotation))
    return annotation in (int, float)


def _is_number_text(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


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
