"""``train_change``/``train_segment``/``train_lora``: the library entries behind ``rs-sam train``.

Reads a config, builds the task and the data module from their typed constructors, and
fits with a progress bar, CSV metrics, and ``last.ckpt``/``best.ckpt`` (best by the
task's validation metric) in the run folder. A run resumes from its ``last.ckpt`` (after
checking it belongs to the same encoder). LoRA runs also write ``<run>/adapter.pt`` (from
``best.ckpt``, else ``last.ckpt``): the small file ``rs-sam segment --lora`` loads.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import lightning
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from rs_sam.errors import ConfigError
from rs_sam.models.encoders import FrozenEncoder
from rs_sam.models.head_file import check_resume
from rs_sam.training.change_data import ChangeDataModule
from rs_sam.training.change_task import ChangeTask
from rs_sam.training.config import build, load_config, trainer_arguments
from rs_sam.training.data_module import SourcesDataModule
from rs_sam.training.head_task import HeadTask
from rs_sam.training.hq_task import HqTask, export_hq_checkpoint
from rs_sam.training.lora_task import LoraTask
from rs_sam.training.mask_data import MaskDataModule
from rs_sam.training.segment_data import SegmentDataModule
from rs_sam.training.segment_task import SegmentTask

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    """Where a run left its checkpoints, and its last validation metrics."""

    run_dir: Path
    best: Path | None
    last: Path | None
    metrics: dict[str, float]
    adapter: Path | None = None  # LoRA runs: the adapter file
    hq_checkpoint: Path | None = None  # HQ-SAM runs: the full HQ-SAM checkpoint (official keys)


@dataclass(frozen=True)
class _Kind:
    data: type[SourcesDataModule]
    task: type[HeadTask]
    monitor: str  # validation metric that picks best.ckpt (higher is better)
    default_dir: str


_KINDS = {
    "change": _Kind(ChangeDataModule, ChangeTask, "val/f1", "runs/change"),
    "segment": _Kind(SegmentDataModule, SegmentTask, "val/miou", "runs/segment"),
    "lora": _Kind(MaskDataModule, LoraTask, "val/dice", "runs/lora"),
    "hq": _Kind(MaskDataModule, HqTask, "val/iou", "runs/hq"),
}


def train_change(
    config: str | Path,
    *,
    resume: Literal["auto", "never"] | str = "auto",
    show_progress: bool = True,
    overrides: dict[str, Any] | None = None,
) -> TrainResult:
    """Train SAM-CD from a YAML config (see ``configs/change/``); see :func:`train`."""
    return train("change", config, resume=resume, show_progress=show_progress, overrides=overrides)


def train_segment(
    config: str | Path,
    *,
    resume: Literal["auto", "never"] | str = "auto",
    show_progress: bool = True,
    overrides: dict[str, Any] | None = None,
) -> TrainResult:
    """Train UNetFormer (+ SSRS losses) from a YAML config (see ``configs/segment/``)."""
    return train("segment", config, resume=resume, show_progress=show_progress, overrides=overrides)


def train_lora(
    config: str | Path,
    *,
    resume: Literal["auto", "never"] | str = "auto",
    show_progress: bool = True,
    overrides: dict[str, Any] | None = None,
) -> TrainResult:
    """SamLP LoRA fine-tuning of SAM (stage 1 or 2) from a YAML config (see ``configs/lora/``)."""
    return train("lora", config, resume=resume, show_progress=show_progress, overrides=overrides)


def train(
    kind: Literal["change", "segment", "lora", "hq"],
    config: str | Path,
    *,
    resume: Literal["auto", "never"] | str = "auto",
    show_progress: bool = True,
    overrides: dict[str, Any] | None = None,
) -> TrainResult:
    """Train a task from a YAML config.

    Args:
        kind: ``change`` (SAM-CD), ``segment`` (UNetFormer) or ``lora`` (SamLP).
        config: YAML with ``model``, ``data``, ``trainer`` sections and ``seed``.
        resume: ``auto`` continues from ``<run>/checkpoints/last.ckpt`` when present,
            ``never`` starts afresh, any other value is a checkpoint path to resume from.
        overrides: per-section values that replace the config's (e.g. from the CLI).
    """
    spec = _KINDS[kind]
    values = load_config(config)
    for section, changes in (overrides or {}).items():
        values[section] = {**(values.get(section) or {}), **changes}
    lightning.seed_everything(values.get("seed", 0), workers=True, verbose=False)
    trainer_args = trainer_arguments(values.get("trainer"))
    run_dir = Path(trainer_args.pop("default_root_dir", spec.default_dir))
    model_args = dict(values.get("model") or {})
    data = build(spec.data, values.get("data"), "data")
    model_args.setdefault("chip_size", data.chip_size)
    if data.bands:
        model_args.setdefault("bands", data.bands)
    if isinstance(data, MaskDataModule):
        if "target" in model_args:
            raise ConfigError("set the target class once, in data.target, not in model")
        model_args["target"] = data.target
    elif isinstance(data, SegmentDataModule):
        if "classes" in model_args:
            raise ConfigError("set the classes once, in data.classes, not in model")
        model_args["classes"] = data.class_table.to_config()
    task = build(spec.task, model_args, "model")
    if isinstance(task, LoraTask | HqTask):
        log.info(task.summary())
        if show_progress:
            print(task.summary(), file=sys.stderr)

    checkpoint_dir = run_dir / "checkpoints"
    ckpt_path = _resume_path(resume, checkpoint_dir)
    if ckpt_path is not None:
        metadata = task.metadata()
        check_resume(ckpt_path, encoder=metadata.encoder, tiny_encoder=metadata.tiny_encoder)
        log.info("resuming from %s", ckpt_path)
    if data.cache_features:
        encoder = getattr(task.model, "encoder", None)
        if not task.hparams.freeze_encoder or not isinstance(encoder, FrozenEncoder):
            raise ConfigError(
                "data.cache_features needs a frozen registry encoder (freeze_encoder: true, "
                "a SAM-family backbone); set cache_features: false"
            )
        loaded = getattr(task, "task_encoder", None)  # base + LoRA adapter, when there is one
        sha256 = loaded.features_sha256 if loaded is not None else task.encoder_sha256
        data.attach_encoder(encoder, encoder_sha256=sha256)

    data.setup("fit")  # bad data fails here, before the run folder is created
    best = ModelCheckpoint(
        dirpath=checkpoint_dir,
        filename="best",
        monitor=spec.monitor,
        mode="max",
        save_last=True,
        enable_version_counter=False,
    )
    trainer = lightning.Trainer(
        default_root_dir=run_dir,
        callbacks=[best],
        logger=CSVLogger(run_dir, name="logs"),
        enable_progress_bar=show_progress,
        enable_model_summary=show_progress,
        **trainer_args,
    )
    trainer.fit(task, datamodule=data, ckpt_path=ckpt_path, weights_only=True)
    last = checkpoint_dir / "last.ckpt"
    best_path = Path(best.best_model_path) if best.best_model_path else None
    adapter = None
    if isinstance(task, LoraTask):
        source = best_path or (last if last.exists() else None)
        score = best.best_model_score
        adapter = task.export_adapter(
            run_dir / "adapter.pt",
            checkpoint=source,
            metadata={
                "source_checkpoint": source.name if source else None,
                spec.monitor: None if score is None else float(score),
            },
        )
    hq_checkpoint = None
    if isinstance(task, HqTask):
        source = best_path or (last if last.exists() else None)
        hq_checkpoint = export_hq_checkpoint(source or task, run_dir / "sam_hq.pth")
    return TrainResult(
        run_dir=run_dir,
        best=best_path,
        last=last if last.exists() else None,
        metrics={k: float(v) for k, v in trainer.callback_metrics.items()},
        adapter=adapter,
        hq_checkpoint=hq_checkpoint,
    )


def _resume_path(resume: str, checkpoint_dir: Path) -> Path | None:
    if resume == "never":
        return None
    if resume == "auto":
        last = checkpoint_dir / "last.ckpt"
        return last if last.exists() else None
    return Path(resume)
