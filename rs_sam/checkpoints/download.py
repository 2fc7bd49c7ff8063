"""Atomic, verified downloads of published files, with a progress bar."""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
from pathlib import Path

from rs_sam.checkpoints.published import CHUNK, CheckpointSpec, check_figures, write_marker


def download_checkpoint(
    ckpt: CheckpointSpec, dest: str | Path, *, progress: bool = True, timeout: float = 60.0
) -> Path:
    """Download ``ckpt.url`` to ``dest`` atomically, verifying the published size and sha256.

    The bytes go to a temporary file in ``dest``'s folder, which is renamed over ``dest`` only
    once every published figure matches; on any failure it is removed, so ``dest`` is either
    absent or complete.

    Raises:
        urllib.error.URLError, http.client.HTTPException, OSError: Network failures (callers
            turn them into :class:`CheckpointNotFoundError`).
        CheckpointError: Size or sha256 differ from the published figures (nothing is kept).
    """
    from tqdm.auto import tqdm

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        n_bytes = 0
        request = urllib.request.Request(ckpt.url, headers={"User-Agent": "rs-sam"})
        with (
            os.fdopen(fd, "wb") as out,
            urllib.request.urlopen(request, timeout=timeout) as response,
        ):
            length = response.headers.get("Content-Length")
            total = ckpt.size or (int(length) if length and length.isdigit() else None)
            with tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=dest.name,
                disable=not progress,
            ) as bar:
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    n_bytes += len(chunk)
                    bar.update(len(chunk))
        check_figures(
            ckpt, n_bytes, digest.hexdigest(), what=f"downloaded {ckpt.filename}", dest=dest
        )
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    write_marker(dest, digest.hexdigest())
    return dest
