"""``train_change``/``train_segment``/``train_lora``: the library entries behind ``rs-sam train``.

Reads a config, builds the task and the data module from their typed constructors, and
fits with a progress bar, CSV metrics, and ``last.ckpt``/``best.ckpt`` (best by the
task's validation metric) in the run folder. A run resumes from its ``last.ckpt`` (after
checking it belongs to the same encoder). ``curves.png`` beside the CSV log plots the loss
and the validation metrics per epoch (also after an interrupted run). LoRA runs also write
``<run>/adapter.pt`` (from ``best.ckpt``, else ``last.ckpt``): the small file
``rs-sam segment --lora`` loads.

Several devices: the config's ``trainer`` section picks them (``devices``, ``num_nodes``,
``strategy: ddp``, ``precision``). Every rank runs this function (Lightning's ``ddp`` runs
the command again for the other ranks of a node; ``torchrun``/SLURM start every rank): the
feature cache is filled once (the data module locks it while one process fills it) and read
by all; checkpoints, CSV logs and the exported adapter/HQ-SAM file are written by global rank
0 only, and :attr:`TrainResult.global_rank` lets callers report once.
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
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from rs_sam.errors import ConfigError
from rs_sam.models.encoders import FrozenEncoder
from rs_sam.models.head_file import check_resume
from rs_sam.training.change_data import ChangeDataModule
from rs_sam.training.change_task import ChangeTask
from rs_sam.training.config import build, load_config, trainer_arguments
from rs_sam.training.data_module import SourcesDataModule
from rs_sam.training.distributed import allow_unused_parameters, is_rank_zero
from rs_sam.training.head_task import HeadTask
from rs_sam.training.hq_task import HqTask, export_hq_checkpoint
from rs_sam.training.lora_task import LoraTask
from rs_sam.training.mask_data import MaskDataModule
from rs_sam.training.plots import write_curves
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
    global_rank: int = 0  # several devices: this process's rank (0 reports; all return)
    curves: Path | None = None  # loss and validation metrics per epoch (rank 0; None: no epoch)


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
    if isinstance(task, LoraTask | HqTask) and is_rank_zero():
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

    # The trainer (devices, strategy) is checked before the data and its feature cache.
    trainer, best = _trainer(spec, run_dir, trainer_args, show_progress)
    if task.has_unused_parameters():
        allow_unused_parameters(trainer)
    data.setup("fit")  # bad data fails here, before the run folder is created
    try:
        trainer.fit(task, datamodule=data, ckpt_path=ckpt_path, weights_only=True)
    except BaseException:  # Ctrl+C (Lightning exits) or an error: plot the epochs logged so far
        if trainer.is_global_zero and (curves := _curves(trainer, warn=True)) and show_progress:
            print(f"training curves so far: {curves}", file=sys.stderr)
        raise
    curves = _curves(trainer) if trainer.is_global_zero else None
    last = checkpoint_dir / "last.ckpt"
    best_path = Path(best.best_model_path) if best.best_model_path else None
    adapter = run_dir / "adapter.pt" if isinstance(task, LoraTask) else None
    hq_checkpoint = run_dir / "sam_hq.pth" if isinstance(task, HqTask) else None
    if trainer.is_global_zero:  # several devices: rank 0 writes, the others wait for it
        source = best_path or (last if last.exists() else None)
        if isinstance(task, LoraTask):
            score = best.best_model_score
            adapter = task.export_adapter(
                run_dir / "adapter.pt",
                checkpoint=source,
                metadata={
                    "source_checkpoint": source.name if source else None,
                    spec.monitor: None if score is None else float(score),
                },
            )
        if isinstance(task, HqTask):
            hq_checkpoint = export_hq_checkpoint(source or task, run_dir / "sam_hq.pth")
    trainer.strategy.barrier("rs-sam export")
    return TrainResult(
        run_dir=run_dir,
        best=best_path,
        last=last if last.exists() else None,
        metrics={k: float(v) for k, v in trainer.callback_metrics.items()},
        adapter=adapter,
        hq_checkpoint=hq_checkpoint,
        global_rank=trainer.global_rank,
        curves=curves,
    )


def _curves(trainer: lightning.Trainer, *, warn: bool = False) -> Path | None:
    """``curves.png`` beside the run's ``metrics.csv`` (finalised by Lightning by now)."""
    if not isinstance(trainer.logger, CSVLogger):
        return None
    metrics = Path(trainer.logger.log_dir) / "metrics.csv"
    if not warn:
        return write_curves(metrics)
    try:  # while another error propagates: never hide it
        return write_curves(metrics)
    except (OSError, ValueError) as err:
        log.warning("no training curves: %s", err)
        return None


def _trainer(
    spec: _Kind, run_dir: Path, trainer_args: dict[str, Any], show_progress: bool
) -> tuple[lightning.Trainer, ModelCheckpoint]:
    """The Lightning Trainer of a run and the callback that keeps ``best.ckpt``."""
    best = ModelCheckpoint(
        dirpath=run_dir / "checkpoints",
        filename="best",
        monitor=spec.monitor,
        mode="max",
        enable_version_counter=False,
    )
    # last.ckpt after every epoch (what a run resumes from). Not ``save_last``: Lightning
    # (2.6) rewrites that last.ckpt only in epochs that also improve best.ckpt.
    last = ModelCheckpoint(
        dirpath=run_dir / "checkpoints", filename="last", enable_version_counter=False
    )
    try:
        trainer = lightning.Trainer(
            default_root_dir=run_dir,
            callbacks=[best, last],
            logger=CSVLogger(run_dir, name="logs"),
            enable_progress_bar=show_progress,
            enable_model_summary=show_progress,
            **trainer_args,
        )
    except (MisconfigurationException, ValueError, TypeError, ImportError) as err:
        # e.g. accelerator: cuda without a GPU, devices: [0, 1] on the CPU, tpu without torch_xla
        text = " ".join(str(err).split())
        raise ConfigError(
            f"the config's trainer section does not fit this machine: {text}"
        ) from err
    return trainer, best


def _resume_path(resume: str, checkpoint_dir: Path) -> Path | None:
    if resume == "never":
        return None
    if resume == "auto":
        last = checkpoint_dir / "last.ckpt"
        return last if last.exists() else None
    return Path(resume)
