"""``rs-sam weights verify``: a checkpoint file checked against the encoder registry."""

from __future__ import annotations

from pathlib import Path

from rs_sam.checkpoints import (
    CheckpointReport,
    identified_hint,
    inspect_checkpoint,
)
from rs_sam.checkpoints.safe_load import existing_file
from rs_sam.errors import CheckpointError
from rs_sam.models.encoders.registry import ENCODERS, EncoderSpec


def official_spec_for(path: Path) -> EncoderSpec | None:
    """The encoder whose official checkpoint has ``path``'s file name, if any."""
    return next((s for s in ENCODERS.values() if s.checkpoint.filename == path.name), None)


def verify_checkpoint(path: str | Path, spec: EncoderSpec | None = None) -> CheckpointReport:
    """Check a checkpoint file: size, sha256, loadability and what it is.

    Published size/sha256 are compared with those of ``spec``, or, without ``spec``, with
    those of the encoder whose official file name the file has (a renamed or fine-tuned file
    is only read and identified). Figures that were never published are not checked.

    Raises:
        CheckpointNotFoundError: The file does not exist.
        CheckpointError: Size/sha256 differ from the published ones, the file cannot be read
            safely, or it is not a checkpoint of ``spec``.
    """
    path = existing_file(path)
    reference = spec or official_spec_for(path)
    report = inspect_checkpoint(
        path,
        reference.checkpoint if reference else None,
        name=reference.name if reference else None,
    )
    if spec is not None and report.identified != spec.name:
        raise CheckpointError(
            f"{path} is not a '{spec.name}' checkpoint; "
            f"{identified_hint(report.identified, spec.name)}"
        )
    return report
