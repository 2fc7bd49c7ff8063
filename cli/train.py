"""``rs-sam train ...`` and ``rs-sam evaluate ...``: training and evaluating heads."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import click

from rs_sam.cli.options import handle_errors, quiet_option, setup_output, verbose_option

_Command = TypeVar("_Command", bound=Callable[..., None])


@click.group()
def train() -> None:
    """Train models from YAML configs (see configs/).

    \b
    Several devices: set the config's trainer section, e.g. devices: 4, strategy: ddp
    (Lightning runs this command again for each further device); several nodes: add
    num_nodes and start the ranks with srun (SLURM) or torchrun -m rs_sam.cli.
    """


def _train_command(kind: str, description: str) -> click.Command:
    @train.command(kind, help=description)
    @click.option("--config", required=True, type=click.Path(dir_okay=False), help="YAML config.")
    @click.option(
        "--resume",
        default="auto",
        show_default=True,
        help="'auto': continue from the run's last.ckpt if there is one; 'never'; or a .ckpt path.",
    )
    @click.option("--max-epochs", type=int, default=None, help="Override trainer.max_epochs.")
    @click.option("--run-dir", default=None, help="Override trainer.default_root_dir.")
    @verbose_option
    @quiet_option
    @handle_errors
    def command(
        config: str,
        resume: str,
        max_epochs: int | None,
        run_dir: str | None,
        verbose: int,
        quiet: bool,
    ) -> None:
        setup_output(verbose, quiet)
        from rs_sam.training.run import train as run

        trainer: dict[str, object] = {}
        if max_epochs is not None:
            trainer["max_epochs"] = max_epochs
        if run_dir is not None:
            trainer["default_root_dir"] = run_dir
        result = run(
            kind,  # type: ignore[arg-type]
            config,
            resume=resume,
            show_progress=not quiet,
            overrides={"trainer": trainer},
        )
        if result.global_rank != 0:
            return  # several devices: every rank trained, rank 0 reports
        summary = ", ".join(f"{k} {v:.4f}" for k, v in sorted(result.metrics.items()))
        click.echo(f"best: {result.best}  last: {result.last}", err=True)
        if result.adapter is not None:
            click.echo(f"adapter: {result.adapter}", err=True)
        if result.hq_checkpoint is not None:
            click.echo(f"HQ-SAM checkpoint: {result.hq_checkpoint}", err=True)
        if result.curves is not None:
            click.echo(f"training curves: {result.curves}", err=True)
        click.echo(summary, err=True)

    return command


train_change = _train_command("change", "Train SAM-CD (supervised change detection) from a config.")
train_segment = _train_command(
    "segment", "Train UNetFormer semantic segmentation (+ SSRS SAM losses) from a config."
)
train_lora = _train_command(
    "lora",
    "Fine-tune SAM with LoRA for one target class (SamLP stage 1 or 2) from a config; "
    "writes <run>/adapter.pt.",
)
train_hq = _train_command(
    "hq",
    "Train HQ-SAM (SAM frozen; the HQ token, its MLP and feature fusion learn) for one target "
    "class from a config; writes <run>/sam_hq.pth.",
)


def _figure_options(sample: str) -> Callable[[_Command], _Command]:
    """evaluate's --confusion, --preview (of the first ``sample``) and --overwrite."""
    options = [
        click.option(
            "--confusion",
            type=click.Path(dir_okay=False),
            default=None,
            help="Also draw the confusion matrix (counts, row shares) into this .png.",
        ),
        click.option(
            "--preview",
            type=click.Path(dir_okay=False),
            default=None,
            help=f"Also draw the first {sample}, predictions filled and labels outlined: a .png "
            "picture or an offline .html map.",
        ),
        click.option(
            "--overwrite", is_flag=True, help="Replace existing --confusion/--preview files."
        ),
    ]

    def decorate(command: _Command) -> _Command:
        for option in reversed(options):  # listed in --help in this order
            command = option(command)
        return command

    return decorate


@click.group()
def evaluate() -> None:
    """Evaluate trained models on labelled data."""


@evaluate.command("change")
@click.option("--model", required=True, type=click.Path(dir_okay=False), help="Checkpoint.")
@click.option("--data", required=True, type=click.Path(file_okay=False), help="Dataset folder.")
@click.option(
    "--layout",
    type=click.Choice(["folder", "airchange"]),
    default="folder",
    show_default=True,
    help="folder: LEVIR-CD style A/ B/ label/; airchange: SZTAKI AirChange.",
)
@click.option("--split", default=None, help="folder layout: list/<split>.txt to evaluate.")
@click.option("--pairs", default=None, help="Comma-separated pair names (default: all).")
@click.option("--chip-size", type=int, default=None, help="[default: the model's].")
@click.option("--threshold", type=float, default=0.5, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None)
@_figure_options("pair")
@verbose_option
@quiet_option
@handle_errors
def evaluate_change(
    model: str,
    data: str,
    layout: str,
    split: str | None,
    pairs: str | None,
    chip_size: int | None,
    threshold: float,
    device: str,
    json_path: str | None,
    confusion: str | None,
    preview: str | None,
    overwrite: bool,
    verbose: int,
    quiet: bool,
) -> None:
    """Change-class P/R/F1/IoU/OA and class-mean IoU/F1 of a change model."""
    setup_output(verbose, quiet)
    from rs_sam.training.evaluate import evaluate_change as run

    source: dict[str, object] = {"layout": layout, "root": data}
    if split:
        source["split"] = split
    if pairs:
        source["pairs"] = [p.strip() for p in pairs.split(",") if p.strip()]
    metrics = run(
        model,
        [source],
        chip_size=chip_size,
        threshold=threshold,
        device=device,
        show_progress=not quiet,
        confusion_png=confusion,
        preview=preview,
        overwrite=overwrite,
    )
    click.echo(metrics.table())
    if confusion:
        click.echo(f"confusion matrix: {confusion}", err=True)
    if preview:
        click.echo(f"preview: {preview}", err=True)
    if json_path:
        Path(json_path).write_text(json.dumps(metrics.to_dict(), indent=2))


@evaluate.command("segment")
@click.option("--model", required=True, type=click.Path(dir_okay=False), help="Checkpoint.")
@click.option(
    "--data",
    required=True,
    type=click.Path(),
    help="A folder holding image and label folders, or a georeferenced image raster.",
)
@click.option(
    "--labels",
    default=None,
    help="With a raster --data: its label raster. With a folder: the label folder "
    "(then --data is the image folder).",
)
@click.option("--image-dir", default="images", show_default=True, help="Folder name of images.")
@click.option("--label-dir", default="masks", show_default=True, help="Folder name of labels.")
@click.option("--names", default=None, help="Comma-separated sample names (default: all).")
@click.option("--chip-size", type=int, default=None, help="[default: the model's].")
@click.option("--device", default="auto", show_default=True)
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None)
@_figure_options("image (or scene)")
@verbose_option
@quiet_option
@handle_errors
def evaluate_segment(
    model: str,
    data: str,
    labels: str | None,
    image_dir: str,
    label_dir: str,
    names: str | None,
    chip_size: int | None,
    device: str,
    json_path: str | None,
    confusion: str | None,
    preview: str | None,
    overwrite: bool,
    verbose: int,
    quiet: bool,
) -> None:
    """Per-class IoU/F1, mIoU and overall accuracy of a segmentation model."""
    setup_output(verbose, quiet)
    from rs_sam.training.evaluate import evaluate_segment as run

    source: dict[str, object]
    if Path(data).is_dir():
        source = (
            {"layout": "folders", "images": data, "labels": labels}
            if labels
            else {"layout": "tree", "root": data, "image_dir": image_dir, "label_dir": label_dir}
        )
    else:
        if not labels:
            raise click.UsageError("a raster --data needs --labels LABEL_RASTER")
        source = {"layout": "raster", "image": data, "label": labels}
    if names:
        source["names"] = [n.strip() for n in names.split(",") if n.strip()]
    metrics = run(
        model,
        [source],
        chip_size=chip_size,
        device=device,
        show_progress=not quiet,
        confusion_png=confusion,
        preview=preview,
        overwrite=overwrite,
    )
    click.echo(metrics.table())
    if confusion:
        click.echo(f"confusion matrix: {confusion}", err=True)
    if preview:
        click.echo(f"preview: {preview}", err=True)
    if json_path:
        Path(json_path).write_text(json.dumps(metrics.to_dict(), indent=2))
