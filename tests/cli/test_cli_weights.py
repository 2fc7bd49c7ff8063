"""``rs-sam weights``: list, fetch, verify, where (CliRunner, offline, private home)."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from rs_sam.checkpoints import CheckpointSpec
from rs_sam.cli.main import cli
from rs_sam.models.encoders import ENCODERS, get_encoder, list_encoders


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("RS_SAM_HOME", str(home))
    monkeypatch.setenv("RS_SAM_OFFLINE", "1")
    return home


def run(*args: str):
    return CliRunner().invoke(cli, ["weights", *args])


@pytest.fixture(scope="module")
def vit_b_like_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ViT key names (tiny build) with the ViT-B patch-embedding width."""
    spec = get_encoder("sam_vit_b")
    state_dict = spec.builder(spec, tiny=True).sam.state_dict()
    state_dict["image_encoder.patch_embed.proj.weight"] = torch.zeros(768, 3, 16, 16)
    path = tmp_path_factory.mktemp("cli") / "finetuned_vit_b.pth"
    torch.save(state_dict, path)
    return path


def test_list_shows_every_encoder_and_cache_state(isolated_home: Path) -> None:
    result = run("list")
    assert result.exit_code == 0, result.output
    for name in list_encoders():
        assert name in result.output and get_encoder(name).checkpoint.filename in result.output
    assert "AGPL-3.0" in result.output and "Apache-2.0" in result.output
    assert " yes" not in result.output
    cached = isolated_home / "checkpoints" / "mobile_sam.pt"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"x")
    line = next(ln for ln in run("list").output.splitlines() if ln.startswith("mobile_sam"))
    assert line.endswith("yes")


def test_where_prints_the_home(isolated_home: Path) -> None:
    result = run("where")
    assert result.exit_code == 0
    assert str(isolated_home / "checkpoints") in result.output
    assert "offline:     yes" in result.output


def test_fetch_offline_is_a_one_line_error(isolated_home: Path) -> None:
    result = run("fetch", "sam_vit_b")
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ")
    assert get_encoder("sam_vit_b").checkpoint.url in lines[0]
    assert str(isolated_home / "checkpoints" / "sam_vit_b_01ec64.pth") in lines[0]
    assert "Traceback" not in result.output


def test_fetch_unknown_name_lists_choices() -> None:
    result = run("fetch", "sam_vit_z")
    assert result.exit_code == 2
    assert "choose one of: mobile_sam" in result.output


def test_fetch_downloads_into_the_cache(
    served: tuple[str, Path], isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, root = served
    data = os.urandom(100_000)
    (root / "m.pt").write_bytes(data)
    spec = dataclasses.replace(
        get_encoder("mobile_sam"),
        checkpoint=CheckpointSpec(
            f"{url}/m.pt", "m.pt", len(data), hashlib.sha256(data).hexdigest()
        ),
    )
    monkeypatch.setitem(ENCODERS, "mobile_sam", spec)
    result = run("fetch", "mobile_sam")
    assert result.exit_code == 0, result.output
    target = isolated_home / "checkpoints" / "m.pt"
    assert result.stdout.strip() == str(target)
    assert target.read_bytes() == data


def test_verify_identifies_a_file(vit_b_like_file: Path) -> None:
    result = run("verify", str(vit_b_like_file))
    assert result.exit_code == 0, result.output
    assert "identified: sam_vit_b" in result.output
    assert hashlib.sha256(vit_b_like_file.read_bytes()).hexdigest() in result.output


def test_verify_against_the_wrong_encoder_fails(vit_b_like_file: Path) -> None:
    result = run("verify", str(vit_b_like_file), "--encoder", "mobile_sam")
    assert result.exit_code == 2
    assert "published size" in result.output or "not a 'mobile_sam'" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_verify_refuses_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self) -> tuple:
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pt"
    torch.save({"x": Evil()}, path)
    result = run("verify", str(path))
    assert result.exit_code == 2
    assert "refused" in result.output and not marker.exists()


def test_verify_missing_file(tmp_path: Path) -> None:
    result = run("verify", str(tmp_path / "nope.pt"))
    assert result.exit_code == 2  # a file the user named: bad input (issue 12, item 8)
    assert "does not exist" in result.output and "Traceback" not in result.output
