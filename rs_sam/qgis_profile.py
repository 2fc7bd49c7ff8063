"""Install the rs-sam QGIS plugin (a Processing provider) into a QGIS user profile.

No QGIS import here: this runs from the rs-sam environment, which usually cannot import
QGIS. The plugin runs inside QGIS's own Python and calls back into this environment
through the interpreter recorded at :func:`interpreter_record_path`.

Layout inside a profile folder ``<profiles root>/<profile>/``::

    python/plugins/rs_sam_processing/   the plugin (a copy, or a symlink with link=True);
                                        a copy gets rs_sam/options.py, the option table
    rs_sam/interpreter.json             {"python": ..., "rs_sam_version": ...}
    QGIS/QGIS3.ini                      [PythonPlugins] rs_sam_processing=true
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from rs_sam.errors import ConfigError, OutputExistsError

#: Folder name inside ``python/plugins/``; not ``rs_sam``, which would shadow the library.
PLUGIN_NAME = "rs_sam_processing"
#: Environment variable with which QGIS itself moves its settings (profiles in ``<it>/profiles``).
CUSTOM_CONFIG_ENV = "QGIS_CUSTOM_CONFIG_PATH"
_SECTION = "PythonPlugins"


def plugin_source() -> Path:
    """The plugin folder shipped in the installed rs-sam package."""
    return Path(__file__).parent / "qgis_plugin"


def option_table_source() -> Path:
    """``rs_sam/options.py``: the option table the plugin's parameters are generated from.

    Standard library only, so a copied plugin carries it and loads without rs_sam; a linked
    plugin finds it beside its source folder.
    """
    return Path(__file__).with_name("options.py")


def profiles_root(profiles_dir: Path | None = None) -> Path:
    """QGIS's profiles folder: ``profiles_dir``, else $QGIS_CUSTOM_CONFIG_PATH/profiles,
    else the operating system's default."""
    if profiles_dir is not None:
        return Path(profiles_dir).expanduser()
    custom = os.environ.get(CUSTOM_CONFIG_ENV)
    if custom:
        return Path(custom).expanduser() / "profiles"
    if sys.platform == "win32":
        appdata = os.environ.get("APPDATA")
        base = Path(appdata) if appdata else Path.home() / "AppData" / "Roaming"
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path.home() / ".local" / "share"
    return base / "QGIS" / "QGIS3" / "profiles"


def plugin_path(profile_dir: Path) -> Path:
    """Where the plugin is installed in a profile folder."""
    return profile_dir / "python" / "plugins" / PLUGIN_NAME


def interpreter_record_path(profile_dir: Path) -> Path:
    """The interpreter record: ``<plugin folder>/../../../rs_sam/interpreter.json``."""
    return profile_dir / "rs_sam" / "interpreter.json"


def settings_ini_path(profile_dir: Path) -> Path:
    """The profile's QGIS settings file, where plugins are enabled."""
    return profile_dir / "QGIS" / "QGIS3.ini"


def _profile_dir(profile: str, profiles_dir: Path | None, *, create_default: bool) -> Path:
    if not profile or profile in (".", "..") or any(sep in profile for sep in "/\\"):
        raise ConfigError(f"invalid QGIS profile name {profile!r}; pass a profile's folder name")
    root = profiles_root(profiles_dir)
    path = root / profile
    if path.is_dir():
        return path
    if profile == "default" and create_default:  # QGIS creates it on first start; so do we
        path.mkdir(parents=True)
        return path
    existing = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    listing = ", ".join(existing) if existing else "none"
    raise ConfigError(
        f"QGIS profile {profile!r} not found in {root} (existing profiles: {listing}); "
        "pass --profile with one of them, or create it in QGIS (Settings > User Profiles)"
    )


def _remove(path: Path) -> None:
    """Remove a file, a folder tree, or a symlink itself (never what it points to)."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def _check_python(python: str | os.PathLike[str] | None) -> Path:
    if not python:
        raise ConfigError("no Python interpreter given; pass --python PATH")
    # absolute(), not resolve(): a venv's python is a symlink whose target is not the venv
    path = Path(python).expanduser().absolute()
    if not path.is_file() or not os.access(path, os.X_OK):
        raise ConfigError(
            f"Python interpreter {path} does not exist or is not executable; "
            "pass --python with the interpreter of the environment where rs-sam is installed"
        )
    return path


def _check_source(source: Path) -> Path:
    for name in ("__init__.py", "metadata.txt"):
        if not (source / name).is_file():
            raise ConfigError(
                f"QGIS plugin source {source} has no {name}; reinstall rs-sam "
                "(pip install --force-reinstall rs-sam)"
            )
    return source.absolute()


def install_plugin(
    profile: str = "default",
    *,
    profiles_dir: Path | None = None,
    python: str | os.PathLike[str] | None = sys.executable,
    link: bool = False,
    overwrite: bool = False,
    source: Path | None = None,
) -> Path:
    """Install the plugin into a QGIS profile, record ``python`` for it and enable it.

    ``link=True`` symlinks the source folder instead of copying it (for developers).
    ``source`` defaults to :func:`plugin_source`. Returns the installed plugin's path.
    """
    from rs_sam import __version__

    python_path = _check_python(python)
    src = _check_source(Path(source) if source is not None else plugin_source())
    profile_dir = _profile_dir(profile, profiles_dir, create_default=True)
    dest = plugin_path(profile_dir)
    if (dest.exists() or dest.is_symlink()) and not overwrite:
        raise OutputExistsError(
            f"the rs-sam QGIS plugin is already installed at {dest}; pass --overwrite to replace it"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)

    tmp = dest.with_name(f".{PLUGIN_NAME}.new-{os.getpid()}")
    old = dest.with_name(f".{PLUGIN_NAME}.old-{os.getpid()}")
    _remove(tmp)
    try:
        if link:
            try:
                tmp.symlink_to(src.resolve(), target_is_directory=True)
            except OSError as err:
                raise ConfigError(
                    f"cannot create a symlink at {dest} ({err}); install without --link"
                ) from err
        else:
            shutil.copytree(src, tmp, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            shutil.copyfile(option_table_source(), tmp / "options.py")
            table = option_table_source().with_name("pseudo_label_options.py")  # it imports this
            shutil.copyfile(table, tmp / table.name)
        # A folder cannot be renamed over a symlink (or vice versa): move the old one aside.
        if dest.exists() or dest.is_symlink():
            _remove(old)
            os.replace(dest, old)
            try:
                os.replace(tmp, dest)
            except OSError:
                os.replace(old, dest)
                raise
            _remove(old)
        else:
            os.replace(tmp, dest)
    finally:
        _remove(tmp)

    record = interpreter_record_path(profile_dir)
    record.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(
        record,
        (
            json.dumps({"python": str(python_path), "rs_sam_version": __version__}, indent=2) + "\n"
        ).encode(),
    )
    set_ini_value(settings_ini_path(profile_dir), _SECTION, PLUGIN_NAME, "true")
    return dest


def uninstall_plugin(profile: str = "default", *, profiles_dir: Path | None = None) -> Path:
    """Remove the plugin, its interpreter record and its enabled flag from a QGIS profile.

    Returns the removed plugin's path.
    """
    profile_dir = _profile_dir(profile, profiles_dir, create_default=False)
    dest = plugin_path(profile_dir)
    record = interpreter_record_path(profile_dir)
    ini = settings_ini_path(profile_dir)
    installed = dest.exists() or dest.is_symlink()
    if not installed and not record.exists() and get_ini_value(ini, _SECTION, PLUGIN_NAME) is None:
        raise ConfigError(
            f"the rs-sam QGIS plugin is not installed in QGIS profile {profile!r} "
            f"(no {dest}); pass --profile with the profile it was installed in"
        )
    _remove(dest)
    record.unlink(missing_ok=True)
    if record.parent.is_dir() and not any(record.parent.iterdir()):
        record.parent.rmdir()
    set_ini_value(ini, _SECTION, PLUGIN_NAME, None)
    return dest


# --- Qt INI files, edited line by line so everything else stays byte for byte ---------------


def _read_lines(path: Path) -> list[str]:
    """The file's lines without ``\\n`` (a ``\\r`` stays on its line); ``[]`` if missing."""
    if not path.is_file():
        return []
    text = path.read_bytes().decode("utf-8", errors="surrogateescape")
    return text.split("\n") if text else []


def _is_header(line: str) -> bool:
    return line.lstrip("\ufeff").strip().startswith("[")


def _section_bounds(lines: list[str], section: str) -> tuple[int, int] | None:
    """Index of the section's header and of the line after its last line."""
    header = f"[{section}]"
    for start, line in enumerate(lines):
        if line.lstrip("\ufeff").strip() == header:
            end = start + 1
            while end < len(lines) and not _is_header(lines[end]):
                end += 1
            return start, end
    return None


def _key_of(line: str) -> str | None:
    if "=" not in line or line.lstrip().startswith(";"):
        return None
    return line.split("=", 1)[0].strip()


def get_ini_value(path: Path, section: str, key: str) -> str | None:
    """The value of ``key`` in ``[section]`` of an INI file, or ``None``."""
    lines = _read_lines(path)
    bounds = _section_bounds(lines, section)
    if bounds is None:
        return None
    for line in lines[bounds[0] + 1 : bounds[1]]:
        if _key_of(line) == key:
            return line.split("=", 1)[1].strip()
    return None


def set_ini_value(path: Path, section: str, key: str, value: str | None) -> None:
    """Set ``key=value`` in ``[section]`` (``value=None`` removes it), creating what is missing.

    Every other line, including its line ending, is kept as it is.
    """
    lines = _read_lines(path)
    original = list(lines)
    cr = "\r" if any(line.endswith("\r") for line in lines) else ""
    new_line = f"{key}={value}{cr}"
    bounds = _section_bounds(lines, section)
    if bounds is not None:
        start, end = bounds
        body = lines[start + 1 : end]
        matches = [i for i, line in enumerate(body) if _key_of(line) == key]
        if matches:
            if value is not None:
                keep_cr = "\r" if body[matches[0]].endswith("\r") else ""
                body[matches[0]] = f"{key}={value}{keep_cr}"
                matches = matches[1:]
            body = [line for i, line in enumerate(body) if i not in matches]
        elif value is not None:
            # after the section's last non-blank line, before the blank line between sections
            at = len(body)
            while at > 0 and not body[at - 1].strip():
                at -= 1
            body.insert(at, new_line)
        lines[start + 1 : end] = body
    elif value is not None:
        if lines and lines[-1] == "":
            lines.pop()  # the text ended with a newline
        if any(line.strip() for line in lines):
            lines.append(cr)
        lines += [f"[{section}]{cr}", new_line, ""]
    if lines == original:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(path, "\n".join(lines).encode("utf-8", errors="surrogateescape"))


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_bytes(data)
        if path.exists():
            shutil.copymode(path, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
