"""The installed package: every subpackage is listed in pyproject.toml, so a non-editable
install (a wheel) has every module that an editable checkout imports."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_subpackage_is_listed_in_pyproject() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    listed = set(config["tool"]["setuptools"]["packages"])
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "rs_sam").rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    found.add("rs_sam.cli")  # cli/ is installed as rs_sam.cli
    assert sorted(found - listed) == [], "add these to [tool.setuptools] packages"
    assert sorted(listed - found) == [], "these listed packages do not exist"
