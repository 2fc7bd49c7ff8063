"""Band selection shared by both dates (1-based indexes, as in GDAL)."""

from __future__ import annotations

from collections.abc import Sequence

from rs_sam.data.rasters import RasterInfo
from rs_sam.errors import InputRasterError


def parse_bands(text: str | Sequence[int] | None) -> tuple[int, ...] | None:
    """``"4,3,2"`` -> ``(4, 3, 2)``; ``None`` stays ``None`` (choose automatically)."""
    if text is None:
        return None
    if isinstance(text, str):
        try:
            bands = tuple(int(part) for part in text.split(",") if part.strip())
        except ValueError as err:
            raise InputRasterError(
                f"--bands {text!r} is not a list of band numbers; use e.g. --bands 3,2,1"
            ) from err
    else:
        bands = tuple(int(b) for b in text)
    if len(bands) not in (1, 3) or any(b < 1 for b in bands):
        raise InputRasterError(
            f"--bands {text!r} must name 1 or 3 bands, numbered from 1 (e.g. --bands 3,2,1)"
        )
    return bands


def select_bands(infos: Sequence[RasterInfo], bands: Sequence[int] | None) -> tuple[int, ...]:
    """The band indexes read from every date.

    Without ``bands``: all dates must have the same band count; 1 band is used as it is
    (replicated to RGB later) and 3 or more bands use bands 1, 2, 3.
    """
    if bands is not None:
        for info in infos:
            missing = [b for b in bands if b > info.count]
            if missing:
                raise InputRasterError(
                    f"{info.label} has {info.count} band(s), so band(s) {missing} do not exist; "
                    "fix --bands"
                )
        return tuple(bands)
    counts = {info.count for info in infos}
    if len(counts) > 1:
        listed = ", ".join(f"{i.label}: {i.count}" for i in infos)
        raise InputRasterError(
            f"the inputs have different band counts ({listed}); choose the bands with --bands"
        )
    count = counts.pop()
    if count == 1:
        return (1,)
    if count == 2:
        raise InputRasterError(f"{infos[0].label} has 2 bands; choose 1 or 3 of them with --bands")
    return (1, 2, 3)
