"""The checkpoints package on its own: no encoder registry, key wording, inspection, hints."""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

import pytest
import torch

import rs_sam.checkpoints as checkpoints_pkg
from rs_sam.checkpoints import (
    CheckpointSpec,
    compare_keys,
    identified_hint,
    identify_checkpoint,
    inspect_checkpoint,
    load_any_state_dict,
)
from rs_sam.errors import CheckpointError, CheckpointNotFoundError

ALLOWED = ("rs_sam.checkpoints", "rs_sam.errors")


def _runtime_imports(tree: ast.Module) -> list[str]:
    """Modules imported outside ``if TYPE_CHECKING:`` blocks, lazily or not."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(child) for stmt in node.body for child in ast.walk(stmt)}
    found = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
    return found


def test_checkpoints_package_imports_only_lower_layers() -> None:
    """Nothing in rs_sam/checkpoints/ imports the models (or anything above), even lazily."""
    folder = Path(checkpoints_pkg.__file__).parent
    upward = [
        f"{path.name}: {name}"
        for path in sorted(folder.glob("*.py"))
        for name in _runtime_imports(ast.parse(path.read_text(encoding="utf-8")))
        if name.startswith("rs_sam") and not name.startswith(ALLOWED)
    ]
    assert upward == []


def _vit_b_file(tmp_path: Path) -> Path:
    path = tmp_path / "weights.pth"
    torch.save({"image_encoder.patch_embed.proj.weight": torch.zeros(768, 3, 16, 16)}, path)
    return path


def test_inspect_checkpoint_checks_published_figures_and_identifies(tmp_path: Path) -> None:
    path = _vit_b_file(tmp_path)
    size, sha = path.stat().st_size, hashlib.sha256(path.read_bytes()).hexdigest()
    unchecked = inspect_checkpoint(path, name="ignored without figures")
    assert unchecked.identified == "sam_vit_b" and unchecked.checked_against is None
    assert (unchecked.size, unchecked.sha256, unchecked.n_tensors) == (size, sha, 1)
    assert unchecked.n_values == 768 * 3 * 16 * 16 and unchecked.expected_size is None
    report = inspect_checkpoint(path, CheckpointSpec("u", "f", size, sha), name="sam_vit_b")
    assert report.checked_against == "sam_vit_b"
    assert (report.expected_size, report.expected_sha256) == (size, sha)
    with pytest.raises(CheckpointError, match="but the published one is 00"):
        inspect_checkpoint(path, CheckpointSpec("u", "f", size, "00" * 32), name="x")
    with pytest.raises(CheckpointNotFoundError, match="does not exist"):
        inspect_checkpoint(tmp_path / "absent.pth")


def test_load_any_state_dict_reads_plain_files(tmp_path: Path) -> None:
    state_dict = load_any_state_dict(_vit_b_file(tmp_path))
    assert identify_checkpoint(state_dict) == "sam_vit_b"


def test_identified_hint_wording() -> None:
    assert identified_hint(None, "mobile_sam") == (
        "it matches no known checkpoint: check that the file is the right one"
    )
    assert identified_hint("mobile_sam", "mobile_sam") == (
        "it looks like a 'mobile_sam' checkpoint, but partial or modified"
    )
    assert identified_hint("sam_vit_b", "mobile_sam") == (
        "it looks like a 'sam_vit_b' checkpoint: use encoder 'sam_vit_b'"
    )


def test_key_mismatch_lists_each_kind_once() -> None:
    expected = {"a": torch.zeros(1), "b": torch.zeros(3)}
    assert not compare_keys(expected, expected) and str(compare_keys(expected, expected)) == (
        "keys match"
    )
    mismatch = compare_keys(expected, {"b": torch.zeros(2), "c": torch.zeros(1)})
    assert mismatch.missing == ("a",) and mismatch.unexpected == ("c",)
    assert str(mismatch) == (
        "1 missing keys (a); 1 unexpected keys (c); 1 shape mismatches (b (2,) != (3,))"
    )
    many = compare_keys({f"k{i}": torch.zeros(1) for i in range(6)}, {})
    assert str(many) == "6 missing keys (k0, k1, k2, k3, ... (6 in all))"
