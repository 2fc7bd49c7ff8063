"""The review loop in real headless QGIS: pseudo-labels from a layer, edits saved by QGIS's
own editing (status changes, a redrawn geometry, an added polygon), rebuilt by the
``rs_sam:pseudo_label_review`` algorithm.

Skipped where QGIS's Python bindings do not import (``make test-qgis`` runs this folder).
"""

from __future__ import annotations

import gc
from pathlib import Path

import numpy as np
import pytest
import rasterio

pytest.importorskip(
    "qgis.core",
    reason="QGIS's Python bindings do not import in this Python (Debian: apt install "
    "python3-qgis; `make test` then runs these tests in .venv-qgis)",
)
from qgis.core import QgsFeature, QgsGeometry, QgsProcessingException, QgsVectorLayer

from rs_sam.data.labels import IGNORE
from tests.pseudo_label.scenes import box_polygon, change_scene, proposals_file


def run(algorithm: str, parameters: dict) -> dict:
    import processing  # importable once the provider fixture has started Processing

    return processing.run(f"rs_sam:{algorithm}", parameters)


def _labels(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1)


def _mask(box: tuple[int, int, int, int], shape: tuple[int, int]) -> np.ndarray:
    row, col, height, width = box
    mask = np.zeros(shape, bool)
    mask[row : row + height, col : col + width] = True
    return mask


def test_review_edited_in_qgis_rebuilds_the_labels(provider, tmp_path: Path) -> None:
    scene = change_scene(tmp_path / "scene")
    vectors = proposals_file(tmp_path / "proposals.gpkg", scene.boxes, [0.9, 0.9, 0.9, 0.9])
    out = tmp_path / "labels"
    run("pseudo_label", {"INPUT": str(scene.a), "LATER": str(scene.b),
                   "VECTORS": str(vectors), "OUTPUT": str(out)})  # fmt: skip
    assert (_labels(out / "label.tif") == scene.truth).all()

    layer = QgsVectorLayer(f"{out / 'review.gpkg'}|layername=review", "review", "ogr")
    assert layer.isValid() and layer.featureCount() == 4
    status = layer.fields().indexOf("status")
    features = {f["id"]: f for f in layer.getFeatures()}
    layer.startEditing()
    layer.changeAttributeValue(features[1].id(), status, "rejected")
    layer.changeAttributeValue(features[2].id(), status, "accepted")
    row, col, height, width = scene.boxes[3]  # redrawn: half as wide, accepted
    layer.changeGeometry(
        features[4].id(), QgsGeometry.fromWkt(box_polygon(row, col, height, width // 2).wkt)
    )
    layer.changeAttributeValue(features[4].id(), status, "accepted")
    added = QgsFeature(layer.fields())
    added.setGeometry(QgsGeometry.fromWkt(box_polygon(2, 2, 6, 6).wkt))
    added.setAttribute("status", "added")
    layer.addFeature(added)
    assert layer.commitChanges(), layer.commitErrors()
    del layer, features, added
    gc.collect()

    run("pseudo_label_review", {"FROM_REVIEW": str(out / "review.gpkg"),
                   "OUTPUT": str(out), "OVERWRITE": True})  # fmt: skip
    label, shape = _labels(out / "label.tif"), scene.truth.shape
    assert (label[_mask(scene.boxes[0], shape)] == 0).all()  # rejected
    assert (label[_mask(scene.boxes[1], shape)] == 1).all()  # accepted
    assert (label[_mask(scene.boxes[2], shape)] == IGNORE).all()  # left proposed
    assert (label[_mask((row, col, height, width // 2), shape)] == 1).all()  # redrawn
    assert (label[_mask((row, col + width // 2, height, width - width // 2), shape)] == 0).all()
    assert (label[2:8, 2:8] == 1).all()  # added


def test_unknown_status_is_the_cli_message(provider, tmp_path: Path) -> None:
    scene = change_scene(tmp_path / "scene")
    vectors = proposals_file(tmp_path / "proposals.gpkg", scene.boxes, [0.9] * 4)
    out = tmp_path / "labels"
    run("pseudo_label", {"INPUT": str(scene.a), "LATER": str(scene.b),
                   "VECTORS": str(vectors), "OUTPUT": str(out)})  # fmt: skip
    layer = QgsVectorLayer(f"{out / 'review.gpkg'}|layername=review", "review", "ogr")
    layer.startEditing()
    first = next(layer.getFeatures())
    layer.changeAttributeValue(first.id(), layer.fields().indexOf("status"), "ok")
    assert layer.commitChanges()
    del layer, first
    gc.collect()
    with pytest.raises(QgsProcessingException, match="unknown status 'ok'"):
        run("pseudo_label_review", {"FROM_REVIEW": str(out / "review.gpkg"),
                       "OUTPUT": str(tmp_path / "again")})  # fmt: skip
    assert not (tmp_path / "again").exists()
