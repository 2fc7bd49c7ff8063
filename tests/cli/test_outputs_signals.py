"""Issue 12, item 10: a run interrupted (SIGINT) or killed (SIGKILL) mid-run, in a subprocess.

SIGINT is the tool's own cancellation (exit 130, one line, nothing left); SIGKILL leaves
the run's hidden work folder, which the next run writing to that folder removes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from rs_sam.cli.main import cli
from tests.helpers.qgis_runs import TINY_CLI
from tests.helpers.synthetic import paint_change, texture, write_raster

pytestmark = pytest.mark.slow  # subprocesses interrupted mid-run

# Many small chips, so that the run is still going when the signal arrives.
SLOW = ["--weights", "random", "--chip-size", "64", "--overlap", "0", "--points-per-side", "4",
        "--threshold", "1", "-q"]  # fmt: skip


#: Name prefix of a run's hidden work folder beside its outputs.
WORK_PREFIX = ".rs-sam-"


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every file and folder under ``folder`` (hidden ones too) with its bytes."""
    return {
        str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None
        for p in sorted(folder.rglob("*"))
    }


@pytest.fixture
def big_pair(tmp_path: Path) -> tuple[Path, Path]:
    image = (texture(768, 768, seed=1) * 200 + 20).astype(np.uint8)
    a = write_raster(tmp_path / "a.tif", image)
    b = write_raster(tmp_path / "b.tif", paint_change(image, slice(60, 110), slice(80, 140), 250))
    return a, b


def start_run(folder: Path, a: Path, b: Path) -> subprocess.Popen[str]:
    """detect-change in a child process; returns once it has finished its first chip."""
    env = {**os.environ, "RS_SAM_PROGRESS": "lines", "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen(
        [sys.executable, str(TINY_CLI), "-m", "rs_sam.cli", "detect-change", str(a), str(b),
         "-o", str(folder / "out.gpkg"), "--save-probability", str(folder / "score.tif"),
         "--overwrite", *SLOW],
        stderr=subprocess.PIPE, text=True, env=env, cwd=folder,
        # a suite started in the background inherits an ignored SIGINT, which Python keeps
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    assert child.stderr is not None
    deadline = time.monotonic() + 180
    for line in child.stderr:
        if line.startswith("rs-sam-progress 1 "):
            total = int(line.split()[2])
            assert total > 50  # far from done when the signal comes
            return child
        assert time.monotonic() < deadline, "no progress from the child"
    child.wait()
    pytest.fail(f"the child ended before its first chip (exit {child.returncode})")


def test_sigint_cancels_with_exit_130_and_leaves_nothing(tmp_path: Path, big_pair) -> None:
    (tmp_path / "out.gpkg").write_bytes(b"precious vector")
    before = snapshot(tmp_path)
    child = start_run(tmp_path, *big_pair)
    assert any(p.name.startswith(WORK_PREFIX) for p in tmp_path.iterdir())  # mid-run
    child.send_signal(signal.SIGINT)
    _, rest = child.communicate(timeout=120)
    lines = [line for line in rest.splitlines() if not line.startswith("rs-sam-progress")]
    assert child.returncode == 130, rest
    assert set(lines) == {"Error: cancelled; no output was written"}, rest  # SIGINT may land twice
    assert snapshot(tmp_path) == before


def test_work_folder_of_a_killed_run_is_removed_by_the_next_run(
    tmp_path: Path, big_pair, tiny_encoder, tmp_path_factory: pytest.TempPathFactory
) -> None:
    (tmp_path / "out.gpkg").write_bytes(b"precious vector")
    before = snapshot(tmp_path)
    child = start_run(tmp_path, *big_pair)
    child.kill()
    child.communicate(timeout=60)
    assert child.returncode == -signal.SIGKILL
    stale = [p.name for p in tmp_path.iterdir() if p.name.startswith(WORK_PREFIX)]
    assert stale == [f"{WORK_PREFIX}{child.pid}-{stale[0].rsplit('-', 1)[1]}"]  # left behind
    assert {k: v for k, v in snapshot(tmp_path).items() if not k.startswith(WORK_PREFIX)} == before

    # The next run writing to that folder (a small one) removes the dead run's work folder.
    small = tmp_path_factory.mktemp("small-inputs")
    image = (texture(96, 96, seed=2) * 200 + 20).astype(np.uint8)
    a, b = write_raster(small / "a.tif", image), write_raster(small / "b.tif", image[:, ::-1])
    result = CliRunner().invoke(
        cli, ["detect-change", str(a), str(b), "-o", str(tmp_path / "next.gpkg"), *SLOW]
    )
    assert result.exit_code == 0, result.output
    after = snapshot(tmp_path)
    assert sorted(after) == sorted([*before, "next.gpkg"])
    assert after["out.gpkg"] == before["out.gpkg"]
