"""Every CLI failure is one line with its exit code; ``-v`` adds the traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from rs_sam.cli.main import cli
from rs_sam.segmentation import anything


@pytest.fixture
def image(tmp_path: Path) -> Path:
    import numpy as np

    from tests.helpers.synthetic import texture, write_raster

    return write_raster(tmp_path / "img.tif", (texture(64, 64) * 60 + 100).astype(np.uint8))


def _segment(image: Path, tmp_path: Path, *extra: str):
    args = ["segment", str(image), "-o", str(tmp_path / "o.gpkg"), "--weights", "random", *extra]
    return CliRunner().invoke(cli, args)


def test_an_internal_error_is_one_line_with_exit_1(
    image: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args, **kwargs):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(anything, "segment_anything", broken)
    result = _segment(image, tmp_path, "-q")
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    assert "internal error (ZeroDivisionError: division by zero)" in lines[0]
    assert "-v" in lines[0] and not (tmp_path / "o.gpkg").exists()


def test_verbose_shows_the_traceback_of_an_internal_error(
    image: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args, **kwargs):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(anything, "segment_anything", broken)
    result = _segment(image, tmp_path, "-v")
    assert result.exit_code == 1
    assert "Traceback (most recent call last)" in result.output and "broken" in result.output
    assert result.output.strip().splitlines()[-1].startswith("Error: internal error")


def test_verbose_shows_the_traceback_of_bad_input(image: Path, tmp_path: Path) -> None:
    quiet = _segment(image, tmp_path, "--chip-size", "8", "-q")
    loud = _segment(image, tmp_path, "--chip-size", "8", "-v")
    assert quiet.exit_code == loud.exit_code == 2
    assert "Traceback" not in quiet.output and len(quiet.output.strip().splitlines()) == 1
    assert "Traceback (most recent call last)" in loud.output
    assert loud.output.strip().splitlines()[-1] == quiet.output.strip()
