"""``rs-sam train`` draws ``curves.png``; ``rs-sam evaluate --confusion`` draws the matrix.

Tiny random encoders and synthetic data: these check that the figures are written where the
run says, from the run's own numbers, and that an existing file is kept without --overwrite.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from matplotlib.colors import to_rgb
from PIL import Image

from rs_sam.cli.main import cli
from rs_sam.training.plots import CONFUSION_SIZE, CURVES_SIZE, VAL_COLOUR, read_epoch_curves
from rs_sam.training.segment_task import SegmentTask
from tests.helpers.ddp_training import change_config
from tests.helpers.train_configs import segment_config


def run(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result.exit_code, result.output


def _has_colour(png: Path, colour: str) -> bool:
    rgb = np.asarray(Image.open(png).convert("RGB"))
    target = np.round(np.array(to_rgb(colour)) * 255).astype(np.uint8)
    return int((rgb == target).all(axis=-1).sum()) > 20


@pytest.fixture(scope="module")
def change_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """A two-epoch change run: (config, last checkpoint, the command's output)."""
    tmp_path = tmp_path_factory.mktemp("figures")
    config = change_config(tmp_path, cache=False, max_epochs=2, accelerator="cpu")
    code, text = run("train", "change", "--config", config, "-q")
    assert code == 0, text
    return config, tmp_path / "run" / "checkpoints" / "last.ckpt", text


def test_training_writes_curves_beside_its_csv_log(change_run) -> None:
    _, last, text = change_run
    log = last.parent.parent / "logs" / "version_0"
    curves = log / "curves.png"
    assert f"training curves: {curves}" in text
    assert Image.open(curves).format == "PNG" and Image.open(curves).size == CURVES_SIZE
    assert [e for e, _ in read_epoch_curves(log / "metrics.csv")["val/loss"]] == [0, 1]
    assert _has_colour(curves, VAL_COLOUR)


def test_evaluate_change_draws_the_confusion_matrix_it_counted(change_run, tmp_path: Path):
    config, last, _ = change_run
    root = yaml.safe_load(config.read_text())["data"]["val"][0]["root"]
    evaluate = ["evaluate", "change", "--model", last, "--data", root, "--split", "val", "-q"]
    png, report = tmp_path / "confusion.png", tmp_path / "report.json"
    code, text = run(*evaluate, "--confusion", png, "--json", report)
    assert code == 0, text
    assert Image.open(png).size == CONFUSION_SIZE
    values = json.loads(report.read_text())
    (tn, fp), (fn, tp) = values["confusion"]
    assert tn + fp + fn + tp == values["pixels"] == 2 * 48 * 48
    assert values["precision"] == pytest.approx(tp / (tp + fp) if tp + fp else 0.0)

    # an existing file is refused before any work, and left as it was
    before = png.read_bytes()
    again = tmp_path / "again.json"
    code, text = run(*evaluate, "--confusion", png, "--json", again)
    assert code == 2 and text.strip().splitlines()[-1].endswith("pass --overwrite to replace it")
    assert png.read_bytes() == before and not again.exists()
    code, text = run(*evaluate, "--confusion", tmp_path / "confusion.jpg")
    assert code == 2 and "must end in .png" in text
    png.write_bytes(b"old")
    code, text = run(*evaluate, "--confusion", png, "--overwrite")
    assert code == 0, text
    assert Image.open(png).size == CONFUSION_SIZE
    assert sorted(p.name for p in tmp_path.iterdir()) == ["confusion.png", "report.json"]


@pytest.fixture
def interrupted_in_epoch_two(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Ctrl+C as the second epoch starts (Lightning then ignores SIGINT: restored after)."""

    def stop(task: SegmentTask) -> None:
        if task.current_epoch == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(SegmentTask, "on_train_epoch_start", stop, raising=False)
    handler = signal.getsignal(signal.SIGINT)
    yield
    signal.signal(signal.SIGINT, handler)


def test_interrupted_training_keeps_its_curves(interrupted_in_epoch_two, tmp_path: Path) -> None:
    config = segment_config(tmp_path)
    code, text = run("train", "segment", "--config", config, "--max-epochs", "3")
    assert code == 1, text  # Lightning's graceful shutdown exits 1
    log = tmp_path / "run" / "logs" / "version_0"
    assert f"training curves so far: {log / 'curves.png'}" in text
    assert Image.open(log / "curves.png").size == CURVES_SIZE
    assert [e for e, _ in read_epoch_curves(log / "metrics.csv")["val/miou"]] == [0]

    # the checkpoint of the finished epoch evaluates, with its three-class matrix
    root = Path(yaml.safe_load(config.read_text())["data"]["train"][0]["images"]).parent
    png, report = tmp_path / "segment.png", tmp_path / "segment.json"
    code, text = run("evaluate", "segment", "--model", tmp_path / "run/checkpoints/last.ckpt",
                     "--data", root / "images", "--labels", root / "masks", "--names",
                     "tile_4,tile_5", "--confusion", png, "--json", report, "-q")  # fmt: skip
    assert code == 0, text
    matrix = np.array(json.loads(report.read_text())["confusion"])
    assert matrix.shape == (3, 3) and matrix.sum() == 2 * 64 * 64
    assert Image.open(png).size == CONFUSION_SIZE
