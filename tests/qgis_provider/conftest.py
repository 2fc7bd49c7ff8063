"""A headless QGIS with Processing and the rs_sam provider, once per test session.

Only imported where QGIS's Python bindings import (the test modules skip otherwise). QGIS
writes its settings, caches and ``*.aux.xml`` files into temporary folders here, never
into the home folder.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest

PROCESSING_PLUGINS = "/usr/share/qgis/python/plugins"  # Debian's Processing plugin

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # no display: else QGIS aborts
for _name in ("QGIS_CUSTOM_CONFIG_PATH", "XDG_RUNTIME_DIR"):
    os.environ[_name] = tempfile.mkdtemp(prefix="rs-sam-qgis-")


@pytest.fixture(scope="session")
def qgis_app() -> Iterator[Any]:
    from qgis.core import QgsApplication

    QgsApplication.setPrefixPath("/usr", True)
    app = QgsApplication([], False)
    app.initQgis()
    if PROCESSING_PLUGINS not in sys.path:
        sys.path.append(PROCESSING_PLUGINS)
    from processing.core.Processing import Processing

    Processing.initialize()
    yield app
    # No exitQgis(): a layer still referenced anywhere would crash the interpreter at exit.


@pytest.fixture(scope="session")
def provider(qgis_app: Any) -> Iterator[Any]:
    """The rs_sam provider, registered (the registry does not keep it alive: we do)."""
    from qgis.core import QgsApplication

    from rs_sam.qgis_plugin.provider import RsSamProvider

    registry = QgsApplication.processingRegistry()
    made = RsSamProvider()
    assert registry.addProvider(made)
    yield made
    registry.removeProvider(made)
