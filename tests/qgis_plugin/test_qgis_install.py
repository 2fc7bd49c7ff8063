"""``rs-sam qgis install/uninstall``: plugin copy/link, interpreter record, QGIS3.ini edits."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from rs_sam import __version__, qgis_profile
from rs_sam.cli.main import cli
from rs_sam.errors import ConfigError, OutputExistsError
from rs_sam.qgis_profile import (
    PLUGIN_NAME,
    install_plugin,
    interpreter_record_path,
    profiles_root,
    settings_ini_path,
    uninstall_plugin,
)


@pytest.fixture
def source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake plugin source folder, also returned by ``plugin_source()``."""
    src = tmp_path / "src" / "qgis_plugin"
    (src / "__pycache__").mkdir(parents=True)
    (src / "__init__.py").write_text("def classFactory(iface):\n    return None\n")
    (src / "metadata.txt").write_text("[general]\nname=rs-sam\nversion=1\n")
    (src / "provider.py").write_text("VERSION = 1\n")
    (src / "__pycache__" / "provider.cpython-311.pyc").write_bytes(b"\0")
    monkeypatch.setattr(qgis_profile, "plugin_source", lambda: src)
    return src


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "profiles"


def test_install_copies_records_and_enables(source: Path, root: Path) -> None:
    dest = install_plugin(profiles_dir=root)  # "default" is created when missing
    profile = root / "default"
    assert dest == profile / "python" / "plugins" / PLUGIN_NAME
    assert not dest.is_symlink()
    assert sorted(p.name for p in dest.iterdir()) == [
        "__init__.py", "metadata.txt", "options.py", "provider.py", "pseudo_label_options.py"
    ]  # fmt: skip
    assert (dest / "provider.py").read_text() == "VERSION = 1\n"
    # the option table the plugin's parameters are generated from travels with it
    assert (dest / "options.py").read_bytes() == qgis_profile.option_table_source().read_bytes()
    record = interpreter_record_path(profile)
    assert record == dest.parents[2] / "rs_sam" / "interpreter.json"
    assert json.loads(record.read_text()) == {
        "python": str(Path(sys.executable).absolute()),
        "rs_sam_version": __version__,
    }
    assert settings_ini_path(profile).read_text() == f"[PythonPlugins]\n{PLUGIN_NAME}=true\n"
    assert not [p for p in dest.parent.iterdir() if p.name != PLUGIN_NAME]  # no temp leftovers


def test_ini_is_preserved_except_our_line(source: Path, root: Path) -> None:
    ini = settings_ini_path(root / "work")
    ini.parent.mkdir(parents=True)
    before = (
        "[General]\r\n"
        "locale=de\r\n"
        "\r\n"
        "[PythonPlugins]\r\n"
        "processing=true\r\n"
        f"{PLUGIN_NAME}=false\r\n"
        "db_manager=true\r\n"
        "\r\n"
        "[app]\r\n"
        "geometry=@ByteArray(\\x1\\xd9\\xd0\\xcb)\r\n"
        "caf\xe9=\u00fc\r\n"
    )
    ini.write_bytes(before.encode("utf-8"))
    install_plugin("work", profiles_dir=root)
    after = ini.read_bytes().decode("utf-8")
    assert after == before.replace(f"{PLUGIN_NAME}=false", f"{PLUGIN_NAME}=true")

    uninstall_plugin("work", profiles_dir=root)
    assert ini.read_bytes().decode("utf-8") == before.replace(f"{PLUGIN_NAME}=false\r\n", "")


def test_ini_gets_line_in_existing_section_or_a_new_section(source: Path, root: Path) -> None:
    for name, before, expected in [
        (
            "a",
            "[PythonPlugins]\nprocessing=true\n\n[app]\nx=1\n",
            f"[PythonPlugins]\nprocessing=true\n{PLUGIN_NAME}=true\n\n[app]\nx=1\n",
        ),
        ("b", "[app]\nx=1", f"[app]\nx=1\n\n[PythonPlugins]\n{PLUGIN_NAME}=true\n"),
    ]:
        ini = settings_ini_path(root / name)
        ini.parent.mkdir(parents=True)
        ini.write_text(before)
        install_plugin(name, profiles_dir=root)
        assert ini.read_text() == expected
        uninstall_plugin(name, profiles_dir=root)
        assert PLUGIN_NAME not in ini.read_text()


def test_install_twice_needs_overwrite(source: Path, root: Path) -> None:
    dest = install_plugin(profiles_dir=root)
    (source / "provider.py").write_text("VERSION = 2\n")
    with pytest.raises(OutputExistsError, match=r"already installed at .*pass --overwrite"):
        install_plugin(profiles_dir=root)
    assert (dest / "provider.py").read_text() == "VERSION = 1\n"

    (dest / "stale.py").write_text("")
    assert install_plugin(profiles_dir=root, overwrite=True) == dest
    assert (dest / "provider.py").read_text() == "VERSION = 2\n"
    assert not (dest / "stale.py").exists()
    assert [p.name for p in dest.parent.iterdir()] == [PLUGIN_NAME]


def test_link_and_uninstall_keep_the_source(source: Path, root: Path) -> None:
    dest = install_plugin(profiles_dir=root, link=True)
    assert dest.is_symlink()
    assert dest.resolve() == source.resolve()
    uninstall_plugin(profiles_dir=root)
    assert not dest.exists() and not dest.is_symlink()
    assert (source / "provider.py").read_text() == "VERSION = 1\n"
    assert not interpreter_record_path(root / "default").exists()
    assert PLUGIN_NAME not in settings_ini_path(root / "default").read_text()


def test_a_broken_link_counts_as_installed(source: Path, root: Path, tmp_path: Path) -> None:
    moved = tmp_path / "moved"
    dest = install_plugin(profiles_dir=root, link=True)
    source.rename(moved)  # the developer's checkout moved away: a dangling link
    with pytest.raises(OutputExistsError):
        install_plugin(profiles_dir=root, source=moved)
    assert install_plugin(profiles_dir=root, source=moved, overwrite=True) == dest
    assert not dest.is_symlink() and (dest / "metadata.txt").is_file()
    install_plugin(profiles_dir=root, source=moved, link=True, overwrite=True)
    moved.rename(tmp_path / "gone")
    uninstall_plugin(profiles_dir=root)
    assert not dest.is_symlink()


def test_overwrite_replaces_a_link_by_a_copy_without_touching_the_source(
    source: Path, root: Path
) -> None:
    install_plugin(profiles_dir=root, link=True)
    dest = install_plugin(profiles_dir=root, overwrite=True)
    assert not dest.is_symlink() and (dest / "metadata.txt").is_file()
    assert sorted(p.name for p in source.iterdir()) == [
        "__init__.py",
        "__pycache__",
        "metadata.txt",
        "provider.py",
    ]


def test_uninstall_not_installed(source: Path, root: Path) -> None:
    (root / "default").mkdir(parents=True)
    with pytest.raises(ConfigError, match="not installed in QGIS profile 'default'"):
        uninstall_plugin(profiles_dir=root)


def test_missing_profile_names_the_existing_ones(source: Path, root: Path) -> None:
    (root / "default").mkdir(parents=True)
    (root / "work").mkdir()
    with pytest.raises(ConfigError, match=r"'gis' not found .*existing profiles: default, work"):
        install_plugin("gis", profiles_dir=root)
    assert not (root / "gis").exists()
    with pytest.raises(ConfigError, match="invalid QGIS profile name"):
        install_plugin("../x", profiles_dir=root)


def test_bad_python_and_bad_source(source: Path, root: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not executable; pass --python"):
        install_plugin(profiles_dir=root, python=tmp_path / "nope" / "python")
    (source / "metadata.txt").unlink()
    with pytest.raises(ConfigError, match=r"has no metadata\.txt"):
        install_plugin(profiles_dir=root)
    assert not (root / "default" / "python" / "plugins" / PLUGIN_NAME).exists()


def test_profiles_root_honours_qgis_custom_config_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QGIS_CUSTOM_CONFIG_PATH", str(tmp_path / "portable"))
    assert profiles_root() == tmp_path / "portable" / "profiles"
    assert profiles_root(tmp_path / "explicit") == tmp_path / "explicit"
    monkeypatch.delenv("QGIS_CUSTOM_CONFIG_PATH")
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert profiles_root() == tmp_path / "home" / ".local/share/QGIS/QGIS3/profiles"


def test_cli_install_uninstall(
    source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QGIS_CUSTOM_CONFIG_PATH", str(tmp_path / "portable"))
    runner = CliRunner()
    result = runner.invoke(cli, ["qgis", "install"])
    assert result.exit_code == 0, result.output
    dest = tmp_path / "portable" / "profiles" / "default" / "python" / "plugins" / PLUGIN_NAME
    assert (dest / "metadata.txt").is_file()
    assert str(dest) in result.output
    assert "Processing Toolbox > rs-sam" in result.output

    result = runner.invoke(cli, ["qgis", "install"])
    assert result.exit_code == OutputExistsError.exit_code
    assert "pass --overwrite" in result.output
    assert "Traceback" not in result.output
    assert runner.invoke(cli, ["qgis", "install", "--overwrite"]).exit_code == 0

    result = runner.invoke(cli, ["qgis", "uninstall"])
    assert result.exit_code == 0, result.output
    assert not dest.exists()
    result = runner.invoke(cli, ["qgis", "uninstall"])
    assert result.exit_code == ConfigError.exit_code
    assert "not installed" in result.output


def test_cli_profile_python_and_link(source: Path, root: Path, tmp_path: Path) -> None:
    (root / "work").mkdir(parents=True)
    runner = CliRunner()
    args = ["qgis", "install", "--profiles-dir", str(root), "--profile"]
    result = runner.invoke(cli, [*args, "gis"])
    assert result.exit_code == ConfigError.exit_code
    assert "existing profiles: work" in result.output

    python = tmp_path / "venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text("#!/bin/sh\n")
    python.chmod(0o755)
    result = runner.invoke(cli, [*args, "work", "--python", str(python), "--link"])
    assert result.exit_code == 0, result.output
    assert (root / "work" / "python" / "plugins" / PLUGIN_NAME).is_symlink()
    record = json.loads(interpreter_record_path(root / "work").read_text())
    assert record["python"] == str(python)
