"""Figures of a run and of an evaluation: training curves and the confusion matrix (PNG).

Drawn on a bare :class:`matplotlib.figure.Figure` (no pyplot, no global backend state) at a
fixed size and dpi, so a PNG is always :data:`CURVES_SIZE` / :data:`CONFUSION_SIZE` pixels.
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from rs_sam.errors import OutputPathError
from rs_sam.inference.outputs import RunOutputs

_DPI = 100
#: (width, height) in pixels of ``curves.png`` and of a confusion-matrix PNG.
CURVES_SIZE = (1100, 420)
CONFUSION_SIZE = (640, 560)
#: Line colours of the training and validation loss (the metrics take the colours after them).
TRAIN_COLOUR, VAL_COLOUR = "#1f77b4", "#ff7f0e"
_METRIC_COLOURS = ("#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")

Curve = list[tuple[int, float]]  # (epoch, value), epochs ascending


def read_epoch_curves(csv_path: str | Path) -> dict[str, Curve]:
    """Per-epoch values of each logged metric in a Lightning ``metrics.csv``.

    Values logged several times in an epoch (per-step ``train/*``) are averaged; empty cells,
    NaN and infinite values are skipped, so a column that is never finite is left out.
    """
    sums: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    with open(csv_path, newline="") as file:
        for row in csv.DictReader(file):
            try:
                epoch = int(float(row.get("epoch") or "nan"))
            except ValueError:  # a row without an epoch (e.g. a learning-rate monitor's)
                continue
            for name, text in row.items():
                if name in ("epoch", "step") or not text:
                    continue
                try:
                    value = float(text)
                except ValueError:
                    continue
                if math.isfinite(value):
                    sums[name][epoch].append(value)
    return {
        name: [(epoch, sum(v) / len(v)) for epoch, v in sorted(by_epoch.items())]
        for name, by_epoch in sorted(sums.items())
    }


def curves_figure(curves: dict[str, Curve]) -> Figure:
    """Loss (training and validation) and the validation metrics against the epoch.

    Metrics are the ``val/*`` curves other than losses whose values lie in [0, 1] (counts
    such as ``val/objects`` would flatten them).
    """
    figure = Figure(figsize=(CURVES_SIZE[0] / _DPI, CURVES_SIZE[1] / _DPI), dpi=_DPI)
    losses, metrics = figure.subplots(1, 2)
    for name, colour in (("train/loss", TRAIN_COLOUR), ("val/loss", VAL_COLOUR)):
        if name in curves:
            _line(losses, curves[name], name, colour)
    scores = [
        n for n, c in curves.items()
        if n.startswith("val/") and "loss" not in n and all(0 <= v <= 1 for _, v in c)
    ]  # fmt: skip
    for name, colour in zip(scores, _cycle(_METRIC_COLOURS, len(scores)), strict=True):
        _line(metrics, curves[name], name, colour)
    for axes, title in ((losses, "loss"), (metrics, "validation metrics")):
        axes.set_title(title)
        axes.set_xlabel("epoch")
        axes.grid(alpha=0.3)
        axes.xaxis.get_major_locator().set_params(integer=True)
        if axes.lines:
            axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
        else:
            axes.text(0.5, 0.5, "nothing logged", ha="center", va="center",
                      transform=axes.transAxes, color="grey")  # fmt: skip
    metrics.set_ylim(-0.02, 1.02)
    figure.subplots_adjust(left=0.06, right=0.83, bottom=0.13, top=0.9, wspace=0.55)
    return figure


def write_curves(csv_path: str | Path, png_path: str | Path | None = None) -> Path | None:
    """Draw ``curves.png`` (default: beside ``csv_path``) from a run's CSV log.

    Returns:
        The PNG, or None when the log holds no epoch's values yet (nothing is written).
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        return None
    curves = read_epoch_curves(csv_path)
    if not curves:
        return None
    # The run's own log folder: a file left there by an earlier drawing is replaced.
    outputs = RunOutputs(overwrite=True)
    png = png_output(outputs, png_path or csv_path.with_name("curves.png"), "training curves")
    with outputs.staging() as stage:
        save_png(curves_figure(curves), stage.path(png))
    return png


def png_output(outputs: RunOutputs, path: str | Path, what: str) -> Path:
    """Register a ``.png`` output of ``outputs``, checked before any work.

    Raises:
        OutputPathError: another suffix, or its folder is missing.
        OutputExistsError: it exists and ``outputs`` may not overwrite.
    """
    path = Path(path).expanduser()
    if path.suffix.lower() != ".png":
        raise OutputPathError(f"{what} {path} must end in .png; rename it")
    if not path.parent.is_dir():
        raise OutputPathError(f"folder {path.parent} for {path.name} does not exist; create it")
    return outputs.file(path, what)


def confusion_figure(matrix: Sequence[Sequence[int]], names: Sequence[str], title: str) -> Figure:
    """A (k, k) confusion matrix, rows = truth, columns = prediction.

    Each cell shows its pixel count and its share of the row (the recall of the row's class
    on the diagonal); the shade is that share, so a good model has a dark diagonal.
    """
    counts = np.asarray(matrix, dtype=np.int64)
    k = len(names)
    if counts.shape != (k, k):
        raise ValueError(f"a confusion matrix of {k} classes must be {k}x{k}, not {counts.shape}")
    rows = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, rows, out=np.zeros(counts.shape), where=rows > 0)
    figure = Figure(figsize=(CONFUSION_SIZE[0] / _DPI, CONFUSION_SIZE[1] / _DPI), dpi=_DPI)
    axes = figure.add_subplot()
    image = axes.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=axes, label="share of the true class's pixels")
    size = "medium" if k <= 6 else "x-small"
    for i in range(k):
        for j in range(k):
            colour = "white" if shares[i, j] > 0.5 else "black"
            share = f"{shares[i, j]:.1%}" if rows[i, 0] else "-"  # no pixel of this class
            axes.text(j, i, f"{counts[i, j]:,}\n{share}", ha="center", va="center",
                      color=colour, fontsize=size)  # fmt: skip
    axes.set_xticks(range(k), names, rotation=30 if k > 3 else 0, ha="right" if k > 3 else "center")
    axes.set_yticks(range(k), names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title)
    figure.subplots_adjust(left=0.2, right=0.95, bottom=0.18, top=0.9)
    return figure


def save_png(figure: Figure, path: str | Path) -> None:
    """Write ``figure`` as a PNG of its exact size (no ``savefig`` settings from a matplotlibrc)."""
    FigureCanvasAgg(figure).print_png(path)


def _line(axes, curve: Curve, label: str, colour: str) -> None:  # type: ignore[no-untyped-def]
    epochs, values = zip(*curve, strict=True)
    axes.plot(epochs, values, color=colour, label=label, linewidth=2, marker="o", markersize=4)


def _cycle(colours: Sequence[str], count: int) -> list[str]:
    return [colours[i % len(colours)] for i in range(count)]
