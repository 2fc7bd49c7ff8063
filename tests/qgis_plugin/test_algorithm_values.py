"""Processing parameters -> option values -> the API call or the CLI, with QGIS stubbed.

The real-QGIS runs are in ``tests/qgis_provider``; this checks the mapping where QGIS's
Python bindings are missing, with a stand-in ``qgis.core`` that reads the parameter dict.
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Iterator
from typing import Any

import pytest

from rs_sam.qgis_plugin import runner
from rs_sam.qgis_plugin.specs import DETECT_CHANGE, SEGMENT


class _Layer:
    def __init__(self, path: str) -> None:
        self.path = path

    def providerType(self) -> str:
        return "gdal"

    def source(self) -> str:
        return self.path


class _Algorithm:
    """What RsSamAlgorithm uses of QgsProcessingAlgorithm: values straight from the dict."""

    def __init__(self) -> None:
        pass

    def parameterAsRasterLayer(self, parameters: dict, name: str, context: Any) -> _Layer:
        return _Layer(parameters[name])

    def parameterAsBoolean(self, parameters: dict, name: str, context: Any) -> bool:
        return bool(parameters.get(name, False))

    def parameterAsEnum(self, parameters: dict, name: str, context: Any) -> int:
        return int(parameters.get(name, 0))

    def parameterAsOutputLayer(self, parameters: dict, name: str, context: Any) -> str:
        return parameters.get(name, "")

    def parameterAsFile(self, parameters: dict, name: str, context: Any) -> str:
        return parameters[name]

    def parameterAsInt(self, parameters: dict, name: str, context: Any) -> int:
        return int(parameters.get(name, self.spec.param(name).default))  # type: ignore[attr-defined]

    def parameterAsDouble(self, parameters: dict, name: str, context: Any) -> float:
        return float(parameters.get(name, self.spec.param(name).default))  # type: ignore[attr-defined]

    def parameterAsString(self, parameters: dict, name: str, context: Any) -> str:
        return str(parameters.get(name, self.spec.param(name).default))  # type: ignore[attr-defined]


@pytest.fixture
def algorithms(monkeypatch) -> Iterator[types.ModuleType]:
    core = types.ModuleType("qgis.core")
    for name in ("QgsProcessing", "QgsProcessingContext", "QgsProcessingFeedback",
                 "QgsProcessingParameterBoolean", "QgsProcessingParameterDefinition",
                 "QgsProcessingParameterEnum", "QgsProcessingParameterFeatureSource",
                 "QgsProcessingParameterFile", "QgsProcessingParameterNumber",
                 "QgsProcessingParameterRasterDestination", "QgsProcessingParameterRasterLayer",
                 "QgsProcessingParameterString", "QgsProcessingParameterVectorDestination",
                 "QgsProcessingParameterFolderDestination"):  # fmt: skip
        setattr(core, name, type(name, (), {}))
    core.QgsProcessingAlgorithm = _Algorithm  # type: ignore[attr-defined]
    core.QgsProcessingException = type("QgsProcessingException", (Exception,), {})  # type: ignore[attr-defined]
    registry = types.SimpleNamespace(decodeUri=lambda provider, uri: {"path": uri})
    core.QgsProviderRegistry = types.SimpleNamespace(instance=lambda: registry)  # type: ignore[attr-defined]
    qgis = types.ModuleType("qgis")
    qgis.core = core  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "qgis", qgis)
    monkeypatch.setitem(sys.modules, "qgis.core", core)
    monkeypatch.delitem(sys.modules, "rs_sam.qgis_plugin.algorithms", raising=False)
    module = importlib.import_module("rs_sam.qgis_plugin.algorithms")
    yield module
    sys.modules.pop("rs_sam.qgis_plugin.algorithms", None)


def test_parameters_become_option_values_and_one_run(algorithms, monkeypatch) -> None:
    seen: list[tuple[str, dict[str, Any]]] = []

    def run_command(command: str, values: dict, feedback: Any, settings: Any) -> None:
        seen.append((command, values))

    monkeypatch.setattr(algorithms, "run_command", run_command)
    algorithm = algorithms.RsSamAlgorithm(DETECT_CHANGE, lambda: runner.RunSettings())
    parameters = {"A": "/d/a.tif", "B": "/d/b.tif", "WEIGHTS": 1, "CHIP_SIZE": 96,
                  "THRESHOLD": 30, "MIN_AREA": "10m2", "OUTPUT": "/d/out.gpkg",
                  "PROBABILITY": "/d/p.tif"}  # fmt: skip
    outputs = algorithm.processAlgorithm(parameters, None, None)
    assert outputs == {"OUTPUT": "/d/out.gpkg", "PROBABILITY": "/d/p.tif"}
    [(command, values)] = seen
    assert command == "detect_change"
    assert values["a"] == "/d/a.tif" and values["weights"] == "random"
    assert (values["chip_size"], values["threshold"], values["min_area"]) == (96, 30.0, "10m2")
    assert values["pred_iou_thresh"] == 0.5 and values["points_per_side"] == 16  # defaults
    assert "overlap" not in values and "model" not in values and values["semantic"] is False
    assert runner.cli_arguments(command, values)[:8] == [
        "detect-change", "/d/a.tif", "/d/b.tif", "--threshold", "30.0", "--encoder",
        "mobile_sam", "--weights",
    ]  # fmt: skip


def test_segment_flags_and_enums(algorithms) -> None:
    algorithm = algorithms.RsSamAlgorithm(SEGMENT, lambda: runner.RunSettings())
    values, outputs = algorithm.values(
        {"INPUT": "/d/i.tif", "MODE": 1, "HQ": True, "OUTPUT": "/d/o.gpkg"}, None, None
    )
    assert (values["image"], values["mode"], values["hq"], values["hq_only"]) == (
        "/d/i.tif", "prompt", True, False,
    )  # fmt: skip
    args = runner.cli_arguments("segment", values)
    assert "--hq" in args and "--hq-only" not in args and args[:2] == ["segment", "/d/i.tif"]
    assert outputs == {"OUTPUT": "/d/o.gpkg"}
