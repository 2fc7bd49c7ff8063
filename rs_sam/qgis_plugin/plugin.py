"""The QGIS plugin object: registers the Processing provider and nothing else."""

from __future__ import annotations

from typing import Any

from qgis.core import QgsApplication

from .provider import RsSamProvider


class RsSamPlugin:
    """Adds the rs-sam algorithms to the Processing toolbox (no menus, no toolbar)."""

    def __init__(self, iface: Any = None) -> None:
        self.iface = iface
        self.provider: RsSamProvider | None = None

    def initProcessing(self) -> None:
        self.provider = RsSamProvider()  # keep the reference, or the algorithms vanish
        QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:
        self.initProcessing()

    def unload(self) -> None:
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
