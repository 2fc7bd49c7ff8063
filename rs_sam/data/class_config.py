"""Reading a class table's config mapping (YAML/JSON): keys, aliases, ids and colours.

:func:`table_arguments` turns the mapping documented in :mod:`rs_sam.data.class_table` into
the keyword arguments of :class:`~rs_sam.data.class_table.ClassTable`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from rs_sam.data.labels import IGNORE
from rs_sam.errors import ConfigError

CONFIG_KEYS = ("classes", "ignore_index", "ignore_colours", "ignore_values", "id_map")
_CONFIG_ALIASES = {"ignore_colors": "ignore_colours"}
_CLASS_KEYS = ("name", "colour", "id")
_CLASS_ALIASES = {"color": "colour"}


def table_arguments(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """:class:`~rs_sam.data.class_table.ClassTable` arguments from a config mapping.

    Keys: ``classes`` (required: names, or mappings with ``name`` and optional ``colour``
    (or ``color``) and ``id`` = raw label id), ``ignore_index``, ``ignore_colours`` (or
    ``ignore_colors``), ``ignore_values`` and ``id_map`` (raw id -> class name or
    training id; merged with per-class ids). Colours and ids are given for every class
    or for none.

    Raises:
        ConfigError: Unknown keys (listing the valid ones), missing names, bad colours,
            colours or ids on only some classes, conflicting ids.
    """
    if not isinstance(mapping, Mapping):
        raise ConfigError(
            f"class table {mapping!r} must be a mapping with 'classes' (and optionally "
            f"{', '.join(CONFIG_KEYS[1:])})"
        )
    values = _canonical_keys(mapping, CONFIG_KEYS, _CONFIG_ALIASES, "class table")
    if "classes" not in values:
        raise ConfigError(
            "class table has no 'classes'; list them, e.g. classes: [{name: building, "
            "colour: '#3C1098'}, ...]"
        )
    entries = values["classes"]
    if isinstance(entries, str | Mapping) or not isinstance(entries, Sequence) or not entries:
        raise ConfigError(
            f"'classes' must be a non-empty list of names or {{name, colour, id}} mappings, "
            f"not {entries!r}"
        )
    names: list[str] = []
    colours: dict[str, Any] = {}
    ids: dict[str, Any] = {}
    for position, entry in enumerate(entries):
        if isinstance(entry, str):
            entry = {"name": entry}
        if not isinstance(entry, Mapping):
            raise ConfigError(
                f"class entry {position} ({entry!r}) must be a name or a mapping with "
                f"keys {', '.join(_CLASS_KEYS)}"
            )
        item = _canonical_keys(entry, _CLASS_KEYS, _CLASS_ALIASES, f"class entry {position}")
        name = item.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"class entry {position} ({dict(entry)!r}) needs a name")
        names.append(name)
        if item.get("colour") is not None:
            colours[name] = item["colour"]
        if item.get("id") is not None:
            ids[name] = item["id"]
    for what, given in (("colour", colours), ("id", ids)):
        if given and len(given) != len(names):
            lacking = [n for n in names if n not in given]
            raise ConfigError(
                f"classes {lacking} have no {what} but others do; give every class "
                f"{'an' if what == 'id' else 'a'} {what} or none"
            )
    id_map: dict[int, int] | None = None
    if ids:
        id_map = {}
        for position, name in enumerate(names):
            raw = as_int(ids[name], f"id of class {name!r}")
            if raw in id_map:
                raise ConfigError(
                    f"classes {names[id_map[raw]]!r} and {name!r} both have id {raw}; "
                    "give each class its own raw id (or map several ids with id_map)"
                )
            id_map[raw] = position
    if values.get("id_map") is not None:
        id_map = _merge_id_map(id_map, values["id_map"], names)
    return {
        "names": tuple(names),
        "colours": tuple(colours[n] for n in names) if colours else None,
        "ignore_index": values.get("ignore_index", IGNORE),
        "ignore_colours": tuple(_as_list(values.get("ignore_colours"), "ignore_colours")),
        "ignore_values": tuple(_as_list(values.get("ignore_values"), "ignore_values")),
        "id_map": id_map,
    }


def _merge_id_map(id_map: dict[int, int] | None, given: Any, names: list[str]) -> dict[int, int]:
    """Per-class ids merged with a config ``id_map`` (raw id -> class name or training id)."""
    if not isinstance(given, Mapping):
        raise ConfigError(f"id_map {given!r} must map raw ids to class names or training ids")
    merged = dict(id_map or {})
    for key, value in given.items():
        raw = as_int(key, "id_map key")
        if isinstance(value, str):
            if value not in names:
                raise ConfigError(
                    f"id_map maps {raw} to unknown class {value!r}; classes: {', '.join(names)}"
                )
            target = names.index(value)
        else:
            target = as_int(value, "id_map value")
        if merged.get(raw, target) != target:
            raise ConfigError(
                f"raw id {raw} maps to both class {merged[raw]} and {target} (per-class id and "
                "id_map disagree); keep one"
            )
        merged[raw] = target
    return merged


def _canonical_keys(
    values: Mapping[str, Any], valid: Sequence[str], aliases: Mapping[str, str], where: str
) -> dict[str, Any]:
    """Keys with aliases resolved; unknown keys raise a ConfigError listing valid ones."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = aliases.get(key, key)
        if name not in valid:
            raise ConfigError(f"unknown key {key!r} in {where}; valid: {', '.join(valid)}")
        if name in out:
            raise ConfigError(f"{where} gives {name!r} twice (also as an alias); keep one")
        out[name] = value
    return out


def as_int(value: Any, what: str) -> int:
    """``value`` as an int (JSON keys may be digit strings); bools and others raise."""
    if isinstance(value, bool):
        raise ConfigError(f"{what} {value!r} is not an integer; give a whole number")
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)  # JSON object keys are strings
    raise ConfigError(f"{what} {value!r} is not an integer; give a whole number")


def _as_list(value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ConfigError(f"{what} must be a list (e.g. [0] or ['#000000']), not {value!r}")
    return list(value)
