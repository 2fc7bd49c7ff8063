"""Multi-device training tests: synthetic change pairs, configs, and ``rs-sam train`` in a
subprocess.

Lightning's ``ddp`` strategy starts the other ranks by running the command line again, which
a test can only do from a real command, not from inside pytest: :func:`train_in_subprocess`
runs ``python -m rs_sam.cli train ...``. The configs name the tiny random encoder themselves
(``model.tiny_encoder: true``), so every rank builds the same tiny model without patching.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image

from tests.helpers.synthetic import texture

#: One CPU process per rank, two ranks.
DDP_CPU = {"accelerator": "cpu", "devices": 2, "strategy": "ddp"}

#: The data module's log line about each cache key: "feature cache FOLDER: N of M samples...".
CACHE_LINE = re.compile(r"feature cache (\S+): (\d+) of (\d+) samples encoded")

#: Launcher variables a surrounding job (SLURM, torchrun) may have set: the child must not
#: mistake itself for a rank of that job.
_LAUNCHER = re.compile(
    r"(SLURM_|TORCHELASTIC_|PMI_|OMPI_).*|(LOCAL_|GROUP_|NODE_)?RANK|(LOCAL_)?WORLD_SIZE|"
    r"MASTER_ADDR|MASTER_PORT"
)


def change_pairs(root: Path, count: int = 6) -> Path:
    """LEVIR-style ``A/ B/ label/ list/`` with one bright square appearing per 48 px pair;
    the last two pairs are the validation split."""
    rng = np.random.default_rng(7)
    for sub in ("A", "B", "label", "list"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    names = [f"p{i}.png" for i in range(count)]
    for i, name in enumerate(names):
        before = (texture(48, 48, seed=40 + i) * 100 + 50).astype(np.uint8)
        after, label = before.copy(), np.zeros((48, 48), np.uint8)
        top, left = rng.integers(0, 32, size=2)
        after[:, top : top + 16, left : left + 16] = 235
        label[top : top + 16, left : left + 16] = 255
        Image.fromarray(before.transpose(1, 2, 0)).save(root / "A" / name)
        Image.fromarray(after.transpose(1, 2, 0)).save(root / "B" / name)
        Image.fromarray(label).save(root / "label" / name)
    (root / "list" / "train.txt").write_text("\n".join(names[:-2]) + "\n")
    (root / "list" / "val.txt").write_text("\n".join(names[-2:]) + "\n")
    return root


def change_config(tmp_path: Path, *, cache: bool = True, **trainer: Any) -> Path:
    """A one-epoch SAM-CD config on :func:`change_pairs` with the tiny random MobileSAM."""
    root = change_pairs(tmp_path / "pairs")
    config = {
        "seed": 0,
        "model": {
            "encoder": "mobile_sam",
            "weights": "random",
            "tiny_encoder": True,
            "residual_blocks": 1,
            "optimizer": "adamw",
            "lr": 0.003,
        },
        "data": {
            "train": [{"layout": "folder", "root": str(root), "split": "train"}],
            "val": [{"layout": "folder", "root": str(root), "split": "val"}],
            "chip_size": 48,
            "batch_size": 2,
            "augment": False,
            "cache_features": cache,
            "cache_dir": str(tmp_path / "cache"),
        },
        "trainer": {
            "max_epochs": 1,
            "log_every_n_steps": 1,
            "default_root_dir": str(tmp_path / "run"),
            **trainer,
        },
    }
    path = tmp_path / "change.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def train_in_subprocess(
    kind: str, config: Path, *args: str, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """``python -m rs_sam.cli train KIND --config CONFIG -v ARGS`` (stdout and stderr together).

    One torch thread per process (two ranks on a shared two-core machine); the timeout turns
    a rank that waits forever for the other into a failure.
    """
    env = {k: v for k, v in os.environ.items() if not _LAUNCHER.fullmatch(k)}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    command = [sys.executable, "-m", "rs_sam.cli", "train", kind, "--config", str(config), "-v"]
    return subprocess.run(
        [*command, *args],
        env=env,
        cwd=config.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        check=False,
    )


def encoded_by_folder(output: str) -> dict[str, list[tuple[int, int]]]:
    """``(encoded, samples)`` of every process's feature-cache log line, by cache folder."""
    found: dict[str, list[tuple[int, int]]] = {}
    for folder, encoded, samples in CACHE_LINE.findall(output):
        found.setdefault(folder, []).append((int(encoded), int(samples)))
    return found
