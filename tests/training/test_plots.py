"""Training curves and confusion-matrix figures drawn from known values (no training)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.colors import to_rgb
from PIL import Image

from rs_sam.training.plots import (
    CONFUSION_SIZE,
    CURVES_SIZE,
    TRAIN_COLOUR,
    VAL_COLOUR,
    confusion_figure,
    read_epoch_curves,
    save_png,
    write_curves,
)

METRIC_COLOUR = "#2ca02c"  # the first metric's line


def _csv(path: Path, rows: list[dict[str, object]]) -> Path:
    """A Lightning-style metrics.csv: every column in the header, empty cells elsewhere."""
    columns = sorted({k for row in rows for k in row} | {"epoch", "step"})
    lines = [",".join(columns)]
    lines += [",".join(str(row.get(c, "")) for c in columns) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def _run_log(path: Path, val_loss: list[float], *, metric: bool = True) -> Path:
    """Two logged steps per epoch, then one validation row per epoch."""
    rows: list[dict[str, object]] = []
    for epoch, loss in enumerate(val_loss):
        rows += [{"epoch": epoch, "step": 2 * epoch + s, "train/loss": 2.0 - epoch} for s in (0, 1)]
        rows.append({"epoch": epoch, "step": 2 * epoch + 1, "val/loss": loss,
                     **({"val/f1": 0.2 + 0.2 * epoch} if metric else {})})  # fmt: skip
    return _csv(path, rows)


def _pixels_of(png: Path, colour: str) -> np.ndarray:
    """(row, column) of every pixel drawn exactly in ``colour``."""
    rgb = np.asarray(Image.open(png).convert("RGB"))
    target = np.round(np.array(to_rgb(colour)) * 255).astype(np.uint8)
    return np.argwhere((rgb == target).all(axis=-1))


def test_epoch_values_average_steps_and_skip_missing_and_nan(tmp_path: Path) -> None:
    log = _csv(tmp_path / "metrics.csv", [
        {"epoch": 0, "step": 0, "train/loss": 3.0},
        {"epoch": 0, "step": 1, "train/loss": 1.0},
        {"epoch": 0, "step": 1, "val/loss": "nan", "val/f1": 0.5},
        {"epoch": 1, "step": 2, "train/loss": 0.5, "train/other": "inf"},
        {"step": 3, "lr": 0.1},  # no epoch: not one of an epoch's values
    ])  # fmt: skip
    curves = read_epoch_curves(log)
    # epoch 1 was stopped before its validation: the curves have different lengths
    assert curves == {"train/loss": [(0, 2.0), (1, 0.5)], "val/f1": [(0, 0.5)]}


def test_curves_png_has_its_size_and_a_line_per_logged_curve(tmp_path: Path) -> None:
    png = write_curves(_run_log(tmp_path / "metrics.csv", [1.0, 0.8, 0.7]))
    assert png == tmp_path / "curves.png"
    assert Image.open(png).format == "PNG" and Image.open(png).size == CURVES_SIZE
    for colour in (TRAIN_COLOUR, VAL_COLOUR, METRIC_COLOUR):
        assert len(_pixels_of(png, colour)) > 100, colour
    # without a val/loss column there is no validation loss line (nor its legend entry)
    other = write_curves(_run_log(tmp_path / "b.csv", [1.0, 0.8]), tmp_path / "b.png")
    _csv(tmp_path / "c.csv", [{"epoch": e, "step": e, "train/loss": 1.0 / (e + 1)} for e in (0, 1)])
    lonely = write_curves(tmp_path / "c.csv", tmp_path / "c.png")
    assert len(_pixels_of(other, VAL_COLOUR)) > 100
    assert len(_pixels_of(lonely, VAL_COLOUR)) == 0 and len(_pixels_of(lonely, METRIC_COLOUR)) == 0
    assert len(_pixels_of(lonely, TRAIN_COLOUR)) > 100


def test_the_validation_line_follows_its_values(tmp_path: Path) -> None:
    # Same axes (same value range), opposite trends: the pixels that differ are the line's.
    rising = write_curves(_run_log(tmp_path / "r.csv", [0.5, 0.75, 1.0]), tmp_path / "r.png")
    falling = write_curves(_run_log(tmp_path / "f.csv", [1.0, 0.75, 0.5]), tmp_path / "f.png")
    up, down = (set(map(tuple, _pixels_of(p, VAL_COLOUR))) for p in (rising, falling))
    for only, sign in ((up - down, -1), (down - up, 1)):
        rows, cols = np.array(sorted(only)).T
        # image rows grow downwards: a rising line has rows falling as columns grow
        assert sign * np.corrcoef(cols, rows)[0, 1] > 0.9


def test_one_epoch_is_drawn_and_an_empty_log_draws_nothing(tmp_path: Path) -> None:
    png = write_curves(_run_log(tmp_path / "metrics.csv", [0.9]))
    assert png is not None and len(_pixels_of(png, VAL_COLOUR)) > 20  # its marker and legend
    (tmp_path / "empty").mkdir()
    empty = _csv(tmp_path / "empty" / "metrics.csv", [])  # a header, no row
    assert write_curves(empty) is None and not empty.with_name("curves.png").exists()
    assert write_curves(tmp_path / "missing.csv") is None


def _cell_darkness(matrix: list[list[int]], names: list[str], png: Path) -> np.ndarray:
    """How dark each cell is (0 white .. 255 black), sampled beside its text."""
    figure = confusion_figure(matrix, names, "test")
    save_png(figure, png)
    rgb = np.asarray(Image.open(png).convert("RGB")).astype(float)
    axes, k = figure.axes[0], len(names)
    darkness = np.zeros((k, k))
    for i in range(k):
        for j in range(k):
            x, y = axes.transData.transform((j - 0.35, i - 0.35))  # a cell's corner region
            darkness[i, j] = 255 - rgb[round(rgb.shape[0] - y), round(x)].mean()
    return darkness


def test_confusion_png_shades_cells_by_their_row_share(tmp_path: Path) -> None:
    names = ["ground", "water", "building"]
    matrix = [[900, 50, 50], [10, 80, 10], [5, 5, 90]]
    png = tmp_path / "confusion.png"
    darkness = _cell_darkness(matrix, names, png)
    assert Image.open(png).size == CONFUSION_SIZE
    diagonal, off = darkness[np.eye(3, dtype=bool)], darkness[~np.eye(3, dtype=bool)]
    assert diagonal.min() > off.max() + 50
    assert darkness[0, 0] > darkness[1, 1]  # 90% of ground, 80% of water
    # ground's mistakes moved from water to building move the shade with them
    before = _cell_darkness([[80, 20, 0], [0, 100, 0], [0, 0, 100]], names, png)
    after = _cell_darkness([[80, 0, 20], [0, 100, 0], [0, 0, 100]], names, png)
    assert before[0, 1] > before[0, 2] + 20 and after[0, 2] > after[0, 1] + 20


def test_confusion_cells_show_counts_and_row_percentages() -> None:
    figure = confusion_figure([[0, 0], [3, 1]], ["no change", "change"], "title")
    axes = figure.axes[0]
    assert [t.get_text() for t in axes.texts] == ["0\n-", "0\n-", "3\n75.0%", "1\n25.0%"]
    assert [t.get_text() for t in axes.get_xticklabels()] == ["no change", "change"]
    assert [t.get_text() for t in axes.get_yticklabels()] == ["no change", "change"]
    assert axes.get_title() == "title"
    with pytest.raises(ValueError, match="2 classes must be 2x2"):
        confusion_figure([[1, 2, 3]], ["a", "b"], "bad")
