"""Geometric augmentation of bitemporal change samples.

The same flip/rotation is applied to both dates, the mask and any cached feature maps, so
pixels stay aligned across everything a sample carries. Only transforms of the pixel grid
(flips and quarter turns) are offered: they need no resampling, keep the mask's 0/1/255
values exact, and map a feature map's cells onto one another.
"""

from __future__ import annotations

import functools
import hashlib

import torch
from torch import Tensor
from torch.utils.data import get_worker_info

from rs_sam.data.change_datasets import ChangeDatasetError, ChangeSample
from rs_sam.errors import ConfigError

_IMAGE_KEYS = ("image_a", "image_b")
_FEATURE_KEYS = ("features_a", "features_b")


class GridAugment:
    """Random flips and quarter turns, each enabled one drawn with probability ``p``.

    The shared part of :class:`PairAugment` and
    :class:`~rs_sam.data.segment_augment.SegmentAugment`: options, their check, and the
    draws in the order horizontal flip, vertical flip, rotation by ``k`` quarter turns
    (``k`` uniform in 1..3); a subclass may draw more afterwards.

    Randomness: with ``seed=None`` the draws come from torch's global generator, which a
    DataLoader seeds differently in every worker and epoch. With a ``seed``, draws come from
    a private generator: in the main process it is seeded once with ``seed``; in a
    DataLoader worker it is seeded from ``seed`` and the worker's seed, so workers differ
    from each other and from epoch to epoch, reproducibly for a given ``torch.manual_seed``.

    Raises:
        ConfigError: ``p`` is outside ``[0, 1]``.
    """

    def __init__(
        self,
        *,
        hflip: bool = True,
        vflip: bool = True,
        rot90: bool = True,
        p: float = 0.5,
        seed: int | None = None,
    ) -> None:
        if isinstance(p, bool) or not isinstance(p, int | float) or not 0.0 <= p <= 1.0:
            raise ConfigError(f"p={p!r} is invalid; use a probability between 0 and 1 (e.g. 0.5)")
        self.hflip, self.vflip, self.rot90 = hflip, vflip, rot90
        self.p = float(p)
        self.seed = seed
        self._generator: torch.Generator | None = None
        self._generator_owner: int | None = None  # worker seed the generator was made for

    def _current_generator(self) -> torch.Generator | None:
        """None (torch's global generator) without a seed; else this process's own one."""
        if self.seed is None:
            return None
        info = get_worker_info()
        owner = -1 if info is None else int(info.seed)
        if self._generator is None or self._generator_owner != owner:
            digest = hashlib.sha256(f"{self.seed}:{owner}".encode()).digest()
            self._generator = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))
            self._generator_owner = owner
        return self._generator

    def _draw(self, generator: torch.Generator | None) -> bool:
        """True with probability ``p``."""
        return bool(torch.rand((), generator=generator).item() < self.p)

    def _draw_grid(self, generator: torch.Generator | None) -> tuple[bool, bool, int]:
        """``(hflip, vflip, turns)``: only enabled operations consume draws."""
        flip_h = self.hflip and self._draw(generator)
        flip_v = self.vflip and self._draw(generator)
        turns = 0
        if self.rot90 and self._draw(generator):
            turns = int(torch.randint(1, 4, (1,), generator=generator).item())
        return flip_h, flip_v, turns


def flip_turn(x: Tensor, *, hflip: bool = False, vflip: bool = False, turns: int = 0) -> Tensor:
    """Flip the last two dimensions of ``x`` (left-right, then up-down), then turn them.

    ``turns`` counts counter-clockwise quarter turns (``torch.rot90`` on ``(-2, -1)``).
    """
    if hflip:
        x = x.flip(-1)
    if vflip:
        x = x.flip(-2)
    if turns % 4:
        x = torch.rot90(x, turns % 4, dims=(-2, -1)).contiguous()
    return x


class PairAugment(GridAugment):
    """Random flips, quarter turns and date swaps of a :class:`ChangeSample`.

    Each enabled operation happens independently with probability ``p``, in the order
    horizontal flip, vertical flip, rotation by ``k`` quarter turns (``k`` uniform in 1..3),
    date swap; together the flips and turns reach all 8 symmetries of the square.

    The geometric operations act on the last two dimensions of ``image_a``/``image_b``
    ``(3, H, W)``, ``mask`` ``(H, W)`` and, when present, every map of ``features_a``/
    ``features_b`` (lists of ``(C, h, w)``), so a quarter turn of a non-square sample swaps
    ``H`` and ``W`` everywhere. Transforming cached features instead of re-encoding the
    transformed image is exact only for an encoder equivariant to flips and quarter turns;
    the SAM family is not (positional embeddings, windowed attention), so for cached
    features this is an approximation that trades some fidelity for skipping the encoder.

    ``swap_dates`` exchanges a and b (and their features). That is valid for binary change
    (change from a to b is change from b to a); do not use it for directional labels.

    Randomness as in :class:`GridAugment`: ``seed=None`` uses torch's global generator; a
    ``seed`` gives a private generator, seeded per DataLoader worker from ``seed`` and the
    worker's seed.

    Args:
        hflip: Allow left-right flips.
        vflip: Allow up-down flips.
        rot90: Allow rotations by 90, 180 or 270 degrees.
        swap_dates: Allow exchanging the two dates.
        p: Probability of each enabled operation, in ``[0, 1]``.
        seed: Seed of a private generator (see above), or None.

    Raises:
        ConfigError: ``p`` is outside ``[0, 1]``.
    """

    def __init__(
        self,
        *,
        hflip: bool = True,
        vflip: bool = True,
        rot90: bool = True,
        swap_dates: bool = False,
        p: float = 0.5,
        seed: int | None = None,
    ) -> None:
        super().__init__(hflip=hflip, vflip=vflip, rot90=rot90, p=p, seed=seed)
        self.swap_dates = swap_dates

    def __repr__(self) -> str:
        return (
            f"PairAugment(hflip={self.hflip}, vflip={self.vflip}, rot90={self.rot90}, "
            f"swap_dates={self.swap_dates}, p={self.p}, seed={self.seed})"
        )

    def __call__(self, sample: ChangeSample) -> ChangeSample:
        """A new sample with the drawn transform applied (the input is not modified)."""
        _check_sample(sample)
        generator = self._current_generator()
        flip_h, flip_v, turns = self._draw_grid(generator)
        swap = self.swap_dates and self._draw(generator)
        return apply_pair_transform(sample, hflip=flip_h, vflip=flip_v, turns=turns, swap=swap)


def apply_pair_transform(
    sample: ChangeSample,
    *,
    hflip: bool = False,
    vflip: bool = False,
    turns: int = 0,
    swap: bool = False,
) -> ChangeSample:
    """Apply one given transform to every spatial entry of ``sample`` (deterministic).

    Args:
        sample: Images ``(3, H, W)``, mask ``(H, W)``, optional feature lists ``(C, h, w)``.
        hflip: Flip left-right (last dimension).
        vflip: Flip up-down (second-to-last dimension).
        turns: Counter-clockwise quarter turns (``torch.rot90`` on the last two dimensions),
            applied after the flips.
        swap: Exchange dates a and b.

    Returns:
        A new dict; keys other than images, mask and features are passed through.
    """
    move = functools.partial(flip_turn, hflip=hflip, vflip=vflip, turns=turns)
    out: dict[str, object] = dict(sample)
    for key in (*_IMAGE_KEYS, "mask"):
        out[key] = move(sample[key])  # type: ignore[literal-required]
    for key in _FEATURE_KEYS:
        if key in sample:
            out[key] = [move(f) for f in sample[key]]  # type: ignore[literal-required]
    if swap:
        out["image_a"], out["image_b"] = out["image_b"], out["image_a"]
        if "features_a" in out and "features_b" in out:
            out["features_a"], out["features_b"] = out["features_b"], out["features_a"]
    return out  # type: ignore[return-value]


def _check_sample(sample: ChangeSample) -> None:
    """Raise ChangeDatasetError unless images and mask exist and share one pixel grid."""
    missing = [k for k in (*_IMAGE_KEYS, "mask") if k not in sample]
    if missing:
        raise ChangeDatasetError(
            f"sample lacks {missing}; PairAugment needs image_a, image_b and mask "
            f"(got keys {sorted(sample)})"
        )
    sizes = {
        "image_a": tuple(sample["image_a"].shape[-2:]),
        "image_b": tuple(sample["image_b"].shape[-2:]),
        "mask": tuple(sample["mask"].shape[-2:]),
    }
    if len(set(sizes.values())) != 1:
        raise ChangeDatasetError(
            f"sample {sample.get('name', '?')} has images and mask of different sizes {sizes}; "
            "they must share one pixel grid"
        )
    if ("features_a" in sample) != ("features_b" in sample):
        raise ChangeDatasetError(
            f"sample {sample.get('name', '?')} carries features of one date only; "
            "cache features_a and features_b together"
        )
