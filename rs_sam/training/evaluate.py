"""Evaluate trained change and segmentation models on labelled data, protocol stated."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from rs_sam.change.supervised import load_change_model
from rs_sam.data.colours import default_palette, hex_colour
from rs_sam.data.labels import IGNORE
from rs_sam.devices import resolve_device
from rs_sam.inference.outputs import RunOutputs
from rs_sam.preview.evaluation import FirstSample
from rs_sam.preview.run import check_preview_path, write_preview
from rs_sam.preview.view import PLAIN_COLOUR, PreviewView
from rs_sam.segmentation.semantic import load_segment_model
from rs_sam.training.change_data import ChangeDataModule
from rs_sam.training.plots import confusion_figure, png_output, save_png
from rs_sam.training.segment_data import SegmentDataModule

#: Class names of a change model's confusion matrix (row/column 0, then 1).
CHANGE_CLASSES = ("no change", "change")


@dataclass(frozen=True)
class ChangeMetrics:
    """Change-class metrics, then class-mean (change and no-change averaged) ones."""

    precision: float
    recall: float
    f1: float
    iou: float
    overall_accuracy: float
    mean_iou: float
    mean_f1: float
    pixels: int
    changed_fraction: float  # share of labelled pixels that changed
    all_change_f1: float  # the trivial baselines: every pixel changed ...
    no_change_f1: float  # ... or none (always 0 for the change class)
    protocol: str
    confusion: list[list[int]]  # rows = truth, columns = prediction, as CHANGE_CLASSES

    @classmethod
    def from_counts(cls, tp: int, fp: int, fn: int, tn: int, protocol: str) -> ChangeMetrics:
        def ratio(a: float, b: float) -> float:
            return a / b if b else 0.0

        precision, recall = ratio(tp, tp + fp), ratio(tp, tp + fn)
        f1 = ratio(2 * precision * recall, precision + recall)
        iou = ratio(tp, tp + fp + fn)
        # The no-change class seen as the positive class.
        precision0, recall0 = ratio(tn, tn + fn), ratio(tn, tn + fp)
        f1_0 = ratio(2 * precision0 * recall0, precision0 + recall0)
        iou0 = ratio(tn, tn + fn + fp)
        total = tp + fp + fn + tn
        return cls(
            precision=precision,
            recall=recall,
            f1=f1,
            iou=iou,
            overall_accuracy=ratio(tp + tn, total),
            mean_iou=(iou + iou0) / 2,
            mean_f1=(f1 + f1_0) / 2,
            pixels=total,
            changed_fraction=ratio(tp + fn, total),
            all_change_f1=ratio(2 * (tp + fn), (tp + fn) + total),
            no_change_f1=0.0,
            protocol=protocol,
            confusion=[[tn, fp], [fn, tp]],
        )

    def table(self) -> str:
        return (
            f"protocol: {self.protocol}\n"
            f"change class: precision {self.precision:.4f}  recall {self.recall:.4f}  "
            f"F1 {self.f1:.4f}  IoU {self.iou:.4f}\n"
            f"overall accuracy {self.overall_accuracy:.4f}  ({self.pixels} labelled pixels)\n"
            f"class mean (change, no change): IoU {self.mean_iou:.4f}  F1 {self.mean_f1:.4f}\n"
            f"trivial baselines, change-class F1: all-change {self.all_change_f1:.4f}, "
            f"no-change {self.no_change_f1:.4f} ({self.changed_fraction:.1%} of pixels changed)"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@torch.inference_mode()
def evaluate_change(
    model: str | Path,
    sources: Sequence[Mapping[str, Any]],
    *,
    chip_size: int | None = None,
    threshold: float = 0.5,
    batch_size: int = 4,
    device: str = "auto",
    show_progress: bool = True,
    confusion_png: str | Path | None = None,
    preview: str | Path | None = None,
    overwrite: bool = False,
) -> ChangeMetrics:
    """Pixel metrics of ``model`` on labelled sources (same format as a config's ``data.val``).

    Images are cut into non-overlapping chips of the model's training chip size (or
    ``chip_size``); edge chips are padded and the padding is ignored. ``confusion_png``:
    also draw the confusion matrix there; ``preview`` (.png or .html): the first pair, its
    predicted change filled and its label outlined (existing files need ``overwrite``).
    """
    outputs, png, shown = _figure_outputs(confusion_png, preview, overwrite)
    trained = load_change_model(model, device=resolve_device(device))
    chip = chip_size or trained.metadata.chip_size
    data = ChangeDataModule(
        train=sources, chip_size=chip, bands=trained.metadata.bands, augment=False
    )
    data.setup()
    loader = DataLoader(data.train_set, batch_size=batch_size, shuffle=False)  # type: ignore[arg-type]
    counts = torch.zeros(4, dtype=torch.int64)  # tp, fp, fn, tn
    network = trained.network
    first = FirstSample(data.train_set, panels=2, classes=2, ignore=IGNORE) if shown else None
    for batch in tqdm(loader, desc="evaluate", unit="batch", disable=not show_progress):
        device_ = next(network.parameters()).device
        output = network(batch["image_a"].to(device_), batch["image_b"].to(device_))
        predicted = torch.sigmoid(output.change[:, 0]).cpu() >= threshold
        target = batch["mask"]
        labelled = target != IGNORE
        truth = target == 1
        if first is not None:
            first.add(batch["name"], (batch["image_a"], batch["image_b"]), predicted, target)
        counts += torch.stack(
            [
                (predicted & truth & labelled).sum(),
                (predicted & ~truth & labelled).sum(),
                (~predicted & truth & labelled).sum(),
                (~predicted & ~truth & labelled).sum(),
            ]
        )
    protocol = (
        f"sliding {chip}x{chip} chips without overlap (edges padded, padding ignored), "
        f"threshold {threshold}, pixels pooled over all pairs"
    )
    tp, fp, fn, tn = (int(v) for v in counts)
    metrics = ChangeMetrics.from_counts(tp, fp, fn, tn, protocol)
    view = None if first is None else _change_view(first, model)
    matrix = metrics.confusion
    _write_figures(outputs, png, matrix, CHANGE_CLASSES, model, metrics.pixels, shown, view)
    return metrics


def _change_view(first: FirstSample, model: str | Path) -> PreviewView:
    (tn, fp), (fn, tp) = first.confusion.tolist()
    sample = ChangeMetrics.from_counts(tp, fp, fn, tn, "")
    title = f"{Path(model).name} on {first.name}: F1 {sample.f1:.3f}, IoU {sample.iou:.3f}"
    return first.view(
        title, (f"A: {first.name}", f"B: {first.name}"), {1: ("change", PLAIN_COLOUR)}
    )


@dataclass(frozen=True)
class SegmentMetrics:
    """Per-class IoU/F1, their means, overall accuracy, and the majority-class baseline."""

    class_names: list[str]
    iou: list[float]
    f1: list[float]
    mean_iou: float
    mean_f1: float
    overall_accuracy: float
    pixels: int
    class_fractions: list[float]  # share of labelled pixels of each class
    majority_miou: float  # the trivial baseline: every pixel the most frequent class
    majority_accuracy: float
    protocol: str
    confusion: list[list[int]]  # rows = truth, columns = prediction, as class_names

    @classmethod
    def from_confusion(
        cls, confusion: torch.Tensor, names: Sequence[str], protocol: str
    ) -> SegmentMetrics:
        """From a (k, k) confusion matrix, rows = truth, columns = prediction.

        Means are over the classes present in the labels or the predictions (a class
        absent from both has no defined IoU).
        """
        matrix = confusion.double()
        tp = matrix.diag()
        truth, predicted = matrix.sum(1), matrix.sum(0)
        total = float(matrix.sum())
        union = truth + predicted - tp
        iou = torch.where(union > 0, tp / union.clamp(min=1), torch.nan)
        f1 = torch.where(
            truth + predicted > 0, 2 * tp / (truth + predicted).clamp(min=1), torch.nan
        )
        present = union > 0
        majority = int(truth.argmax())
        majority_iou = truth[majority] / total if total else 0.0  # IoU of the majority class
        return cls(
            class_names=list(names),
            iou=[float(v) for v in iou],
            f1=[float(v) for v in f1],
            mean_iou=float(iou[present].mean()) if present.any() else 0.0,
            mean_f1=float(f1[present].mean()) if present.any() else 0.0,
            overall_accuracy=float(tp.sum() / total) if total else 0.0,
            pixels=int(total),
            class_fractions=[float(v / total) if total else 0.0 for v in truth],
            majority_miou=float(majority_iou) / max(1, int((truth > 0).sum())),
            majority_accuracy=float(truth[majority] / total) if total else 0.0,
            protocol=protocol,
            confusion=confusion.long().tolist(),
        )

    def table(self) -> str:
        width = max(len(n) for n in self.class_names)
        rows = [
            f"  {name:<{width}}  IoU {iou:.4f}  F1 {f1:.4f}  ({share:.1%} of pixels)"
            for name, iou, f1, share in zip(
                self.class_names, self.iou, self.f1, self.class_fractions, strict=True
            )
        ]
        return "\n".join(
            [
                f"protocol: {self.protocol}",
                "per class:",
                *rows,
                f"mIoU {self.mean_iou:.4f}  mean F1 {self.mean_f1:.4f}  overall accuracy "
                f"{self.overall_accuracy:.4f}  ({self.pixels} labelled pixels)",
                f"trivial baseline (every pixel the majority class): mIoU "
                f"{self.majority_miou:.4f}, overall accuracy {self.majority_accuracy:.4f}",
            ]
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@torch.inference_mode()
def evaluate_segment(
    model: str | Path,
    sources: Sequence[Mapping[str, Any]],
    *,
    chip_size: int | None = None,
    batch_size: int = 4,
    device: str = "auto",
    show_progress: bool = True,
    confusion_png: str | Path | None = None,
    preview: str | Path | None = None,
    overwrite: bool = False,
) -> SegmentMetrics:
    """Pixel metrics of a segmentation ``model`` on labelled sources (as ``data.val``).

    Images are cut into non-overlapping chips of the model's training chip size (or
    ``chip_size``); edge chips are padded and the padding is ignored. ``confusion_png``:
    also draw the confusion matrix there; ``preview`` (.png or .html): the first image (or
    scene), its predicted classes filled and its labels outlined (existing files need
    ``overwrite``).
    """
    outputs, png, shown = _figure_outputs(confusion_png, preview, overwrite)
    trained = load_segment_model(model, device=resolve_device(device))
    table = trained.class_table
    chip = chip_size or trained.metadata.chip_size
    data = SegmentDataModule(
        classes=table.to_config(),
        train=sources,
        chip_size=chip,
        bands=trained.metadata.bands,
        augment=False,
    )
    data.setup()
    loader = DataLoader(data.train_set, batch_size=batch_size, shuffle=False)  # type: ignore[arg-type]
    k = table.num_classes
    confusion = torch.zeros(k, k, dtype=torch.int64)
    network = trained.network
    device_ = next(network.parameters()).device
    ignore = table.ignore_index
    first = FirstSample(data.train_set, panels=1, classes=k, ignore=ignore) if shown else None
    for batch in tqdm(loader, desc="evaluate", unit="batch", disable=not show_progress):
        predicted = network(batch["image"].to(device_)).argmax(1).cpu()
        target = batch["mask"]
        if first is not None:
            first.add(batch["name"], (batch["image"],), predicted, target)
        labelled = target != table.ignore_index
        pairs = target[labelled] * k + predicted[labelled]
        confusion += torch.bincount(pairs, minlength=k * k).reshape(k, k)
    protocol = (
        f"sliding {chip}x{chip} chips without overlap (edges padded, padding ignored), "
        "pixels pooled over all images, argmax of the class probabilities"
    )
    metrics = SegmentMetrics.from_confusion(confusion, table.names, protocol)
    view = None if first is None else _segment_view(first, model, table.names, table.colours)
    matrix = metrics.confusion
    _write_figures(outputs, png, matrix, table.names, model, metrics.pixels, shown, view)
    return metrics


def _segment_view(
    first: FirstSample,
    model: str | Path,
    names: Sequence[str],
    colours: Sequence[tuple[int, int, int]] | None,
) -> PreviewView:
    palette = colours or default_palette(len(names))
    classes = {i: (n, hex_colour(c)) for i, (n, c) in enumerate(zip(names, palette, strict=True))}
    sample = SegmentMetrics.from_confusion(first.confusion, names, "")
    title = f"{Path(model).name} on {first.name}: mIoU {sample.mean_iou:.3f}"
    return first.view(title, (str(first.name),), classes)


def _figure_outputs(
    confusion: str | Path | None, preview: str | Path | None, overwrite: bool
) -> tuple[RunOutputs, Path | None, Path | None]:
    """The confusion PNG and the preview, checked before any work (suffix, folder, existing
    file)."""
    outputs = RunOutputs(overwrite=overwrite)
    png = None if confusion is None else png_output(outputs, confusion, "confusion matrix")
    shown = None if preview is None else outputs.file(check_preview_path(preview), "preview")
    return outputs, png, shown


def _write_figures(
    outputs: RunOutputs,
    png: Path | None,
    matrix: list[list[int]],
    names: Sequence[str],
    model: str | Path,
    pixels: int,
    preview: Path | None,
    view: PreviewView | None,
) -> None:
    """Draw the requested figures into staging; they are published together."""
    if not outputs.paths:
        return
    title = f"confusion matrix of {Path(model).name} ({pixels:,} labelled pixels)"
    with outputs.staging() as stage:
        if png is not None:
            save_png(confusion_figure(matrix, names, title), stage.path(png))
        if preview is not None and view is not None:
            write_preview(view, stage.path(preview))
