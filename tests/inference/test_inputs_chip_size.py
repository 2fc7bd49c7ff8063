"""The chip size: capped at the raster's extent, refused beyond the machine's memory."""

from __future__ import annotations

import pytest

from rs_sam.data.grid import RasterGrid
from rs_sam.errors import ConfigError
from rs_sam.inference import chip_size
from rs_sam.inference.chip_size import (
    BYTES_PER_CHIP_PIXEL,
    capped_chip_size,
    check_chip_memory,
    machine_memory_bytes,
    max_chip_size,
)
from rs_sam.inference.settings import SharedSettings
from tests.helpers.synthetic import ORIGIN, UTM33

GIB = 2**30


def _grid(width: int, height: int) -> RasterGrid:
    return RasterGrid(crs=UTM33, transform=ORIGIN, width=width, height=height)


@pytest.fixture
def memory(monkeypatch: pytest.MonkeyPatch):
    """Set the machine's memory seen by the chip-size check (bytes)."""

    def set_memory(value: int | None) -> None:
        monkeypatch.setattr(chip_size, "machine_memory_bytes", lambda: value)

    return set_memory


def test_a_chip_larger_than_the_raster_is_capped_but_not_below_the_model_input() -> None:
    assert capped_chip_size(8192, _grid(256, 256), 1024) == 1024  # the model's input
    assert capped_chip_size(8192, _grid(1500, 700), 1024) == 1504  # 1500 up to a multiple of 32
    assert capped_chip_size(8192, _grid(1, 3000), 1024) == 3008
    assert capped_chip_size(96, _grid(7, 5), 1024) == 96  # chips that fit are unchanged
    assert capped_chip_size(1024, _grid(10_000, 10_000), 1024) == 1024


def test_tiling_caps_the_chip_at_the_grid_and_keeps_chips_that_fit(memory) -> None:
    memory(64 * GIB)
    settings = SharedSettings(chip_size=8192)
    assert settings.tiling() == (8192, 2048)  # no grid: as asked
    assert settings.tiling(grid=_grid(256, 256)) == (1024, 256)  # mobile_sam's input is 1024
    assert settings.tiling(grid=_grid(2000, 300)) == (2016, 504)
    default = SharedSettings()
    assert default.tiling(grid=_grid(256, 256)) == default.tiling() == (1024, 256)
    big = _grid(5000, 5000)
    assert SharedSettings(chip_size=2048, overlap=100).tiling(grid=big) == (2048, 100)
    # a trained model's chip is the floor of the cap, and an explicit overlap is kept valid
    capped = SharedSettings(chip_size=4096, overlap=1500).tiling(512, grid=_grid(100, 100))
    assert capped == (512, 255)


def test_a_chip_beyond_the_machine_memory_is_refused_with_the_maximum(memory) -> None:
    memory(8 * GIB)
    largest = max_chip_size(8 * GIB)
    assert largest % 32 == 0 and largest**2 * BYTES_PER_CHIP_PIXEL <= 8 * GIB
    assert (largest + 32) ** 2 * BYTES_PER_CHIP_PIXEL > 8 * GIB
    check_chip_memory(largest)
    with pytest.raises(ConfigError, match=rf"more than .* 8\.0 GiB.*at most {largest}") as info:
        SharedSettings(chip_size=100_000).tiling(grid=_grid(100_000, 10))
    assert "\n" not in str(info.value)
    # capped first: the same request on a small raster runs with one small chip
    assert SharedSettings(chip_size=100_000).tiling(grid=_grid(300, 300))[0] == 1024


def test_an_unknown_memory_skips_the_check(memory) -> None:
    memory(None)
    assert SharedSettings(chip_size=100_000).tiling()[0] == 100_000


def test_the_machine_memory_is_read() -> None:
    value = machine_memory_bytes()
    assert value is None or value > 256 * 2**20
