"""``processing.run("rs_sam:...")`` in real headless QGIS, with tiny random models.

Skipped where QGIS's Python bindings do not import (``make test`` runs this folder in a
virtual environment built on Debian's Python, which has them).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip(
    "qgis.core",
    reason="QGIS's Python bindings do not import in this Python (Debian: apt install "
    "python3-qgis; `make test` then runs these tests in .venv-qgis)",
)
from qgis.core import (
    QgsFeature,
    QgsGeometry,
    QgsPointXY,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsRasterLayer,
    QgsVectorLayer,
)

from rs_sam.cli.main import cli
from rs_sam.qgis_plugin.runner import MODES, RunSettings
from tests.helpers.qgis_runs import leftovers, tiny_python
from tests.helpers.synthetic import write_raster

SAM_FAST = {"WEIGHTS": 1, "CHIP_SIZE": 96, "OVERLAP": 16, "POINTS_PER_SIDE": 4,
            "PRED_IOU_THRESH": 0.0, "STABILITY_THRESH": 0.0}  # fmt: skip
CHANGE_FAST = {**SAM_FAST, "THRESHOLD": 1.0}


class Feedback(QgsProcessingFeedback):
    """Keeps the progress values and messages; cancels after ``cancel_after`` values."""

    def __init__(self, cancel_after: int | None = None) -> None:
        super().__init__()
        self.values: list[float] = []
        self.messages: list[str] = []
        self.cancel_after = cancel_after

    def setProgress(self, progress: float) -> None:
        super().setProgress(progress)
        self.values.append(progress)
        if self.cancel_after is not None and len(self.values) >= self.cancel_after:
            self.cancel()

    def pushInfo(self, info: str) -> None:
        super().pushInfo(info)
        self.messages.append(info)


def run(algorithm: str, parameters: dict[str, Any], feedback: Feedback | None = None) -> dict:
    import processing

    return processing.run(f"rs_sam:{algorithm}", parameters, feedback=feedback or Feedback())


def vector_summary(path: str) -> tuple[str, int, list[str]]:
    layer = QgsVectorLayer(path, "out", "ogr")
    assert layer.isValid(), path
    summary = layer.crs().authid(), layer.featureCount(), [f.name() for f in layer.fields()]
    del layer
    return summary


def test_provider_lists_the_algorithms(provider) -> None:
    from qgis.core import QgsApplication

    registry = QgsApplication.processingRegistry()
    for name in ("detect_change", "segment", "sam_objects"):
        algorithm = registry.algorithmById(f"rs_sam:{name}")
        assert algorithm is not None, name
        assert algorithm.parameterDefinition("OVERWRITE").defaultValue() is False
    assert (
        registry.algorithmById("rs_sam:segment")
        .parameterDefinition("POINTS_PER_SIDE")
        .defaultValue()
        == 32
    )


def test_detect_change_in_process(provider, pair_paths, tmp_path: Path, tiny_encoder) -> None:
    a, b = pair_paths
    feedback = Feedback()
    parameters = {"A": str(a), "B": str(b), **CHANGE_FAST, "OUTPUT": "TEMPORARY_OUTPUT",
                  "PROBABILITY": str(tmp_path / "score.tif")}  # fmt: skip
    result = run("detect_change", parameters, feedback)
    crs, count, fields = vector_summary(result["OUTPUT"])
    assert crs == "EPSG:32633" and count > 0
    assert fields[-4:] == ["id", "area_m2", "score_mean", "score_max"]
    score = QgsRasterLayer(result["PROBABILITY"], "score")
    assert score.isValid() and score.crs().authid() == "EPSG:32633"
    assert score.width() == 220 and score.height() == 180
    del score
    assert feedback.values[-1] == 100.0 and feedback.values == sorted(feedback.values)


def test_segment_anything_and_prompts_in_process(
    provider, pair_paths, tmp_path: Path, tiny_encoder
) -> None:
    a, _ = pair_paths
    anything = run("segment", {"INPUT": str(a), **SAM_FAST, "OUTPUT": str(tmp_path / "o.gpkg")})
    crs, count, fields = vector_summary(anything["OUTPUT"])
    assert crs == "EPSG:32633" and count > 0
    assert {"id", "score", "stability", "area_m2"} <= set(fields)

    points = QgsVectorLayer("Point?crs=EPSG:32633&field=label:integer", "prompts", "memory")
    features = []
    for x, y in ((500_300.0, 4_999_500.0), (501_000.0, 4_999_000.0)):
        feature = QgsFeature(points.fields())
        feature.setGeometry(QgsGeometry.fromPointXY(QgsPointXY(x, y)))
        feature.setAttribute("label", 1)
        features.append(feature)
    points.dataProvider().addFeatures(features)
    prompted = run("segment", {"INPUT": str(a), "MODE": 1, "PROMPTS": points, **SAM_FAST,
                               "OUTPUT": "TEMPORARY_OUTPUT"})  # fmt: skip
    crs, count, fields = vector_summary(prompted["OUTPUT"])
    assert crs == "EPSG:32633" and count == 2  # one object per point prompt
    assert {"prompt_id", "mask_index", "score"} <= set(fields)


def test_sam_objects_writes_rasters_on_the_input_grid(
    provider, pair_paths, tmp_path: Path, tiny_encoder
) -> None:
    a, _ = pair_paths
    result = run("sam_objects", {"INPUT": str(a), **SAM_FAST, "MIN_AREA": "0",
                                 "OUTPUT": str(tmp_path / "objects.tif"),
                                 "BOUNDARY": str(tmp_path / "boundary.tif")})  # fmt: skip
    for name in ("OUTPUT", "BOUNDARY"):
        layer = QgsRasterLayer(result[name], name)
        assert layer.isValid() and layer.crs().authid() == "EPSG:32633"
        assert (layer.width(), layer.height()) == (220, 180)
        del layer


def test_cancelled_run_leaves_no_output(provider, pair_paths, tmp_path: Path, tiny_encoder):
    a, b = pair_paths
    out = tmp_path / "out"
    out.mkdir()
    parameters = {"A": str(a), "B": str(b), **CHANGE_FAST, "OUTPUT": str(out / "changes.gpkg"),
                  "PROBABILITY": str(out / "score.tif")}  # fmt: skip
    with pytest.raises(QgsProcessingException, match="cancelled after 1 of"):
        run("detect_change", parameters, Feedback(cancel_after=1))
    assert list(out.iterdir()) == []


def test_bad_input_gives_the_cli_message(provider, pair_paths, tmp_path: Path) -> None:
    a, b = pair_paths
    out = tmp_path / "changes.gpkg"
    cli_result = CliRunner().invoke(cli, ["detect-change", str(a), str(b), "-o", str(out),
                                          "--bands", "7"])  # fmt: skip
    expected = cli_result.output.strip().splitlines()[-1].removeprefix("Error: ")
    assert cli_result.exit_code == 2 and "band" in expected
    with pytest.raises(QgsProcessingException) as caught:
        run("detect_change", {"A": str(a), "B": str(b), "BANDS": "7", "OUTPUT": str(out)})
    assert str(caught.value) == expected
    assert not out.exists()


def test_existing_output_is_kept_without_overwrite(
    provider, pair_paths, tmp_path: Path, tiny_encoder
) -> None:
    a, b = pair_paths
    out = tmp_path / "changes.gpkg"
    out.write_bytes(b"the user's file")
    with pytest.raises(QgsProcessingException, match="exists; pass --overwrite"):
        run("detect_change", {"A": str(a), "B": str(b), **CHANGE_FAST, "OUTPUT": str(out)})
    assert out.read_bytes() == b"the user's file"
    run("detect_change", {"A": str(a), "B": str(b), **CHANGE_FAST, "OVERWRITE": True,
                          "OUTPUT": str(out)})  # fmt: skip
    assert vector_summary(str(out))[1] > 0


def test_subprocess_path(provider, pair_paths, tmp_path: Path, monkeypatch) -> None:
    """The CLI in another Python, configured by RS_SAM_PYTHON: progress relayed, cancel kills."""
    a, b = pair_paths
    monkeypatch.setenv("RS_SAM_RUN_MODE", "subprocess")
    monkeypatch.setenv("RS_SAM_PYTHON", tiny_python(tmp_path.parent))
    feedback = Feedback()
    result = run("segment", {"INPUT": str(a), **SAM_FAST, "OUTPUT": "TEMPORARY_OUTPUT"}, feedback)
    crs, count, _ = vector_summary(result["OUTPUT"])
    assert crs == "EPSG:32633" and count > 0
    assert any(m.startswith("Running ") and "-m rs_sam.cli segment" in m for m in feedback.messages)
    assert len(feedback.values) > 1 and feedback.values[-1] == 100.0

    parameters = {"A": str(a), "B": str(b), **CHANGE_FAST, "OUTPUT": str(tmp_path / "c.gpkg")}
    with pytest.raises(QgsProcessingException, match="cancelled"):
        run("detect_change", parameters, Feedback(cancel_after=1))
    assert leftovers(tmp_path) == []


def test_installed_plugin_loads_in_a_python_without_torch(tmp_path: Path, pair_paths) -> None:
    """`rs-sam qgis install`, then QGIS's own Python (no torch) lists the algorithms and runs
    one through the recorded interpreter."""
    probe = subprocess.run([sys.base_prefix + "/bin/python3", "-c", "import torch"],
                           capture_output=True)  # fmt: skip
    if probe.returncode == 0:
        pytest.skip("the system Python has torch; this test needs one without it")
    profiles = tmp_path / "profiles"
    python = tiny_python(tmp_path)
    code = CliRunner().invoke(cli, ["qgis", "install", "--profiles-dir", str(profiles),
                                    "--python", python])  # fmt: skip
    assert code.exit_code == 0, code.output
    a, _ = pair_paths
    script = tmp_path / "inside_qgis.py"
    script.write_text(INSIDE_QGIS)
    out = tmp_path / "objects.gpkg"
    done = subprocess.run(
        [sys.base_prefix + "/bin/python3", str(script), str(profiles / "default"), str(a),
         str(out)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["algorithms"] == ["rs_sam:detect_change", "rs_sam:pseudo_label",
                                    "rs_sam:pseudo_label_review", "rs_sam:sam_objects",
                                    "rs_sam:segment"]  # fmt: skip
    assert report["crs"] == "EPSG:32633" and report["count"] > 0
    assert report["torch"] is False  # the work ran in the recorded interpreter


INSIDE_QGIS = """
import json, os, sys
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
profile, image, out = sys.argv[1:4]
plugins = os.path.join(profile, "python", "plugins")
sys.path.insert(0, plugins)
from qgis.core import QgsApplication, QgsVectorLayer
QgsApplication.setPrefixPath("/usr", True)
app = QgsApplication([], False)
app.initQgis()
sys.path.append("/usr/share/qgis/python/plugins")
from processing.core.Processing import Processing
Processing.initialize()
import processing
import rs_sam_processing
plugin = rs_sam_processing.classFactory(None)
plugin.initProcessing()
ids = sorted(a.id() for a in plugin.provider.algorithms())
params = {"INPUT": image, "WEIGHTS": 1, "CHIP_SIZE": 96, "OVERLAP": 16, "POINTS_PER_SIDE": 4,
          "PRED_IOU_THRESH": 0.0, "STABILITY_THRESH": 0.0, "OUTPUT": out}
result = processing.run("rs_sam:segment", params)
layer = QgsVectorLayer(result["OUTPUT"], "out", "ogr")
report = {"algorithms": ids, "crs": layer.crs().authid(), "count": layer.featureCount(),
          "torch": "torch" in sys.modules}
del layer
print(json.dumps(report))
"""


def test_no_partial_file_from_a_failed_run(provider, tmp_path: Path) -> None:
    """A raster with no CRS fails before any output is written."""
    image = write_raster(tmp_path / "nocrs.tif", np.zeros((3, 64, 64), np.uint8), crs=None)
    with pytest.raises(QgsProcessingException):
        run("segment", {"INPUT": str(image), **SAM_FAST, "OUTPUT": str(tmp_path / "o.gpkg")})
    assert not (tmp_path / "o.gpkg").exists()


def test_semantic_segmentation_with_a_trained_model(provider, tmp_path: Path) -> None:
    """SEGMENT with MODEL: a tiny UNetFormer trained here, classes as polygons and raster."""
    from tests.helpers.synthetic import texture
    from tests.helpers.train_configs import segment_config

    config = segment_config(tmp_path)
    trained = CliRunner().invoke(cli, ["train", "segment", "--config", str(config), "-q"])
    assert trained.exit_code == 0, trained.output
    model = tmp_path / "run" / "checkpoints" / "last.ckpt"
    image = write_raster(tmp_path / "image.tif",
                         (texture(100, 90, seed=3) * 60 + 100).astype(np.uint8))  # fmt: skip
    result = run("segment", {"INPUT": str(image), "MODEL": str(model), "OVERLAP": 16,
                             "OUTPUT": "TEMPORARY_OUTPUT",
                             "SAVE_CLASSES": str(tmp_path / "classes.tif")})  # fmt: skip
    crs, count, fields = vector_summary(result["OUTPUT"])
    assert crs == "EPSG:32633" and count > 0
    assert {"class_id", "class_name", "area_m2", "score_mean"} <= set(fields)
    classes = QgsRasterLayer(result["SAVE_CLASSES"], "classes")
    assert classes.isValid() and (classes.width(), classes.height()) == (90, 100)
    del classes


def test_run_settings_come_from_the_processing_options(provider, monkeypatch) -> None:
    from processing.core.ProcessingConfig import ProcessingConfig

    from rs_sam.qgis_plugin.provider import run_settings

    monkeypatch.delenv("RS_SAM_PYTHON", raising=False)
    monkeypatch.delenv("RS_SAM_RUN_MODE", raising=False)
    ProcessingConfig.setSettingValue("RS_SAM_PYTHON", sys.executable)  # must exist
    ProcessingConfig.setSettingValue("RS_SAM_RUN_MODE", MODES.index("subprocess"))
    try:
        assert run_settings() == RunSettings("subprocess", sys.executable)
        monkeypatch.setenv("RS_SAM_PYTHON", "/env/python")  # the environment wins
        assert run_settings().python == "/env/python"
    finally:
        ProcessingConfig.setSettingValue("RS_SAM_PYTHON", "")
        ProcessingConfig.setSettingValue("RS_SAM_RUN_MODE", MODES.index("auto"))
    assert run_settings() == RunSettings("auto", "/env/python")
