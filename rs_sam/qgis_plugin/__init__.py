"""QGIS plugin: the rs-sam Processing provider (``rs_sam:detect_change``, ``segment``, ...).

``rs-sam qgis install`` copies this folder into a QGIS profile as ``rs_sam_processing``.
QGIS imports it there, possibly in a Python without rs_sam or torch: the modules here use
only QGIS, the standard library and rs-sam's option table (``options.py``, copied in by the
install), and run the work through the library API in-process or through the CLI in another
Python (see :mod:`.runner`). Importing this package does not import QGIS.
"""


def classFactory(iface):
    """QGIS's plugin entry point."""
    from .plugin import RsSamPlugin

    return RsSamPlugin(iface)
