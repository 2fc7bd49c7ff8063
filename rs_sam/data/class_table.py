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

The table's checks live here; reading the config mapping is :mod:`rs_sam.data.class_config`,
colours are :mod:`rs_sam.data.colours` and the lookups :mod:`rs_sam.data.label_encoding`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rs_sam.data.class_config import as_int, table_arguments
from rs_sam.data.colours import RGB, default_palette, hex_colour, pack_colour, parse_colour
from rs_sam.data.label_encoding import LabelError, encode_colours, encode_ids, label_bands
from rs_sam.data.labels import IGNORE
from rs_sam.errors import ConfigError

__all__ = [
    "RGB",
    "ClassTable",
    "LabelError",
    "default_palette",
    "hex_colour",
    "parse_colour",
]


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
    ignore_index: int = IGNORE
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
        ignore_index = as_int(self.ignore_index, "ignore_index")
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
            sorted({as_int(v, "ignore_values entry") for v in self.ignore_values})
        )
        id_map = None
        if self.id_map is not None:
            id_map = {
                as_int(k, "id_map key"): as_int(v, "id_map value")
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
            [(pack_colour(c), ignore_index) for c in ignore_colours]
            + [(pack_colour(c), i) for i, c in enumerate(colours or ())]
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
        """Build from a config mapping: keys and errors as in
        :func:`~rs_sam.data.class_config.table_arguments`."""
        return cls(**table_arguments(mapping))

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
        bands = label_bands(np.asarray(label), where)
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
        return encode_ids(
            values,
            self._id_keys,  # type: ignore[attr-defined]
            self._id_targets,  # type: ignore[attr-defined]
            ignore_index=self.ignore_index,
            ignore_values=self.ignore_values,
            where=where,
            skip=skip,
        )

    def _encode_colours(
        self, colour: np.ndarray, where: str, skip: np.ndarray | None
    ) -> np.ndarray:
        return encode_colours(
            colour,
            self._colour_keys,  # type: ignore[attr-defined]
            self._colour_targets,  # type: ignore[attr-defined]
            ignore_index=self.ignore_index,
            where=where,
            skip=skip,
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
