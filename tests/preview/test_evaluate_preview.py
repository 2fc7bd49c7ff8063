"""``rs-sam evaluate change|segment --preview``: the first sample, predictions and labels.

Tiny models trained for one epoch on the synthetic training data. The change model's network
is replaced by an oracle (change where the dates differ), so its predicted region is known.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner
from PIL import Image

from rs_sam.change import supervised
from rs_sam.cli.main import cli
from rs_sam.preview.png import layout_for
from rs_sam.preview.view import LABEL_COLOUR, PLAIN_COLOUR
from rs_sam.training import evaluate
from tests.helpers.browser import browse, console_errors
from tests.helpers.ddp_training import change_config
from tests.helpers.previews import raster_on_screen, read_png, rgb
from tests.helpers.train_configs import COLOURS, segment_config


def run(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def change_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(checkpoint, pairs folder) of a one-epoch change run; p4 is the first val pair."""
    tmp_path = tmp_path_factory.mktemp("change")
    config = change_config(tmp_path, cache=False, accelerator="cpu")
    code, text = run("train", "change", "--config", config, "-q")
    assert code == 0, text
    root = Path(yaml.safe_load(config.read_text())["data"]["val"][0]["root"])
    return tmp_path / "run" / "checkpoints" / "last.ckpt", root


@pytest.fixture(scope="module")
def segment_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(checkpoint, data folder) of a one-epoch segmentation run."""
    tmp_path = tmp_path_factory.mktemp("segment")
    config = segment_config(tmp_path)
    code, text = run("train", "segment", "--config", config, "-q")
    assert code == 0, text
    return tmp_path / "run" / "checkpoints" / "last.ckpt", tmp_path / "data"


@pytest.fixture
def oracle(monkeypatch: pytest.MonkeyPatch) -> None:
    """The loaded change model predicts change exactly where the dates differ."""

    def predict(a: torch.Tensor, b: torch.Tensor) -> SimpleNamespace:
        changed = (b - a).abs().mean(1, keepdim=True) > 60
        return SimpleNamespace(change=torch.where(changed, 10.0, -10.0))

    def load(*args: object, **kwargs: object) -> object:
        trained = supervised.load_change_model(*args, **kwargs)  # type: ignore[arg-type]
        trained.network.forward = predict
        return trained

    monkeypatch.setattr(evaluate, "load_change_model", load)


def label_box(path: Path, value: tuple[int, ...] | int) -> tuple[int, int, int, int]:
    """(col0, row0, col1, row1) pixel edges of the label pixels equal to ``value``."""
    label = np.asarray(Image.open(path))
    hit = np.all(label == value, axis=-1) if label.ndim == 3 else label == value
    rows, cols = np.nonzero(hit)
    return int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1


def near(picture: np.ndarray, colour: str, box: tuple[int, int, int, int]) -> int:
    """Pixels of ``colour`` inside the picture box (x0, y0, x1, y1), with a 4 px margin."""
    x0, y0, x1, y1 = box
    hit = np.all(np.abs(picture[..., :3].astype(int) - rgb(colour)) <= 12, axis=-1)
    return int(hit[y0 - 4 : y1 + 5, x0 - 4 : x1 + 5].sum())


def test_change_png_fills_predictions_and_outlines_labels(
    change_model, oracle, tmp_path: Path
) -> None:
    model, root = change_model
    preview, report = tmp_path / "first.png", tmp_path / "report.json"
    code, text = run("evaluate", "change", "--model", model, "--data", root, "--split", "val",
                     "--preview", preview, "--json", report, "-q")  # fmt: skip
    assert code == 0, text
    assert f"preview: {preview}" in text and '"f1": 1.0' in report.read_text()
    picture = read_png(preview)
    panels = SimpleNamespace(panels=[SimpleNamespace(rgb=np.zeros((48, 48, 3)))] * 2)
    layout = layout_for(panels)  # type: ignore[arg-type]
    assert picture.shape[:2] == layout.size[::-1]
    c0, r0, c1, r1 = label_box(root / "label" / "p4.png", 255)
    image_a = np.asarray(Image.open(root / "A" / "p4.png")).astype(int)
    # Inside the predicted square: date a's pixel under the translucent prediction colour.
    for col, row in ((c0 + 5, r0 + 5), (c1 - 5, r1 - 5)):
        x, y = layout.to_picture(0, col + 0.5, row + 0.5)
        expected = 0.65 * image_a[row, col] + 0.35 * rgb(PLAIN_COLOUR)
        assert np.abs(picture[y, x] - expected).max() <= 4, (picture[y, x], expected)
    # Outside it: the image itself.
    col, row = (c1 + 4, r1 + 4) if c1 < 44 and r1 < 44 else (c0 - 4, r0 - 4)
    x, y = layout.to_picture(0, col + 0.5, row + 0.5)
    assert np.abs(picture[y, x] - image_a[row, col]).max() <= 2
    # The label's outline, over both dates, in the label colour.
    for panel in (0, 1):
        x0, y0 = layout.to_picture(panel, c0, r0)
        x1, y1 = layout.to_picture(panel, c1, r1)
        assert near(picture, LABEL_COLOUR, (x0, y0, x1, y1)) > 2 * (x1 - x0 + y1 - y0)
    # The legend: "prediction" and "label" swatches under the panels.
    below = picture[int(layout.to_picture(0, 0, 48)[1]) + 2 :]
    assert near(below, PLAIN_COLOUR, (4, 4, below.shape[1] - 5, below.shape[0] - 5)) > 50
    assert near(below, LABEL_COLOUR, (4, 4, below.shape[1] - 5, below.shape[0] - 5)) > 30


def test_change_html_in_a_browser(change_model, oracle, tmp_path: Path) -> None:
    model, root = change_model
    preview = tmp_path / "first.html"
    code, text = run("evaluate", "change", "--model", model, "--data", root, "--split", "val",
                     "--preview", preview, "-q")  # fmt: skip
    assert code == 0, text
    page = re.sub(r"(?s)<(script|style)\b([^>]*)>.*?</\1>", r"<\1\2>", preview.read_text())
    assert page.count("<script") == 3 and not re.search(r"(src|href)=", page), page
    shot, console = browse(preview, tmp_path)
    assert console_errors(console) == [], console
    assert any("rs-sam preview ready" in line for line in console), console
    at = raster_on_screen(shot, 48, 48)
    c0, r0, c1, r1 = label_box(root / "label" / "p4.png", 255)
    (x0, y0), (x1, y1) = at(c0, r0), at(c1, r1)
    assert near(shot, LABEL_COLOUR, (x0, y0, x1, y1)) > 2 * (x1 - x0 + y1 - y0)
    x, y = at(c0 + 5, r0 + 5)  # inside: the prediction's fill over date a
    image_a = np.asarray(Image.open(root / "A" / "p4.png")).astype(int)
    expected = 0.65 * image_a[r0 + 5, c0 + 5] + 0.35 * rgb(PLAIN_COLOUR)
    assert np.abs(shot[y, x].astype(int) - expected).max() <= 8, (shot[y, x], expected)


def test_segment_png_and_html_outline_the_labels(segment_model, tmp_path: Path) -> None:
    model, root = segment_model
    evaluate_ = ["evaluate", "segment", "--model", model, "--data", root / "images", "--labels",
                 root / "masks", "--names", "tile_4,tile_5", "-q"]  # fmt: skip
    water = label_box(root / "masks" / "tile_4.png", COLOURS["water"])
    code, text = run(*evaluate_, "--preview", tmp_path / "seg.png")
    assert code == 0, text
    picture = read_png(tmp_path / "seg.png")
    layout = layout_for(SimpleNamespace(panels=[SimpleNamespace(rgb=np.zeros((64, 64, 3)))]))  # type: ignore[arg-type]
    x0, y0 = layout.to_picture(0, water[0], water[1])
    x1, y1 = layout.to_picture(0, water[2], water[3])
    assert near(picture, LABEL_COLOUR, (x0, y0, x1, y1)) > 2 * (x1 - x0 + y1 - y0)
    classes = ["#{:02X}{:02X}{:02X}".format(*c) for c in COLOURS.values()]
    panel = picture[: layout.to_picture(0, 0, 64)[1]]
    edges = [near(panel, c, (4, 4, panel.shape[1] - 5, panel.shape[0] - 5)) for c in classes]
    assert max(edges) > 50, edges  # predicted regions, outlined in their class colour

    code, text = run(*evaluate_, "--preview", tmp_path / "seg.html")
    assert code == 0, text
    shot, console = browse(tmp_path / "seg.html", tmp_path)
    assert console_errors(console) == [], console
    at = raster_on_screen(shot, 64, 64)
    (x0, y0), (x1, y1) = at(water[0], water[1]), at(water[2], water[3])
    assert near(shot, LABEL_COLOUR, (x0, y0, x1, y1)) > 2 * (x1 - x0 + y1 - y0)
    assert max(near(shot, c, (4, 4, 895, 645)) for c in classes) > 50


def test_existing_preview_refused_and_kept(change_model, tmp_path: Path) -> None:
    model, root = change_model
    evaluate_ = ["evaluate", "change", "--model", model, "--data", root, "--split", "val", "-q"]
    preview, report = tmp_path / "first.png", tmp_path / "report.json"
    preview.write_bytes(b"old picture")
    code, text = run(*evaluate_, "--preview", preview, "--json", report)
    assert code == 2 and text.strip().endswith("exists; pass --overwrite to replace it"), text
    assert len(text.strip().splitlines()) == 1
    assert preview.read_bytes() == b"old picture" and not report.exists()
    code, text = run(*evaluate_, "--preview", tmp_path / "first.jpg")
    assert code == 2 and "must end in .png (a picture) or .html" in text, text
    code, text = run(*evaluate_, "--preview", preview, "--overwrite")
    assert code == 0, text
    assert Image.open(preview).format == "PNG"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["first.png"]
