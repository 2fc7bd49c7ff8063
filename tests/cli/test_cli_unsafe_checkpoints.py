"""Unsafe, damaged and unidentifiable checkpoints through the CLI: exit 2, one true line."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from rs_sam.cli.main import cli
from tests.helpers.synthetic import texture, write_raster


class RunsCode:
    """Creates a marker file when unpickled (a stand-in for any malicious payload)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RS_SAM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RS_SAM_OFFLINE", "1")


def run(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result.exit_code, result.output


def evil_file(tmp_path: Path, fmt: str) -> Path:
    path = tmp_path / f"evil_{fmt}.pth"
    payload = {"image_encoder.w": torch.zeros(2), "hook": RunsCode(tmp_path / "pwned")}
    torch.save(payload, path, _use_new_zipfile_serialization=fmt == "zip")
    return path


def error_line(code: int, text: str) -> str:
    """The one error line of a run that must exit 2 (and print no traceback)."""
    assert code == 2, text
    errors = [line for line in text.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "Traceback" not in text, text
    return errors[0]


def assert_says_code(line: str, path: Path, trusted: str) -> None:
    assert f"refused: {path} contains code (pickled os.system" in line, line
    assert "rs-sam will not run" in line and trusted in line, line
    assert "weights_only" not in line and "corrupt" not in line, line


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_weights_verify_says_the_file_contains_code(tmp_path: Path, fmt: str) -> None:
    path = evil_file(tmp_path, fmt)
    line = error_line(*run("weights", "verify", path))
    assert_says_code(line, path, "rs-sam weights fetch")
    assert not (tmp_path / "pwned").exists()


def test_weights_verify_says_a_truncated_legacy_file_is_truncated(tmp_path: Path) -> None:
    path = tmp_path / "old.pth"
    torch.save({"w": torch.zeros(1000)}, path, _use_new_zipfile_serialization=False)
    path.write_bytes(path.read_bytes()[:200])
    line = error_line(*run("weights", "verify", path))
    assert f"{path} is not a readable checkpoint: it is truncated" in line, line
    assert "contains code" not in line


def test_weights_verify_fails_for_a_file_it_cannot_identify(tmp_path: Path) -> None:
    unknown = tmp_path / "unknown.pth"
    torch.save({"backbone.conv.weight": torch.zeros(8, 3, 3, 3)}, unknown)
    line = error_line(*run("weights", "verify", unknown))
    assert f"{unknown} holds 1 tensors that match no checkpoint rs-sam knows" in line, line

    known = tmp_path / "vit_b_like.pth"  # the ViT-B patch embedding alone identifies it
    torch.save({"image_encoder.patch_embed.proj.weight": torch.zeros(768, 3, 16, 16)}, known)
    code, text = run("weights", "verify", known)
    assert code == 0 and "identified: sam_vit_b" in text, text


@pytest.fixture
def image(tmp_path: Path) -> Path:
    return write_raster(tmp_path / "img.tif", (texture(64, 64) * 60 + 100).astype(np.uint8))


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_segment_checkpoint_that_contains_code(tmp_path: Path, image: Path, fmt: str) -> None:
    path = evil_file(tmp_path, fmt)
    out = tmp_path / "o.gpkg"
    line = error_line(*run("segment", image, "-o", out, "--checkpoint", path, "-q"))
    assert_says_code(line, path, "rs-sam weights fetch")
    assert not out.exists() and not (tmp_path / "pwned").exists()


def test_segment_lora_that_contains_code(tmp_path: Path, image: Path) -> None:
    path = evil_file(tmp_path, "legacy")
    out = tmp_path / "o.gpkg"
    code, text = run("segment", image, "-o", out, "--weights", "random", "--lora", path, "-q")
    assert_says_code(error_line(code, text), path, "an adapter written by rs-sam train lora")
    assert not out.exists() and not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("command", ["segment", "detect-change"])
def test_model_that_contains_code(tmp_path: Path, image: Path, command: str) -> None:
    path = evil_file(tmp_path, "zip").rename(tmp_path / "evil.ckpt")
    out = tmp_path / "o.gpkg"
    inputs = [image] if command == "segment" else [image, image]
    code, text = run(command, *inputs, "-o", out, "--model", path, "-q")
    assert_says_code(error_line(code, text), path, "a .ckpt written by rs-sam train")
    assert not out.exists() and not (tmp_path / "pwned").exists()


def test_a_missing_checkpoint_file_is_bad_input(tmp_path: Path, image: Path) -> None:
    out = tmp_path / "o.gpkg"
    code, text = run("segment", image, "-o", out, "--checkpoint", tmp_path / "gone.pth", "-q")
    line = error_line(code, text)  # exit 2: a file the user named, not a missing download
    assert "gone.pth does not exist" in line and not out.exists()
