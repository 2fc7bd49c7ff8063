"""The Processing algorithms' parameters, generated from the option table of the CLI.

Each :class:`Param` names a Processing parameter, its type, its default and the option it
sets (the ``rs-sam`` flag, and the name in the values handed to the API). The table is
``rs_sam/options.py``: standard library only, copied into the plugin by ``rs-sam qgis
install``, so this module loads in QGIS's Python without torch or rs_sam. Nothing here
imports QGIS.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any


def _load_option_table() -> ModuleType:
    """``options.py``: the plugin's copy, else rs_sam's, else the one beside a linked plugin."""
    try:  # the copy in an installed plugin (by name: the source folder has none)
        return importlib.import_module(f"{__package__}.options")
    except ImportError:
        pass
    try:
        from rs_sam import options as library_options

        return library_options
    except ImportError:
        pass
    path = Path(__file__).resolve().parent.parent / "options.py"  # rs_sam/ of a linked plugin
    name = f"{__package__ or 'rs_sam_plugin'}._options"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None or not path.is_file():
        raise ImportError(f"the rs-sam option table {path} is missing; reinstall the plugin")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while building
    _load_beside(path.with_name("pseudo_label_options.py"), name.rpartition(".")[0])
    spec.loader.exec_module(module)
    return module


def _load_beside(path: Path, package: str) -> None:
    """A table module the option table imports relatively, registered in ``package``."""
    spec = importlib.util.spec_from_file_location(f"{package}.{path.stem}", path)
    if spec is None or spec.loader is None or not path.is_file():
        raise ImportError(f"the rs-sam option table {path} is missing; reinstall the plugin")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)


options = _load_option_table()
KINDS: tuple[str, ...] = options.KINDS


@dataclass(frozen=True)
class Param:
    """One Processing parameter and the option it sets.

    Attributes:
        name: Processing parameter name (``processing.run(..., {name: value})``).
        kind: One of :data:`KINDS`.
        description: Label shown in the algorithm dialog.
        flag: The CLI option (``--chip-size``), or None for a positional argument.
        default: Default value (an enum's choice string; None = not passed on).
        choices: The choices of an enum.
        optional: May be left empty.
        advanced: Listed under "Advanced parameters".
        key: The option's name in the values of the API call (``chip_size``).
    """

    name: str
    kind: str
    description: str
    flag: str | None = None
    default: Any = None
    choices: tuple[str, ...] = ()
    optional: bool = False
    advanced: bool = False
    key: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown parameter kind {self.kind!r}")

    @classmethod
    def of(cls, option: Any) -> Param:
        """The parameter of one :class:`rs_sam.options.Option`."""
        return cls(
            name=option.qgis_name,
            kind=option.kind,
            description=option.label,
            flag=option.flag,
            default=option.default,
            choices=option.choices,
            optional=option.optional,
            advanced=option.advanced,
            key=option.name,
        )


@dataclass(frozen=True)
class AlgorithmSpec:
    """One Processing algorithm: the command it runs and its parameters."""

    name: str
    display_name: str
    command: str
    help: str
    params: tuple[Param, ...]

    def param(self, name: str) -> Param:
        return next(p for p in self.params if p.name == name)


def _spec(command: Any, display_name: str, help: str) -> AlgorithmSpec:
    params = tuple(
        Param.of(option) for option in command.options if not getattr(option, "cli_only", False)
    )
    return AlgorithmSpec(command.name, display_name, command.cli_name, help, params)


DETECT_CHANGE = _spec(
    options.DETECT_CHANGE,
    "Detect change",
    "Changes between raster A (earlier) and B (later) as polygons in A's CRS. Zero-shot "
    "(AnyChange) by default, or with a SAM-CD model from `rs-sam train change`. B is "
    "reprojected onto A's grid; only the overlap is processed.",
)
SEGMENT = _spec(
    options.SEGMENT,
    "Segment",
    "Objects of a raster as polygons in its CRS: every object SAM finds (anything), one "
    "object per point or polygon prompt (prompt), or the classes of a model from `rs-sam "
    "train segment` (semantic, with a model file).",
)
SAM_OBJECTS = _spec(
    options.SAM_OBJECTS,
    "SAM object map",
    "SAM object map (uint32 ids, 0 = none) and boundary map of a raster, on its grid, "
    "for SSRS training. Defaults follow SSRS (predicted IoU 0.96, box NMS 0.5, objects of "
    "at least 50 pixels).",
)

PSEUDO_LABEL = _spec(
    options.PSEUDO_LABELS[0],
    "Pseudo-labels (training data from proposals)",
    "Training data without labelling: a label raster on the raster's grid (0 background, "
    "1.. objects, 255 ignore), review.gpkg (status proposed, score) and a training config, "
    "in the output folder. Two rasters: change labels (zero-shot); one: segment labels; or "
    "the polygons of a layer. Objects scoring at least the min score are labels, from the "
    "uncertain score up to it ignore.",
)
PSEUDO_LABEL = dataclasses.replace(  # the later raster is optional (none: segment labels)
    PSEUDO_LABEL,
    params=tuple(dataclasses.replace(p, optional=p.name == "LATER" or p.optional)
                 for p in PSEUDO_LABEL.params),
)  # fmt: skip
PSEUDO_LABEL_REVIEW = _spec(
    options.PSEUDO_LABELS[1],
    "Pseudo-labels from a review",
    "Rebuild the label raster and training config from a reviewed review.gpkg (edit it in "
    "place and save your edits first): accepted and added polygons are labels, rejected "
    "ones background, proposed (unreviewed) ones ignore. Statuses: proposed, accepted, "
    "rejected, added.",
)

ALGORITHMS = (DETECT_CHANGE, SEGMENT, SAM_OBJECTS, PSEUDO_LABEL, PSEUDO_LABEL_REVIEW)


def cli_arguments(spec: AlgorithmSpec, values: dict[str, Any]) -> list[str]:
    """``rs-sam`` arguments (command first) for option values keyed by option name."""
    return [spec.command, *options.COMMANDS[spec.name].cli_arguments(values)]
