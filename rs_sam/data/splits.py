"""Reproducible train/validation splits of a dataset's pairs or images, by name."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterable

from rs_sam.data.image_files import format_list
from rs_sam.errors import ConfigError


def make_split(
    names: Iterable[str],
    val_fraction: float,
    seed: int,
    *,
    group: Callable[[str], str] | None = None,
) -> tuple[list[str], list[str]]:
    """Hold out pairs for validation, reproducibly.

    The result depends only on the set of names, ``val_fraction`` and ``seed`` (not on the
    listing order). With ``val_fraction > 0`` and at least two groups, validation gets at
    least one group and training keeps at least one.

    Args:
        names: Pair names (e.g. ``dataset.pair_names``), unique.
        val_fraction: Share of groups held out, ``0 <= val_fraction < 1``.
        seed: Seed of the shuffle.
        group: Maps a name to its group; a group is never split (e.g. LEVIR-CD crops
            ``test_2_0000_0512.png`` of one scene: ``lambda n: "_".join(n.split("_")[:2])``).

    Returns:
        ``(train, val)`` names, each in input order.

    Raises:
        ConfigError: ``val_fraction`` out of range or duplicate names.
    """
    names = list(names)
    if isinstance(val_fraction, bool) or not 0 <= val_fraction < 1:
        raise ConfigError(f"val_fraction={val_fraction!r} is invalid; use 0 <= val_fraction < 1")
    duplicates = sorted(n for n, count in Counter(names).items() if count > 1)
    if duplicates:
        raise ConfigError(
            f"names {format_list(duplicates)} appear more than once; pass unique names"
        )
    key = group if group is not None else (lambda n: n)
    groups = sorted({key(n) for n in names})
    n_val = round(len(groups) * val_fraction)
    if val_fraction > 0 and len(groups) >= 2:
        n_val = min(max(n_val, 1), len(groups) - 1)
    random.Random(seed).shuffle(groups)
    held_out = set(groups[:n_val])
    train = [n for n in names if key(n) not in held_out]
    val = [n for n in names if key(n) in held_out]
    return train, val
