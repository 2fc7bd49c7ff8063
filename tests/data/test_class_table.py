"""ClassTable: config parsing, id and colour labels -> training ids, errors naming the fix."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from rs_sam.data.class_table import ClassTable, LabelError, default_palette, parse_colour
from rs_sam.errors import ConfigError, InputRasterError

DUBAI = {
    "classes": [
        {"name": "building", "colour": "#3C1098"},
        {"name": "land", "colour": "#8429F6"},
        {"name": "road", "colour": "#6EC1E4"},
    ],
    "ignore_colours": ["#000000"],
    "ignore_index": 255,
}
LOVEDA = {
    "classes": [{"name": n, "id": i + 1} for i, n in enumerate(["background", "building", "road"])],
    "ignore_values": [0],
}


def _paint(ids: np.ndarray, colours: dict[int, tuple[int, int, int]]) -> np.ndarray:
    """(H, W) keys -> (H, W, 3) uint8 colour image."""
    out = np.zeros((*ids.shape, 3), np.uint8)
    for key, colour in colours.items():
        out[ids == key] = colour
    return out


def test_colour_label_maps_to_ids_and_ignore_colour() -> None:
    table = ClassTable.from_config(DUBAI)
    assert table.names == ("building", "land", "road") and table.num_classes == 3
    ids = np.array([[0, 1, 2], [2, 9, 0]])
    colours = {0: (60, 16, 152), 1: (132, 41, 246), 2: (110, 193, 228), 9: (0, 0, 0)}
    label = _paint(ids, colours)
    expected = np.where(ids == 9, 255, ids)
    out = table.encode(label, "x.png")
    assert out.dtype == np.int64 and np.array_equal(out, expected)
    assert np.array_equal(table.encode(np.moveaxis(label, -1, 0)), expected)  # band-first


def test_unknown_colours_are_listed_in_hex() -> None:
    table = ClassTable.from_config(DUBAI)
    label = _paint(np.zeros((5, 6), int), {0: (60, 16, 152)})
    label[0, 0] = (0xFE, 0xDD, 0x3A)
    label[1, 1] = (1, 2, 3)
    with pytest.raises(
        LabelError,
        match=r"label x.png has colours #010203, #FEDD3A not in the class table \(2 pixels\); "
        r"add them to the class table or to ignore_colours",
    ):
        table.encode(label, "x.png")
    label[2, :] = [(i, 0, 0) for i in range(10, 16)]
    with pytest.raises(LabelError, match=r"#0D0000 and 3 more not in"):
        table.encode(label, "x.png")
    assert issubclass(LabelError, InputRasterError)


def test_id_labels_with_id_map_and_ignore_values() -> None:
    table = ClassTable.from_config(LOVEDA)
    assert table.id_map == {1: 0, 2: 1, 3: 2}
    label = np.array([[0, 1, 2], [3, 255, 1]], np.uint8)
    assert np.array_equal(table.encode(label), [[255, 0, 1], [2, 255, 0]])
    with pytest.raises(
        LabelError,
        match=r"label y.png has values \[4, 7\] outside the class table \(ids 1..3, "
        r"ignore_values 0\); add them to classes or ignore_values",
    ):
        table.encode(np.array([[1, 4], [7, 0]], np.uint8), "y.png")


def test_identity_ids_error_matches_the_documented_message() -> None:
    table = ClassTable(names=tuple("abcdef"))
    label = np.array([[0, 5, 7], [9, 1, 7]], np.uint16)
    with pytest.raises(
        LabelError,
        match=r"^label x.png has values \[7, 9\] outside the class table \(ids 0..5\); "
        r"add them to classes or ignore_values$",
    ):
        table.encode(label, "x.png")


def test_large_and_negative_raw_ids_use_the_sorted_lookup() -> None:
    table = ClassTable(names=("a", "b"), id_map={100_000: 0, -5: 1}, ignore_values=(70_000,))
    label = np.array([[100_000, -5], [70_000, 100_000]], np.int64)
    assert np.array_equal(table.encode(label), [[0, 1], [255, 0]])
    with pytest.raises(LabelError, match=r"values \[3\]"):
        table.encode(np.array([[3, -5]], np.int32))


def test_float_ids_rgb_grey_labels_alpha_and_ignore_mask() -> None:
    table = ClassTable(names=("a", "b"))
    assert np.array_equal(table.encode(np.array([[0.0, 1.0]], np.float32)), [[0, 1]])
    with pytest.raises(LabelError, match="non-integer values"):
        table.encode(np.array([[0.5, 1.0]]))
    grey = np.repeat(np.array([[[0, 1]]], np.uint8), 3, axis=0)  # (3, 1, 2) equal channels
    assert np.array_equal(table.encode(grey), [[0, 1]])
    with pytest.raises(LabelError, match="RGB colour image but the class table has no colours"):
        table.encode(np.array([[[0, 1]], [[1, 1]], [[0, 0]]], np.uint8))
    ignore = np.array([[True, False]])
    assert np.array_equal(table.encode(np.array([[9, 1]]), ignore=ignore), [[255, 1]])
    coloured = ClassTable(names=("a", "b"), colours=("#FF0000", (0, 255, 0)))
    rgba = np.array([[[255, 0, 0, 255], [7, 7, 7, 0]]] * 2, np.uint8)  # (2, 2, 4), 7 unknown
    assert np.array_equal(coloured.encode(rgba), [[0, 255], [0, 255]])


def test_encode_is_vectorised_for_large_labels() -> None:
    table = ClassTable.from_config(DUBAI)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 3, (1024, 1024))
    label = _paint(ids, {0: (60, 16, 152), 1: (132, 41, 246), 2: (110, 193, 228)})
    assert np.array_equal(table.encode(label), ids)


def test_config_errors_name_the_fix() -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'colors' in class table; valid: classes,"):
        ClassTable.from_config({"classes": ["a"], "colors": []})
    with pytest.raises(ConfigError, match=r"unknown key 'colr' in class entry 0; valid: name, "):
        ClassTable.from_config({"classes": [{"name": "a", "colr": "#000000"}]})
    with pytest.raises(ConfigError, match=r"colour of class 'a' is '#12345'.*'#RRGGBB'"):
        ClassTable.from_config({"classes": [{"name": "a", "colour": "#12345"}]})
    with pytest.raises(ConfigError, match=r"classes \['b'\] have no colour but others do"):
        ClassTable.from_config({"classes": [{"name": "a", "colour": "#123456"}, "b"]})
    with pytest.raises(ConfigError, match="appear more than once"):
        ClassTable.from_config({"classes": ["a", "a"]})
    with pytest.raises(ConfigError, match="ignore_index=1 is a class id"):
        ClassTable.from_config({"classes": ["a", "b"], "ignore_index": 1})
    with pytest.raises(ConfigError, match=r"ignore_values \[0\] are also class ids"):
        ClassTable.from_config({"classes": ["a", "b"], "ignore_values": [0]})
    with pytest.raises(ConfigError, match="share colour #123456"):
        ClassTable(names=("a", "b"), colours=("#123456", "#123456"))
    with pytest.raises(ConfigError, match="both class colours and ignore_colours"):
        ClassTable(names=("a",), colours=("#000000",), ignore_colours=("#000",))
    with pytest.raises(ConfigError, match="has no 'classes'"):
        ClassTable.from_config({"ignore_index": 255})


def test_id_map_in_config_merges_raw_ids_and_names() -> None:
    table = ClassTable.from_config(
        {"classes": ["water", "land"], "id_map": {"10": "water", 11: 0, 20: "land"}}
    )
    assert table.id_map == {10: 0, 11: 0, 20: 1}
    with pytest.raises(ConfigError, match="unknown class 'sea'"):
        ClassTable.from_config({"classes": ["water"], "id_map": {1: "sea"}})
    with pytest.raises(ConfigError, match="maps to both class"):
        ClassTable.from_config(
            {"classes": [{"name": "w", "id": 1}, {"name": "x", "id": 2}], "id_map": {1: 1}}
        )


def test_colormap_round_trip_hash_and_pickle() -> None:
    table = ClassTable.from_config(DUBAI)
    assert table.colormap() == {
        0: (60, 16, 152),
        1: (132, 41, 246),
        2: (110, 193, 228),
        255: (0, 0, 0),
    }
    plain = ClassTable(names=("a", "b", "c"))
    assert list(plain.colormap().values())[:3] == default_palette(3)
    assert len(set(default_palette(40))) == 40
    for item in (table, ClassTable.from_config(LOVEDA)):
        assert ClassTable.from_config(item.to_config()) == item
        assert pickle.loads(pickle.dumps(item)) == item
        assert hash(item) == hash(pickle.loads(pickle.dumps(item)))
    assert parse_colour("#fff") == (255, 255, 255) and parse_colour([1, 2, 3]) == (1, 2, 3)
