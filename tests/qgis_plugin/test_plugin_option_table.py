"""The installed plugin's parameters come from rs_sam/options.py, in a Python without rs_sam."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rs_sam.options import COMMANDS
from rs_sam.qgis_plugin import specs
from rs_sam.qgis_profile import PLUGIN_NAME, install_plugin

#: Run by `python -I -S`: no site-packages (no rs_sam, no torch), only the plugins folder.
PROBE = """
import json, sys
sys.path.insert(0, sys.argv[1])
from rs_sam_processing import specs
print(json.dumps({
    "table": specs.options.__name__,
    "defaults": {s.name: {p.name: p.default for p in s.params} for s in specs.ALGORITHMS},
    "args": specs.cli_arguments(specs.SAM_OBJECTS, {"source": "a.tif", "output": "o.tif",
                                                     "min_area": "0", "overwrite": True}),
    "imported": sorted(m for m in sys.modules if m.split(".")[0] in ("rs_sam", "torch")),
}))
"""


@pytest.mark.parametrize("link", [False, True], ids=["copy", "link"])
def test_installed_plugin_specs_load_without_rs_sam(tmp_path: Path, link: bool) -> None:
    install_plugin(profiles_dir=tmp_path, link=link)
    plugins = tmp_path / "default" / "python" / "plugins"
    assert (plugins / PLUGIN_NAME / "options.py").is_file() is not link
    done = subprocess.run([sys.executable, "-I", "-S", "-c", PROBE, str(plugins)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["imported"] == []
    assert report["table"] == (
        "rs_sam_processing._options" if link else "rs_sam_processing.options"
    )
    expected = {s.name: {p.name: p.default for p in s.params} for s in specs.ALGORITHMS}
    assert report["defaults"] == expected
    assert report["defaults"]["sam_objects"]["PRED_IOU_THRESH"] == 0.96
    assert report["args"] == ["sam-objects", "a.tif", "--min-area", "0", "--overwrite",
                              "--output", "o.tif"]  # fmt: skip


def test_specs_are_the_option_table() -> None:
    for spec in specs.ALGORITHMS:
        table = COMMANDS[spec.name]
        assert spec.command == table.cli_name
        offered = [o for o in table.options if not o.cli_only]  # QGIS runs locally
        assert [p.key for p in spec.params] == [o.name for o in offered]
        assert [p.flag for p in spec.params] == [o.flag for o in offered]
        assert "cluster" not in [p.key for p in spec.params]
    assert (
        specs.SEGMENT.param("INPUT").key == "image"
        and specs.DETECT_CHANGE.param("PROBABILITY").flag == "--save-probability"
    )
