"""read_torch_file: unsafe pickles say they contain code, damaged files say what is wrong."""

from __future__ import annotations

import io
import os
import pickle
import pickletools
from pathlib import Path

import pytest
import torch

from rs_sam.checkpoints import (
    TRUSTED_ADAPTER,
    TRUSTED_CHECKPOINT,
    load_any_state_dict,
    load_state_dict,
    read_torch_file,
)
from rs_sam.checkpoints.pickle_scan import scan_torch_file
from rs_sam.checkpoints.torch_file import unsafe_names
from rs_sam.errors import CheckpointError


class RunsCode:
    """Runs a shell command when unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


def _write(path: Path, payload: object, how: str) -> Path:
    if how == "zip":
        torch.save(payload, path)
    elif how == "legacy":
        torch.save(payload, path, _use_new_zipfile_serialization=False)
    else:  # a plain pickle of the given protocol, never written by torch.save
        with path.open("wb") as f:
            pickle.dump(payload, f, protocol=int(how.removeprefix("pickle")))
    return path


FORMATS = ["zip", "legacy", "pickle0", "pickle2", "pickle4", "pickle5"]


@pytest.mark.parametrize("how", FORMATS)
@pytest.mark.parametrize("top_level", [False, True], ids=["inside", "top"])
def test_code_is_refused_as_code_in_every_format(tmp_path: Path, how: str, top_level: bool) -> None:
    marker = tmp_path / "pwned"
    evil = RunsCode(marker)
    payload = evil if top_level else {"w": torch.zeros(2), "hook": evil}
    path = _write(tmp_path / "evil.pth", payload, how)
    for read in (
        lambda p: read_torch_file(p, kind="checkpoint", trusted=TRUSTED_CHECKPOINT),
        load_state_dict,
        load_any_state_dict,
    ):
        with pytest.raises(CheckpointError) as info:
            read(path)
        text = str(info.value)
        assert text.startswith(f"refused: {path} contains code (pickled os.system"), text
        assert f"that rs-sam will not run; use {TRUSTED_CHECKPOINT}" in text
        assert "weights_only" not in text and "corrupt" not in text and "\n" not in text
    assert not marker.exists()


def test_the_trusted_source_is_the_callers(tmp_path: Path) -> None:
    path = _write(tmp_path / "evil.pt", {"x": RunsCode(tmp_path / "m")}, "legacy")
    with pytest.raises(CheckpointError, match=r"will not run; use an adapter written by rs-sam"):
        read_torch_file(path, kind="LoRA adapter", trusted=TRUSTED_ADAPTER)


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        ("empty", "the file is empty"),
        ("text", "it is not a PyTorch file (neither a zip archive nor a pickle)"),
        ("garbage", "it is not a PyTorch file (neither a zip archive nor a pickle)"),
        ("truncated zip", "it is truncated or damaged (a broken zip archive)"),
        ("truncated legacy", "it is truncated (its data ends early)"),
        ("plain pickle", "it is a plain pickle, not a file written by torch.save"),
    ],
)
def test_damaged_files_say_what_is_wrong(tmp_path: Path, damage: str, reason: str) -> None:
    good = {"weight": torch.arange(4000.0), "bias": torch.zeros(3)}
    zipped = _write(tmp_path / "good.pt", good, "zip").read_bytes()
    legacy = _write(tmp_path / "old.pt", good, "legacy").read_bytes()
    path = tmp_path / "bad.pt"
    path.write_bytes(
        {
            "empty": b"",
            "text": b"this is not a checkpoint\n",
            "garbage": bytes(range(256)) * 8,
            "truncated zip": zipped[: len(zipped) // 2],
            "truncated legacy": legacy[:300],
            "plain pickle": pickle.dumps({"w": 1.5}, protocol=4),
        }[damage]
    )
    with pytest.raises(CheckpointError) as info:
        read_torch_file(path, kind="checkpoint", trusted=TRUSTED_CHECKPOINT)
    text = str(info.value)
    assert text == f"{path} is not a readable checkpoint: {reason}; use {TRUSTED_CHECKPOINT}"


def test_a_folder_cannot_be_read(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"cannot be read \(Is a directory\)"):
        read_torch_file(tmp_path, kind="checkpoint", trusted=TRUSTED_CHECKPOINT)


def test_good_files_in_both_formats_load(tmp_path: Path) -> None:
    for how in ("zip", "legacy"):
        path = _write(tmp_path / f"{how}.pt", {"w": torch.ones(3)}, how)
        loaded = read_torch_file(path, kind="checkpoint", trusted=TRUSTED_CHECKPOINT)
        torch.testing.assert_close(loaded["w"], torch.ones(3))


def test_scan_lists_globals_without_running_them(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payload = {"a": RunsCode(marker), "b": RunsCode(marker), "c": eval, "w": torch.zeros(1)}
    for how in ("zip", "legacy", "pickle2", "pickle4"):
        scan = scan_torch_file(_write(tmp_path / f"{how}.pt", payload, how))
        assert "posix.system" in scan.names or "nt.system" in scan.names, (how, scan)
        assert any(name.endswith(".eval") for name in scan.names), (how, scan)
        assert len(unsafe_names(scan.names)) >= 2
        assert scan.torch_file == (how in ("zip", "legacy"))
    assert not marker.exists()


def test_scan_follows_memoised_stack_globals(tmp_path: Path) -> None:
    """Protocol 4 names a repeated global once, then fetches module and name from the memo."""
    data = pickle.dumps([os.system, os.system, print], protocol=4)
    ops = [op.name for op, _, _ in pickletools.genops(io.BytesIO(data))]
    assert ops.count("STACK_GLOBAL") == 2 and "BINGET" in ops
    path = tmp_path / "p.pkl"
    path.write_bytes(data)
    names = scan_torch_file(path).names
    assert names[0].endswith(".system") and names[1] == "builtins.print" and "?" not in names


def test_allowed_torch_globals_are_not_unsafe(tmp_path: Path) -> None:
    scan = scan_torch_file(_write(tmp_path / "ok.pt", {"w": torch.zeros(2)}, "legacy"))
    assert scan.names and scan.damage is None and scan.torch_file
    assert unsafe_names(scan.names) == []
