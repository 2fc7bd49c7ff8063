"""Public sample data for the demo: found in ``RS_SAM_DATA_DIR``, cached, or downloaded.

Order: ``$RS_SAM_DATA_DIR/<folder>/<file>`` when that variable is set and holds the files
(offline machines, CI), else ``$RS_SAM_HOME/samples/<name>/<file>``, downloaded and
verified (size and sha256) on first use.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from rs_sam.checkpoints import (
    CheckpointSpec,
    download_checkpoint,
    is_offline,
    rs_sam_home,
)
from rs_sam.errors import SampleDataNotFoundError

DATA_DIR_ENV = "RS_SAM_DATA_DIR"


@dataclass(frozen=True)
class SamplePair:
    """Two dates of one place, with where they are published."""

    name: str
    description: str
    licence: str
    folder: str  # sub-folder of RS_SAM_DATA_DIR that holds the files
    files: tuple[CheckpointSpec, CheckpointSpec]


_NAIP_BASE = "https://github.com/opengeos/data/raw/main/naip/"

SAMPLES: dict[str, SamplePair] = {
    "naip": SamplePair(
        name="naip",
        description="USDA NAIP quarter-quad m_4709963_se, 2009 vs 2020, RGBN uint8, EPSG:26914",
        licence="public domain (USDA NAIP), redistributed by opengeos/data (MIT)",
        folder="rasters/naip",
        files=(
            CheckpointSpec(
                url=_NAIP_BASE + "m_4709963_se_14_1_20090818.tif",
                filename="m_4709963_se_14_1_20090818.tif",
                size=2_641_535,
                sha256="568f0d3dc3118d6df63510361db6c627b81541ad4c65122caf54e18030fc7100",
            ),
            CheckpointSpec(
                url=_NAIP_BASE + "m_4709963_se_14_1_20200831.tif",
                filename="m_4709963_se_14_1_20200831.tif",
                size=2_487_763,
                sha256="e8eb18475678d16a98a44f28b1c777fd0b2c56e9c8afed302a5e071e2e237f90",
            ),
        ),
    ),
}


def sample_pair(name: str, *, progress: bool = True) -> tuple[Path, Path]:
    """Paths of the two dates of sample ``name`` (see :data:`SAMPLES`)."""
    if name not in SAMPLES:
        raise SampleDataNotFoundError(
            f"sample {name!r} is unknown; choose one of {', '.join(sorted(SAMPLES))}"
        )
    sample = SAMPLES[name]
    data_dir = os.environ.get(DATA_DIR_ENV)
    if data_dir:
        local = [Path(data_dir) / sample.folder / f.filename for f in sample.files]
        if all(p.is_file() for p in local):
            return local[0], local[1]
    cache = rs_sam_home() / "samples" / name
    paths = []
    for remote in sample.files:
        path = cache / remote.filename
        if not path.is_file():
            by_hand = f"download {remote.url} by hand and put it at {path}"
            if is_offline():
                raise SampleDataNotFoundError(
                    f"sample file {remote.filename} is not cached and RS_SAM_OFFLINE is set; "
                    f"{by_hand}, or set {DATA_DIR_ENV} to a folder holding {sample.folder}/"
                )
            try:
                download_checkpoint(remote, path, progress=progress, timeout=30.0)
            except OSError as err:
                raise SampleDataNotFoundError(
                    f"could not download sample file {remote.filename} ({err}); {by_hand}, "
                    f"or set {DATA_DIR_ENV} to a folder holding {sample.folder}/"
                ) from err
        paths.append(path)
    return paths[0], paths[1]
