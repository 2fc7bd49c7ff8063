"""The parts of a class table: config reading, colours, lookups."""

from __future__ import annotations

import numpy as np
import pytest

from rs_sam.data.class_config import as_int, table_arguments
from rs_sam.data.colours import hex_colour, pack_colour, unpack_colour
from rs_sam.data.label_encoding import LabelError, encode_colours, encode_ids, label_bands
from rs_sam.errors import ConfigError


def test_table_arguments_read_the_config() -> None:
    arguments = table_arguments(
        {"classes": [{"name": "a", "id": 3}, {"name": "b", "id": 5}], "ignore_values": [0]}
    )
    assert arguments == {
        "names": ("a", "b"),
        "colours": None,
        "ignore_index": 255,
        "ignore_colours": (),
        "ignore_values": (0,),
        "id_map": {3: 0, 5: 1},
    }
    with pytest.raises(ConfigError, match="unknown key 'colour_map'"):
        table_arguments({"classes": ["a"], "colour_map": {}})
    assert as_int("12", "x") == 12
    with pytest.raises(ConfigError, match="not an integer"):
        as_int(True, "x")


def test_colours_pack_round_trip() -> None:
    colour = (60, 16, 152)
    assert unpack_colour(pack_colour(colour)) == colour
    assert hex_colour(colour) == "#3C1098" and pack_colour(colour) == 0x3C1098


def test_encode_ids_through_a_lookup() -> None:
    keys, targets = np.array([0, 3, 5]), np.array([255, 0, 1])
    values = np.array([[3, 5], [0, 3]], np.uint8)
    out = encode_ids(
        values, keys, targets, ignore_index=255, ignore_values=(0,), where="label", skip=None
    )
    np.testing.assert_array_equal(out, [[0, 1], [255, 0]])
    with pytest.raises(LabelError, match=r"values \[4\] outside the class table \(ids 3, 5, "):
        encode_ids(
            np.array([[4]]),
            keys,
            targets,
            ignore_index=255,
            ignore_values=(0,),
            where="label",
            skip=None,
        )
    skip = np.array([[True]])
    out = encode_ids(
        np.array([[4]]), keys, targets, ignore_index=255, ignore_values=(), where="l", skip=skip
    )
    assert out.tolist() == [[255]]


def test_encode_colours_through_a_lookup() -> None:
    keys = np.array(sorted([pack_colour((0, 0, 0)), pack_colour((60, 16, 152))]), np.uint32)
    targets = np.array([255, 0])
    colour = np.zeros((3, 1, 2), np.uint8)
    colour[:, 0, 1] = (60, 16, 152)
    out = encode_colours(colour, keys, targets, ignore_index=255, where="label", skip=None)
    assert out.tolist() == [[255, 0]]
    colour[:, 0, 0] = (1, 2, 3)
    with pytest.raises(LabelError, match="colours #010203 not in the class table"):
        encode_colours(colour, keys, targets, ignore_index=255, where="label", skip=None)


def test_label_bands() -> None:
    assert label_bands(np.zeros((4, 5)), "l").shape == (1, 4, 5)
    assert label_bands(np.zeros((5, 6, 3)), "l").shape == (3, 5, 6)
    with pytest.raises(LabelError, match="has shape"):
        label_bands(np.zeros((2, 4, 5, 6)), "l")
