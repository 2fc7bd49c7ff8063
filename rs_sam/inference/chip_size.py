"""The chip size a run uses: capped at the raster's extent, refused beyond the machine's memory.

A chip larger than the raster is padding that costs memory and time for nothing: it is
capped at the raster's longest side rounded up to :data:`CHIP_MULTIPLE`, but never below the
model's own input (or trained chip) size, so chips that already fit are unchanged. A chip
whose working memory (about :data:`BYTES_PER_CHIP_PIXEL` per pixel) exceeds the machine's
memory is refused with the largest size that fits.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from rs_sam.data.grid import RasterGrid
from rs_sam.errors import ConfigError

#: Chips are capped to a multiple of this (the coarsest stride of the encoders' feature maps).
CHIP_MULTIPLE = 32

#: Peak memory per chip pixel of a run, measured: a 8192-pixel chip peaks 5.3 GB above a
#: 1024-pixel one (about 80 B/pixel: both dates' bands, the stretched chip, masks upsampled
#: to the chip, blend weights); rounded up for headroom.
BYTES_PER_CHIP_PIXEL = 96

_MEMINFO = Path("/proc/meminfo")


def capped_chip_size(chip_size: int, grid: RasterGrid, model_input: int) -> int:
    """``chip_size``, or less when one smaller chip covers the whole ``grid``.

    The cap is the grid's longest side rounded up to :data:`CHIP_MULTIPLE`, and at least
    ``model_input`` (the model's input or trained chip size).
    """
    longest = max(grid.width, grid.height)
    cover = math.ceil(longest / CHIP_MULTIPLE) * CHIP_MULTIPLE
    return min(chip_size, max(model_input, cover))


def machine_memory_bytes() -> int | None:
    """The machine's physical memory in bytes, or ``None`` where it cannot be read."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        pass
    try:
        for line in _MEMINFO.read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def max_chip_size(memory: int) -> int:
    """The largest chip (a multiple of :data:`CHIP_MULTIPLE`) whose memory fits ``memory``."""
    side = math.isqrt(max(0, memory) // BYTES_PER_CHIP_PIXEL)
    return max(CHIP_MULTIPLE, side // CHIP_MULTIPLE * CHIP_MULTIPLE)


def check_chip_memory(chip_size: int) -> None:
    """Refuse a chip whose estimated working memory exceeds the machine's memory.

    Raises:
        ConfigError: one line with the estimate, the machine's memory and the largest size.
    """
    memory = machine_memory_bytes()
    if memory is None:
        return
    need = chip_size * chip_size * BYTES_PER_CHIP_PIXEL
    if need > memory:
        raise ConfigError(
            f"chip size {chip_size} needs about {need / 2**30:.1f} GiB per chip, more than this "
            f"machine's {memory / 2**30:.1f} GiB of memory; use a chip size of at most "
            f"{max_chip_size(memory)} (--chip-size)"
        )
