"""Class tables: how a label file's ids or colours become contiguous training ids.

A :class:`ClassTable` lists the classes in training order (training id = position, ``0..n-1``)
and says how raw label values map onto them:

* **id labels** (single band): raw value ``v`` becomes ``id_map[v]`` (identity when there is no
  ``id_map``); values in ``ignore_values``, and the value ``ignore_index`` itself, become
  ``ignore_index``. Any other value is an error that lists it.
* **colour labels** (RGB): each class has a colour; colours in ``ignore_colours`` become
  ``ignore_index``; fully transparent pixels of RGBA labels too. Any other colour is an error
  that lists it in hex.

From a config (YAML/JSON) mapping, see :meth:`ClassTable.from_config`::

    classes:
      - {name: building, colour: "#3C1098"}
      - {name: land, colour: "#8429F6"}
    ignore_colours: ["#000000"]
    ignore_index: 255

or with raw ids (LoveDA: 0 = no-data, classes 1..7 -> training ids 0..6)::

    classes:
      - {name: background, id: 1}
      - {name: building, id: 2}
      ...
    ignore_values: [0]
"""

from __future__ import annotations

import colorsys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rs_sam.errors import ConfigError, InputRasterError

#: An RGB colour, each channel 0..255.
RGB = tuple[int, int, int]

#: Default training id of pixels without a label (losses ignore it).
DEFAULT_IGNORE_INDEX = 255
_MAX_COLOURS_LISTED = 5
_MAX_VALUES_LISTED = 10
_LUT_LIMIT = 1 << 16  # integer labels below this use a lookup table, others searchsorted
_CONFIG_KEYS = ("classes", "ignore_index", "ignore_colours", "ignore_values", "id_map")
_CONFIG_ALIASES = {"ignore_colors": "ignore_colours"}
_CLASS_KEYS = ("name", "colour", "id")
_CLASS_ALIASES = {"color": "colour"}
# tab10 then a few more distinct colours; past these, golden-ratio hues.
_PALETTE: tuple[RGB, ...] = (
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
    (174, 199, 232),
    (255, 187, 120),
    (152, 223, 138),
    (255, 152, 150),
    (197, 176, 213),
    (196, 156, 148),
)


class LabelError(InputRasterError):
    """A label holds ids or colours that the class table does not know (or is malformed)."""


def parse_colour(value: Any, what: str = "colour") -> RGB:
    """``"#3C1098"``, ``"3C1098"``, ``"#fff"`` or ``[60, 16, 152]`` -> ``(60, 16, 152)``.

    Raises:
        ConfigError: Anything else; the message names ``what`` (e.g. ``"colour of class road"``).
    """
    if isinstance(value, str):
        text = value.strip().removeprefix("#")
        if len(text) == 3:
            text = "".join(c * 2 for c in text)
        if len(text) == 6:
            try:
                packed = int(text, 16)
            except ValueError:
                pass
            else:
                return (packed >> 16, (packed >> 8) & 255, packed & 255)
    elif isinstance(value, Sequence) and len(value) == 3:
        channels = list(value)
        if all(
            isinstance(c, int | np.integer) and not isinstance(c, bool) and 0 <= c <= 255
            for c in channels
        ):
            return (int(channels[0]), int(channels[1]), int(channels[2]))
    raise ConfigError(
        f"{what} is {value!r}, which is not a colour; write it as '#RRGGBB' (e.g. '#3C1098') "
        "or as [red, green, blue] in 0..255"
    )


def hex_colour(colour: RGB) -> str:
    """``(60, 16, 152)`` -> ``"#3C1098"``."""
    return "#{:02X}{:02X}{:02X}".format(*colour)


def default_palette(count: int) -> list[RGB]:
    """``count`` distinct colours (tab10-like first, then golden-ratio hues)."""
    colours = list(_PALETTE[:count])
    hue = 0.0
    while len(colours) < count:
        hue = (hue + 0.618033988749895) % 1.0
        r, g, b = colorsys.hsv_to_rgb(hue, 0.65, 0.9)
        colours.append((round(r * 255), round(g * 255), round(b * 255)))
    return colours


@dataclass(frozen=True)
class ClassTable:
    """Classes in training order and the mapping of raw label values onto them.

    Attributes:
        names: Class names; the training id of a class is its position ``0..n-1``.
        colours: One RGB colour per class (colour labels; also the colour table of written
            class rasters), or None for id labels.
        ignore_index: Training id of pixels without a label (not a class id).
        ignore_colours: Colours of colour labels that mean "no label" (e.g. black).
        ignore_values: Raw ids of id labels that mean "no label" (e.g. LoveDA's 0).
        id_map: Raw id -> training id (several raw ids may share a class); None: raw id =
            training id. Raw ids outside it (and outside ``ignore_values``) are errors.

    Colours and values may be given as hex strings or lists; they are normalised.

    Raises:
        ConfigError: Empty or duplicate names, bad colours, an ``ignore_index`` that is a
            class id, training ids out of range, or ignore values that are also class ids.
    """

    names: tuple[str, ...]
    colours: tuple[RGB, ...] | None = None
    ignore_index: int = DEFAULT_IGNORE_INDEX
    ignore_colours: tuple[RGB, ...] = ()
    ignore_values: tuple[int, ...] = ()
    id_map: dict[int, int] | None = field(default=None)

    def __post_init__(self) -> None:
        names = self.names
        if isinstance(names, str) or not isinstance(names, Sequence):
            raise ConfigError(f"class names {names!r} must be a list of names")
        names = tuple(names)
        if not names or not all(isinstance(n, str) and n.strip() for n in names):
            raise ConfigError(f"class names {list(names)!r} must be non-empty strings; list them")
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ConfigError(f"class names {duplicates} appear more than once; make them unique")
        count = len(names)
        ignore_index = _as_int(self.ignore_index, "ignore_index")
        if 0 <= ignore_index < count:
            raise ConfigError(
                f"ignore_index={ignore_index} is a class id (classes are 0..{count - 1}); "
                "use a value outside them, e.g. 255"
            )
        colours = None
        if self.colours is not None:
            colours = tuple(
                parse_colour(c, f"colour of class {n!r}")
                for n, c in zip(names, self.colours, strict=False)
            )
            if len(self.colours) != count:
                raise ConfigError(
                    f"{len(self.colours)} colours for {count} classes; give one colour per class"
                )
            _check_unique_colours(colours, names)
        ignore_colours = tuple(parse_colour(c, "ignore colour") for c in self.ignore_colours)
        clash = sorted(
            {hex_colour(c) for c in ignore_colours} & {hex_colour(c) for c in colours or ()}
        )
        if clash:
            raise ConfigError(
                f"colours {clash} are both class colours and ignore_colours; keep them in one"
            )
        ignore_values = tuple(
            sorted({_as_int(v, "ignore_values entry") for v in self.ignore_values})
        )
        id_map = None
        if self.id_map is not None:
            id_map = {
                _as_int(k, "id_map key"): _as_int(v, "id_map value")
                for k, v in sorted(dict(self.id_map).items())
            }
            bad = sorted({v for v in id_map.values() if not 0 <= v < count})
            if bad:
                raise ConfigError(
                    f"id_map maps to training ids {bad} but the classes are 0..{count - 1}; "
                    "map raw ids to class positions"
                )
        raw_ids = set(id_map) if id_map is not None else set(range(count))
        both = sorted(raw_ids & set(ignore_values))
        if both:
            raise ConfigError(
                f"ignore_values {both} are also class ids; remove them from ignore_values or "
                "map the classes elsewhere with id_map (or per-class id)"
            )
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "colours", colours)
        object.__setattr__(self, "ignore_index", ignore_index)
        object.__setattr__(self, "ignore_colours", ignore_colours)
        object.__setattr__(self, "ignore_values", ignore_values)
        object.__setattr__(self, "id_map", id_map)
        # Lookup arrays (sorted keys -> targets), built once.
        pairs = sorted(
            {
                **{v: ignore_index for v in (ignore_index, *ignore_values)},
                **(id_map if id_map is not None else {i: i for i in range(count)}),
            }.items()
        )
        object.__setattr__(self, "_id_keys", np.array([k for k, _ in pairs], np.int64))
        object.__setattr__(self, "_id_targets", np.array([t for _, t in pairs], np.int64))
        colour_pairs = sorted(
            [(_pack(c), ignore_index) for c in ignore_colours]
            + [(_pack(c), i) for i, c in enumerate(colours or ())]
        )
        object.__setattr__(self, "_colour_keys", np.array([k for k, _ in colour_pairs], np.uint32))
        object.__setattr__(
            self, "_colour_targets", np.array([t for _, t in colour_pairs], np.int64)
        )

    def __hash__(self) -> int:
        id_map = None if self.id_map is None else tuple(self.id_map.items())
        return hash(
            (
                self.names,
                self.colours,
                self.ignore_index,
                self.ignore_colours,
                self.ignore_values,
                id_map,
            )
        )

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_config(cls, mapping: Mapping[str, Any]) -> ClassTable:
        """Build from a config mapping (see the module docstring for the layout).

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
                f"{', '.join(_CONFIG_KEYS[1:])})"
            )
        values = _canonical_keys(mapping, _CONFIG_KEYS, _CONFIG_ALIASES, "class table")
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
                raw = _as_int(ids[name], f"id of class {name!r}")
                if raw in id_map:
                    raise ConfigError(
                        f"classes {names[id_map[raw]]!r} and {name!r} both have id {raw}; "
                        "give each class its own raw id (or map several ids with id_map)"
                    )
                id_map[raw] = position
        if values.get("id_map") is not None:
            id_map = _merge_id_map(id_map, values["id_map"], names)
        return cls(
            names=tuple(names),
            colours=tuple(colours[n] for n in names) if colours else None,
            ignore_index=values.get("ignore_index", DEFAULT_IGNORE_INDEX),
            ignore_colours=tuple(_as_list(values.get("ignore_colours"), "ignore_colours")),
            ignore_values=tuple(_as_list(values.get("ignore_values"), "ignore_values")),
            id_map=id_map,
        )

    def to_config(self) -> dict[str, Any]:
        """A plain mapping that :meth:`from_config` turns back into this table."""
        classes: list[dict[str, Any]] = []
        for i, name in enumerate(self.names):
            entry: dict[str, Any] = {"name": name}
            if self.colours is not None:
                entry["colour"] = hex_colour(self.colours[i])
            classes.append(entry)
        config: dict[str, Any] = {"classes": classes, "ignore_index": self.ignore_index}
        if self.ignore_colours:
            config["ignore_colours"] = [hex_colour(c) for c in self.ignore_colours]
        if self.ignore_values:
            config["ignore_values"] = list(self.ignore_values)
        if self.id_map is not None:
            config["id_map"] = dict(self.id_map)
        return config

    # ------------------------------------------------------------------ queries
    @property
    def num_classes(self) -> int:
        """Number of classes (training ids are ``0..num_classes - 1``)."""
        return len(self.names)

    def colormap(self) -> dict[int, RGB]:
        """Training id -> RGB for a class raster's colour table.

        The class colours (a default palette when there are none), and black for
        ``ignore_index`` when it fits a uint8 raster (0..255).
        """
        colours = self.colours if self.colours is not None else default_palette(len(self.names))
        table = dict(enumerate(colours))
        if 0 <= self.ignore_index <= 255:
            table[self.ignore_index] = (0, 0, 0)
        return table

    # ------------------------------------------------------------------ encoding
    def encode(
        self,
        label: np.ndarray,
        path: str | Path | None = None,
        *,
        ignore: np.ndarray | None = None,
    ) -> np.ndarray:
        """Raw label -> ``(H, W)`` int64 training ids, ``ignore_index`` where unlabelled.

        Args:
            label: ``(H, W)`` or ``(1, H, W)`` ids, or an RGB(A) colour label ``(3|4, H, W)``
                (band-first, as rasterio reads) or ``(H, W, 3|4)`` (as PIL gives; a tiny array
                that fits both, e.g. ``(3, 4, 3)``, is taken as band-first). An RGB
                label whose channels are all equal is read as ids when the table has no
                colours. Transparent RGBA pixels (alpha 0) are ignored.
            path: The label's file, named in error messages.
            ignore: Optional ``(H, W)`` bool mask of pixels set to ``ignore_index`` unchecked
                (e.g. the label raster's nodata).

        Raises:
            LabelError: Ids or colours outside the table (listed), an RGB label for a table
                without colours, non-integer ids, or an unusable array shape.
        """
        where = f"label {path}" if path is not None else "label"
        bands = _band_first(np.asarray(label), where)
        skip = None if ignore is None else np.asarray(ignore, dtype=bool)
        if bands.shape[0] == 1:
            return self._encode_ids(bands[0], where, skip)
        if bands.shape[0] == 4:
            transparent = bands[3] == 0
            skip = transparent if skip is None else skip | transparent
        colour = bands[:3]
        if self.colours is None:
            if (colour == colour[:1]).all():
                return self._encode_ids(colour[0], where, skip)
            raise LabelError(
                f"{where} is an RGB colour image but the class table has no colours; give "
                "every class a colour (e.g. {name: building, colour: '#3C1098'})"
            )
        return self._encode_colours(colour, where, skip)

    def _encode_ids(self, values: np.ndarray, where: str, skip: np.ndarray | None) -> np.ndarray:
        keys: np.ndarray = self._id_keys  # type: ignore[attr-defined]
        targets: np.ndarray = self._id_targets  # type: ignore[attr-defined]
        if values.dtype == bool:
            values = values.view(np.uint8)
        if values.dtype.kind == "f":
            checked = values if skip is None else np.where(skip, 0, values)
            if not (np.isfinite(checked).all() and (np.mod(checked, 1) == 0).all()):
                raise LabelError(
                    f"{where} has non-integer values; class labels must hold integer ids "
                    "(set the label's nodata to mark unlabelled pixels)"
                )
            values = checked.astype(np.int64)
        elif values.dtype.kind not in "iu":
            raise LabelError(f"{where} has data type {values.dtype}; use integer class ids")
        low, high = (int(values.min()), int(values.max())) if values.size else (0, 0)
        if low >= 0 and high < _LUT_LIMIT:
            inside = (keys >= 0) & (keys <= high)
            lut = np.full(high + 1, -1, dtype=np.int64)
            lut[keys[inside]] = targets[inside]
            out = lut[values]
            unknown = out < 0
        else:
            flat = values.astype(np.int64)
            index = np.clip(np.searchsorted(keys, flat), 0, len(keys) - 1)
            unknown = keys[index] != flat
            out = targets[index]
        if skip is not None:
            out[skip] = self.ignore_index
            unknown &= ~skip
        if unknown.any():
            found = np.unique(values[unknown]).tolist()
            raw = self._id_keys[self._id_targets != self.ignore_index].tolist()  # type: ignore[attr-defined]
            accepted = f"ids {_span(raw)}"
            if self.ignore_values:
                accepted += f", ignore_values {_span(list(self.ignore_values))}"
            raise LabelError(
                f"{where} has values {_listed(found, _MAX_VALUES_LISTED)} outside the class "
                f"table ({accepted}); add them to classes or ignore_values"
            )
        return out

    def _encode_colours(
        self, colour: np.ndarray, where: str, skip: np.ndarray | None
    ) -> np.ndarray:
        if colour.dtype != np.uint8:
            if colour.dtype.kind not in "iu" or colour.min() < 0 or colour.max() > 255:
                raise LabelError(
                    f"{where} has {colour.dtype} colour values outside 0..255; save colour "
                    "labels as 8-bit RGB"
                )
            colour = colour.astype(np.uint8)
        packed = (
            (colour[0].astype(np.uint32) << 16)
            | (colour[1].astype(np.uint32) << 8)
            | colour[2].astype(np.uint32)
        )
        keys: np.ndarray = self._colour_keys  # type: ignore[attr-defined]
        targets: np.ndarray = self._colour_targets  # type: ignore[attr-defined]
        index = np.clip(np.searchsorted(keys, packed), 0, len(keys) - 1)
        unknown = keys[index] != packed
        out = targets[index]
        if skip is not None:
            out[skip] = self.ignore_index
            unknown &= ~skip
        if unknown.any():
            found = np.unique(packed[unknown])
            shown = ", ".join(
                hex_colour((int(k) >> 16, (int(k) >> 8) & 255, int(k) & 255))
                for k in found[:_MAX_COLOURS_LISTED]
            )
            more = len(found) - _MAX_COLOURS_LISTED
            extra = f" and {more} more" if more > 0 else ""
            raise LabelError(
                f"{where} has colours {shown}{extra} not in the class table ({int(unknown.sum())} "
                "pixels); add them to the class table or to ignore_colours"
            )
        return out


# ---------------------------------------------------------------------------- helpers
def _pack(colour: RGB) -> int:
    return (colour[0] << 16) | (colour[1] << 8) | colour[2]


def _band_first(label: np.ndarray, where: str) -> np.ndarray:
    """(H, W) / (C, H, W) / (H, W, C) with C in 1, 3, 4 -> (C, H, W) (band-first if ambiguous)."""
    if label.ndim == 2:
        return label[None]
    if label.ndim == 3:
        if label.shape[0] in (1, 3, 4):
            return label
        if label.shape[-1] in (1, 3, 4):
            return np.moveaxis(label, -1, 0)
    raise LabelError(
        f"{where} has shape {label.shape}; expected (H, W) ids or an RGB(A) colour image"
    )


def _check_unique_colours(colours: tuple[RGB, ...], names: tuple[str, ...]) -> None:
    seen: dict[RGB, str] = {}
    for name, colour in zip(names, colours, strict=True):
        if colour in seen:
            raise ConfigError(
                f"classes {seen[colour]!r} and {name!r} share colour {hex_colour(colour)}; "
                "give each class its own colour"
            )
        seen[colour] = name


def _merge_id_map(id_map: dict[int, int] | None, given: Any, names: list[str]) -> dict[int, int]:
    """Per-class ids merged with a config ``id_map`` (raw id -> class name or training id)."""
    if not isinstance(given, Mapping):
        raise ConfigError(f"id_map {given!r} must map raw ids to class names or training ids")
    merged = dict(id_map or {})
    for key, value in given.items():
        raw = _as_int(key, "id_map key")
        if isinstance(value, str):
            if value not in names:
                raise ConfigError(
                    f"id_map maps {raw} to unknown class {value!r}; classes: {', '.join(names)}"
                )
            target = names.index(value)
        else:
            target = _as_int(value, "id_map value")
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


def _as_int(value: Any, what: str) -> int:
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


def _span(values: list[int]) -> str:
    """``[0, 1, 2, 3]`` -> ``"0..3"``; otherwise the listed values."""
    values = sorted(values)
    if len(values) > 2 and values == list(range(values[0], values[-1] + 1)):
        return f"{values[0]}..{values[-1]}"
    return ", ".join(str(v) for v in values) if values else "none"


def _listed(items: Sequence[Any], limit: int) -> str:
    shown = ", ".join(str(i) for i in items[:limit])
    more = len(items) - limit
    return f"[{shown}{f', ... {more} more' if more > 0 else ''}]"
