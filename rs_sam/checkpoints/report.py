"""Inspecting one checkpoint file: size, sha256 against published figures, safe read, identity."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rs_sam.checkpoints.identify import identify_checkpoint
from rs_sam.checkpoints.published import CheckpointSpec, check_figures, file_sha256
from rs_sam.checkpoints.safe_load import existing_file
from rs_sam.checkpoints.ultralytics_pickle import load_any_state_dict
from rs_sam.errors import CheckpointError


@dataclass(frozen=True)
class CheckpointReport:
    """What :func:`inspect_checkpoint` found out about a file.

    Attributes:
        path: The file.
        size: Its size in bytes.
        sha256: Its sha256.
        expected_size: The published size it was checked against (None: not checked).
        expected_sha256: The published sha256 it was checked against (None: not checked).
        checked_against: Encoder whose published figures were used, if any.
        identified: Encoder (or family member) the tensors belong to, per key names and shapes.
        n_tensors: Number of tensors in the state dict.
        n_values: Number of scalars in those tensors.
    """

    path: Path
    size: int
    sha256: str
    expected_size: int | None
    expected_sha256: str | None
    checked_against: str | None
    identified: str | None
    n_tensors: int
    n_values: int


def inspect_checkpoint(
    path: str | Path, published: CheckpointSpec | None = None, *, name: str | None = None
) -> CheckpointReport:
    """Hash a file, check it against published figures, read it safely and identify it.

    Args:
        path: The file.
        published: Figures to check size/sha256 against (None: nothing is checked; figures
            that were never published are not checked either).
        name: Whose figures ``published`` are (recorded as ``checked_against``).

    Raises:
        CheckpointNotFoundError: The file does not exist.
        CheckpointError: Size/sha256 differ from the published ones, or the file cannot be read
            safely.
    """
    path = existing_file(path)
    size = path.stat().st_size
    sha256 = file_sha256(path)
    if published is not None:
        check_figures(published, size, sha256, what=str(path), dest=path)
    state_dict = load_any_state_dict(path)
    return CheckpointReport(
        path=path,
        size=size,
        sha256=sha256,
        expected_size=published.size if published else None,
        expected_sha256=published.sha256 if published else None,
        checked_against=name if published else None,
        identified=identify_checkpoint(state_dict),
        n_tensors=len(state_dict),
        n_values=sum(t.numel() for t in state_dict.values()),
    )


def require_identified(report: CheckpointReport) -> CheckpointReport:
    """``report``, or CheckpointError when its tensors match no model rs-sam knows."""
    if report.identified is None:
        raise CheckpointError(
            f"{report.path} holds {report.n_tensors:,} tensors that match no checkpoint rs-sam "
            "knows (SAM, HQ-SAM, MobileSAM, FastSAM, SAM 2.1); pass an official file "
            "(rs-sam weights list) or one fine-tuned from it"
        )
    return report
