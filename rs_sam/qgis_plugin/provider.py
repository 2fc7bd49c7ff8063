"""The ``rs_sam`` Processing provider: the algorithms and the two run settings."""

from __future__ import annotations

import os
from pathlib import Path

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from .algorithms import VECTOR_EXTENSIONS, RsSamAlgorithm
from .runner import MODE_SETTING, MODES, PYTHON_SETTING, RunSettings, recorded_python
from .specs import ALGORITHMS

ICON = Path(__file__).with_name("icon.svg")


class RsSamProvider(QgsProcessingProvider):
    """Processing provider ``rs_sam`` (``processing.run("rs_sam:detect_change", ...)``)."""

    def id(self) -> str:
        return "rs_sam"

    def name(self) -> str:
        return "rs-sam"

    def longName(self) -> str:
        return "rs-sam: Segment Anything for remote sensing"

    def icon(self) -> QIcon:
        return QIcon(str(ICON))

    def load(self) -> bool:
        _add_settings(self.name(), self.icon())
        self.refreshAlgorithms()
        return True

    def unload(self) -> None:
        _remove_settings()

    def loadAlgorithms(self) -> None:
        for spec in ALGORITHMS:
            self.addAlgorithm(RsSamAlgorithm(spec, run_settings))

    def supportedOutputVectorLayerExtensions(self) -> list[str]:
        return list(VECTOR_EXTENSIONS)

    def defaultVectorFileExtension(self, hasGeometry: bool = True) -> str:
        return "gpkg"

    def supportedOutputRasterLayerExtensions(self) -> list[str]:
        return ["tif"]

    def defaultRasterFileExtension(self) -> str:
        return "tif"


def run_settings() -> RunSettings:
    """Run mode and interpreter: environment first, then Processing settings, then the record."""
    mode = os.environ.get(MODE_SETTING) or _setting(MODE_SETTING) or "auto"
    python = os.environ.get(PYTHON_SETTING) or _setting(PYTHON_SETTING) or recorded_python()
    return RunSettings(mode=mode, python=python)


def _setting(name: str) -> str | None:
    try:
        from processing.core.ProcessingConfig import ProcessingConfig
    except ImportError:  # Processing plugin not loaded
        return None
    value = ProcessingConfig.getSetting(name, readable=True)  # a choice's text, not its index
    return str(value) if value else None


def _add_settings(group: str, icon: QIcon) -> None:
    try:
        from processing.core.ProcessingConfig import ProcessingConfig, Setting
    except ImportError:
        return
    ProcessingConfig.settingIcons[group] = icon
    ProcessingConfig.addSetting(
        Setting(
            group,
            PYTHON_SETTING,
            "Python with rs-sam installed, used when rs-sam does not import in QGIS "
            f"[default: {recorded_python() or 'none recorded by `rs-sam qgis install`'}]",
            "",  # empty: the record of the latest `rs-sam qgis install` applies
            valuetype=Setting.FILE,
        )
    )
    ProcessingConfig.addSetting(
        Setting(
            group,
            MODE_SETTING,
            "Run mode (auto: in QGIS's Python when rs-sam imports there)",
            MODES[0],
            valuetype=Setting.SELECTION,
            options=list(MODES),
        )
    )
    ProcessingConfig.readSettings()


def _remove_settings() -> None:
    try:
        from processing.core.ProcessingConfig import ProcessingConfig
    except ImportError:
        return
    for name in (PYTHON_SETTING, MODE_SETTING):
        ProcessingConfig.settings.pop(name, None)
