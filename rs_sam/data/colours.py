"""Colours of classes: parsing, hex notation and a default palette."""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from typing import Any

import numpy as np

from rs_sam.errors import ConfigError

#: An RGB colour, each channel 0..255.
RGB = tuple[int, int, int]

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


def pack_colour(colour: RGB) -> int:
    """``(r, g, b)`` -> ``0xRRGGBB``: the key colour labels are looked up by."""
    return (colour[0] << 16) | (colour[1] << 8) | colour[2]


def unpack_colour(packed: int) -> RGB:
    """``0xRRGGBB`` -> ``(r, g, b)``."""
    return (packed >> 16, (packed >> 8) & 255, packed & 255)
