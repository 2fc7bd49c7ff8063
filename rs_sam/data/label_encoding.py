"""Turning raw label arrays (ids or colours) into training ids through lookup tables.

The lookups are built by :class:`~rs_sam.data.class_table.ClassTable`: sorted raw keys (ids,
or colours packed as ``0xRRGGBB``) and the training id of each. Values outside the keys are
errors that list them.
"""

from __future__ import annotations

import numpy as np

from rs_sam.data.colours import hex_colour, unpack_colour
from rs_sam.data.image_files import format_list
from rs_sam.errors import InputRasterError

_MAX_COLOURS_LISTED = 5
_MAX_VALUES_LISTED = 10
_LUT_LIMIT = 1 << 16  # integer labels below this use a lookup table, others searchsorted


class LabelError(InputRasterError):
    """A label holds ids or colours that the class table does not know (or is malformed)."""


def label_bands(label: np.ndarray, where: str) -> np.ndarray:
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


def encode_ids(
    values: np.ndarray,
    keys: np.ndarray,
    targets: np.ndarray,
    *,
    ignore_index: int,
    ignore_values: tuple[int, ...],
    where: str,
    skip: np.ndarray | None,
) -> np.ndarray:
    """(H, W) raw ids -> int64 training ids (``skip`` pixels become ``ignore_index``).

    Args:
        values: Integer ids (float labels must hold whole numbers; bool is 0/1).
        keys, targets: Sorted raw ids and their training ids (ignored ids map to
            ``ignore_index``).
        ignore_index: Training id of unlabelled pixels.
        ignore_values: Raw ids that mean "no label" (quoted in the error).
        where: The label, for messages.
        skip: Pixels set to ``ignore_index`` unchecked, or None.

    Raises:
        LabelError: Ids outside ``keys`` (listed), non-integer values or dtypes.
    """
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
        out[skip] = ignore_index
        unknown &= ~skip
    if unknown.any():
        found = np.unique(values[unknown]).tolist()
        accepted = f"ids {_span(keys[targets != ignore_index].tolist())}"
        if ignore_values:
            accepted += f", ignore_values {_span(list(ignore_values))}"
        raise LabelError(
            f"{where} has values {format_list(found, _MAX_VALUES_LISTED)} outside the class "
            f"table ({accepted}); add them to classes or ignore_values"
        )
    return out


def encode_colours(
    colour: np.ndarray,
    keys: np.ndarray,
    targets: np.ndarray,
    *,
    ignore_index: int,
    where: str,
    skip: np.ndarray | None,
) -> np.ndarray:
    """(3, H, W) RGB -> (H, W) int64 training ids (``keys``: sorted packed colours).

    Raises:
        LabelError: Colours outside ``keys`` (listed in hex) or values outside 0..255.
    """
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
    index = np.clip(np.searchsorted(keys, packed), 0, len(keys) - 1)
    unknown = keys[index] != packed
    out = targets[index]
    if skip is not None:
        out[skip] = ignore_index
        unknown &= ~skip
    if unknown.any():
        found = np.unique(packed[unknown])
        shown = ", ".join(hex_colour(unpack_colour(int(k))) for k in found[:_MAX_COLOURS_LISTED])
        more = len(found) - _MAX_COLOURS_LISTED
        extra = f" and {more} more" if more > 0 else ""
        raise LabelError(
            f"{where} has colours {shown}{extra} not in the class table ({int(unknown.sum())} "
            "pixels); add them to the class table or to ignore_colours"
        )
    return out


def _span(values: list[int]) -> str:
    """``[0, 1, 2, 3]`` -> ``"0..3"``; otherwise the listed values."""
    values = sorted(values)
    if len(values) > 2 and values == list(range(values[0], values[-1] + 1)):
        return f"{values[0]}..{values[-1]}"
    return ", ".join(str(v) for v in values) if values else "none"
