"""What a published checkpoint must look like, and checking a file against it.

A verified file is remembered in ``<file>.sha256`` next to it (sha256, size, mtime), so its
sha256 is computed once until the file changes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from rs_sam.errors import CheckpointError

CHUNK = 1 << 20  # bytes read per step when hashing or downloading


@dataclass(frozen=True)
class CheckpointSpec:
    """Where an official checkpoint is published and what it must look like.

    Attributes:
        url: Official download address.
        filename: File name on disk (the official one, also used in the cache).
        size: Published size in bytes, or None where no public figure was found.
        sha256: Published sha256 (lower-case hex), or None where no public figure was found.
    """

    url: str
    filename: str
    size: int | None = None
    sha256: str | None = None


def file_sha256(path: str | Path) -> str:
    """Lower-case hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def check_figures(
    ckpt: CheckpointSpec, size: int, sha256: str | None, *, what: str, dest: Path
) -> None:
    """Raise CheckpointError when a size/sha256 differs from a published figure.

    Args:
        ckpt: The published figures (None figures are not checked).
        size: Size of the file in bytes.
        sha256: Its sha256, or None to check the size only.
        what: How the file is named in the message.
        dest: Where the official file belongs (for the fix in the message).
    """
    fix = f"delete it and run the download again, or put the official file at {dest} by hand"
    if ckpt.size is not None and size != ckpt.size:
        raise CheckpointError(
            f"{what} has {size:,} bytes but the published size is {ckpt.size:,} "
            f"(truncated or a different file); {fix}"
        )
    if ckpt.sha256 is not None and sha256 is not None and sha256 != ckpt.sha256:
        raise CheckpointError(
            f"{what} has sha256 {sha256} but the published one is {ckpt.sha256} "
            f"(corrupted or changed upstream); {fix}"
        )


def _marker_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def write_marker(path: Path, sha256: str) -> None:
    """Remember that ``path`` (at its current size and mtime) has the given sha256."""
    st = path.stat()
    try:
        _marker_path(path).write_text(f"{sha256} {st.st_size} {st.st_mtime_ns}\n")
    except OSError:
        pass  # a read-only cache only costs a re-hash next time


def marker_valid(path: Path, sha256: str) -> bool:
    """True when the marker says ``path``, unchanged since, has the given sha256."""
    try:
        fields = _marker_path(path).read_text().split()
    except OSError:
        return False
    st = path.stat()
    return fields == [sha256, str(st.st_size), str(st.st_mtime_ns)]
