"""``rs-sam weights list/fetch sam3``: the gated SAM 3 repository, the user's Hugging Face token
(environment or token file), the one-line refusal, and the download (replaced: no network)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from rs_sam.checkpoints import hub
from rs_sam.cli.main import cli
from rs_sam.models.concepts import CONCEPT_MODELS

ACCESS = "https://huggingface.co/facebook/sam3"


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private rs-sam home, an empty Hugging Face home, no token, online, no real download."""
    home = tmp_path / "home"
    monkeypatch.setenv("RS_SAM_HOME", str(home))
    monkeypatch.delenv("RS_SAM_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)

    def no_network(**kwargs: object) -> str:
        raise AssertionError("the test tried to download")

    monkeypatch.setattr(hub, "_snapshot_download", no_network)
    return home


@pytest.fixture
def fake_download(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Replace huggingface_hub's download: record its arguments, write the two main files."""
    calls: list[dict] = []

    def download(**kwargs: object) -> str:
        calls.append(kwargs)
        folder = Path(str(kwargs["local_dir"]))
        (folder / "config.json").write_text("{}")
        (folder / "model.safetensors").write_bytes(b"x")
        return str(folder)

    monkeypatch.setattr(hub, "_snapshot_download", download)
    return calls


def run(*args: str):
    return CliRunner().invoke(cli, ["weights", *args])


def assert_gated_line(result, code: int = 1) -> None:
    assert result.exit_code == code, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    line = lines[0]
    for part in ("gated", ACCESS, "HF_TOKEN", "hf auth login", "--checkpoint FOLDER"):
        assert part in line, line


def test_list_shows_sam3_licence_and_gated(isolated: Path) -> None:
    result = run("list")
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if line.startswith("sam3 "))
    assert "facebook/sam3" in row and "SAM License (Meta) [gated]" in row
    assert row.rstrip().endswith("no")
    assert ACCESS in result.output and "rs-sam weights fetch sam3" in result.output
    folder = isolated / "checkpoints" / "sam3"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"x")
    row = next(line for line in run("list").output.splitlines() if line.startswith("sam3 "))
    assert row.rstrip().endswith("yes")


def test_fetch_without_token_is_one_line() -> None:
    assert_gated_line(run("fetch", "sam3"))


def test_fetch_offline_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    monkeypatch.setenv("RS_SAM_OFFLINE", "1")
    result = run("fetch", "sam3")
    assert_gated_line(result)
    assert "RS_SAM_OFFLINE" in result.output and "hf_secret" not in result.output


def test_fetch_uses_the_env_token(isolated: Path, fake_download, monkeypatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_from_env")
    result = run("fetch", "sam3")
    assert result.exit_code == 0, result.output
    folder = isolated / "checkpoints" / "sam3"
    assert result.output.strip() == str(folder)
    (call,) = fake_download
    assert call["token"] == "hf_from_env" and call["repo_id"] == "facebook/sam3"
    assert call["local_dir"] == str(folder)
    assert set(call["allow_patterns"]) == set(CONCEPT_MODELS["sam3"].files)
    assert run("fetch", "sam3").exit_code == 0 and len(fake_download) == 1  # cached now


def test_fetch_uses_the_token_file(tmp_path: Path, fake_download) -> None:
    token_file = tmp_path / "hf" / "token"
    token_file.parent.mkdir(parents=True)
    token_file.write_text("hf_from_file\n")
    assert run("fetch", "sam3").exit_code == 0
    assert fake_download[0]["token"] == "hf_from_file"


def test_token_discovery_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert hub.find_hf_token() is None
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "token").write_text("from_file")
    assert hub.find_hf_token() == "from_file"
    monkeypatch.setenv("HF_TOKEN_PATH", str(tmp_path / "elsewhere"))
    assert hub.find_hf_token() is None
    (tmp_path / "elsewhere").write_text("from_path")
    assert hub.find_hf_token() == "from_path"
    monkeypatch.setenv("HUGGING_FACE_HUB_TOKEN", "legacy")
    assert hub.find_hf_token() == "legacy"
    monkeypatch.setenv("HF_TOKEN", "current")
    assert hub.find_hf_token() == "current"


def test_refused_download_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_no_access")

    def refused(**kwargs: object) -> str:
        raise RuntimeError("403 Client Error:\nAccess to model facebook/sam3 is restricted")

    monkeypatch.setattr(hub, "_snapshot_download", refused)
    result = run("fetch", "sam3")
    assert_gated_line(result)
    assert "restricted" in result.output and "hf_no_access" not in result.output
