"""Previews of a run's polygons over its imagery: a PNG picture or an offline HTML map.

``view`` reads a decimated RGB view of the input(s) and places the polygons on its pixels;
``png`` and ``html`` draw it; ``run`` publishes a preview together with the run's outputs.
"""

from rs_sam.preview.run import PREVIEW_SUFFIXES, check_preview_path, run_with_preview, write_preview
from rs_sam.preview.view import PreviewView, change_view, scene_view

__all__ = [
    "PREVIEW_SUFFIXES",
    "PreviewView",
    "change_view",
    "check_preview_path",
    "run_with_preview",
    "scene_view",
    "write_preview",
]
