"""``rs-sam weights``: list, fetch, verify and locate official checkpoints."""

from __future__ import annotations

from pathlib import Path

import click

from rs_sam.cli.options import handle_errors


def _size(n_bytes: int | None) -> str:
    if n_bytes is None:
        return "?"
    return f"{n_bytes / 2**20:,.1f} MiB"


@click.group()
def weights() -> None:
    """Manage the official model checkpoints."""


@weights.command("list")
@handle_errors
def list_weights() -> None:
    """List each encoder's official checkpoint and whether it is cached."""
    from rs_sam.checkpoints import cached_checkpoint_path
    from rs_sam.checkpoints.hub import hub_model_dir, is_cached
    from rs_sam.models.concepts import CONCEPT_MODELS
    from rs_sam.models.encoders import ENCODERS

    rows = [("NAME", "FILE", "SIZE", "SHA256", "LICENCE", "CACHED")]
    for spec in ENCODERS.values():
        ckpt = spec.checkpoint
        rows.append(
            (
                spec.name,
                ckpt.filename,
                _size(ckpt.size),
                "published" if ckpt.sha256 else "unpublished",
                spec.licence + (f" [{spec.extra}]" if spec.extra else ""),
                "yes" if cached_checkpoint_path(spec).is_file() else "no",
            )
        )
    for concept in CONCEPT_MODELS.values():
        rows.append(
            (
                concept.name,
                f"{concept.hf_repo} -> {hub_model_dir(concept)}/",
                "?",
                "unpublished",
                concept.licence + (" [gated]" if concept.gated else ""),
                "yes" if is_cached(concept) else "no",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    if any(spec.checkpoint.sha256 is None for spec in ENCODERS.values()):
        click.echo(
            "Files without a published sha256 are checked for size only ('?': size unpublished "
            "too, not checked)."
        )
    if any(spec.extra for spec in ENCODERS.values()):
        click.echo("[fastsam]: needs pip install 'rs-sam[fastsam]' (ultralytics, AGPL-3.0).")
    for concept in CONCEPT_MODELS.values():
        if concept.gated:
            click.echo(
                f"[gated] {concept.name}: request access at {concept.access_url}, then set "
                f"HF_TOKEN (or run `hf auth login`) and run `rs-sam weights fetch {concept.name}`."
            )


@weights.command("fetch")
@click.argument("name")
@handle_errors
def fetch(name: str) -> None:
    """Download (or find in the cache) the official checkpoint of encoder NAME.

    A gated model (sam3) is fetched with your Hugging Face token (HF_TOKEN, or the token file
    of `hf auth login`) into the cache folder; without one it stops and says how to get access.
    """
    from rs_sam.checkpoints import resolve_checkpoint
    from rs_sam.checkpoints.hub import fetch_hub_model
    from rs_sam.models.concepts import CONCEPT_MODELS
    from rs_sam.models.encoders import get_encoder

    if name in CONCEPT_MODELS:
        click.echo(str(fetch_hub_model(CONCEPT_MODELS[name])))
        return
    click.echo(str(resolve_checkpoint(get_encoder(name))))


@weights.command("verify")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--encoder",
    "encoder",
    default=None,
    help="Check FILE against this encoder's published figures.",
)
@handle_errors
def verify(file: Path, encoder: str | None) -> None:
    """Check a checkpoint FILE: size, sha256, safe loading and what model it holds.

    Exits 2 when FILE is unsafe, damaged, differs from the published figures, or holds tensors
    of no model rs-sam knows.
    """
    from rs_sam.checkpoints import require_identified
    from rs_sam.models.encoders import get_encoder, verify_checkpoint

    report = require_identified(verify_checkpoint(file, get_encoder(encoder) if encoder else None))

    def status(found: object, expected: object) -> str:
        if report.checked_against is None:
            return "not checked"
        return "not published" if expected is None else ("ok" if found == expected else "MISMATCH")

    click.echo(f"file:       {report.path}")
    click.echo(f"size:       {report.size:,} bytes ({status(report.size, report.expected_size)})")
    click.echo(f"sha256:     {report.sha256} ({status(report.sha256, report.expected_sha256)})")
    click.echo(f"checked as: {report.checked_against or '- (no official file name matched)'}")
    click.echo(f"identified: {report.identified or 'unknown'}")
    click.echo(f"tensors:    {report.n_tensors:,} ({report.n_values:,} values), loaded safely")


@weights.command("where")
def where() -> None:
    """Print where checkpoints are cached and how to change it."""
    from rs_sam.checkpoints import HOME_ENV, OFFLINE_ENV, checkpoint_dir, is_offline, rs_sam_home

    click.echo(f"home:        {rs_sam_home()}  (set {HOME_ENV} to move it)")
    click.echo(f"checkpoints: {checkpoint_dir()}")
    click.echo(
        f"offline:     {'yes' if is_offline() else 'no'}  ({OFFLINE_ENV}=1 disables downloads)"
    )
