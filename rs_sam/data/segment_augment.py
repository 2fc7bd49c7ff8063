"""Geometric augmentation of segmentation samples.

The same flip/quarter turn is applied to the image, the mask, the SAM object and boundary
maps and any cached feature maps, so every pixel keeps its label, object id and boundary
flag. Only transforms of the pixel grid are offered: no resampling, so ids stay exact.
"""

from __future__ import annotations

import hashlib

import torch
from torch import Tensor
from torch.utils.data import get_worker_info

from rs_sam.data.segment_datasets import SegmentDatasetError, SegmentSample
from rs_sam.errors import ConfigError

#: Sample entries that live on the pixel grid (last two dimensions).
SPATIAL_KEYS = ("image", "mask", "objects", "boundary")


class SegmentAugment:
    """Random flips and quarter turns of a :class:`SegmentSample`.

    Each enabled operation happens independently with probability ``p``, in the order
    horizontal flip, vertical flip, rotation by ``k`` quarter turns (``k`` uniform in 1..3);
    together they reach all 8 symmetries of the square. They act on the last two dimensions
    of ``image``, ``mask``, ``objects``, ``boundary`` and every map of ``features`` (see
    :class:`~rs_sam.data.augment.PairAugment` on why that is only approximate for cached
    SAM features).

    Randomness as in :class:`~rs_sam.data.augment.PairAugment`: ``seed=None`` uses torch's
    global generator; a ``seed`` gives a private generator, seeded per DataLoader worker
    from ``seed`` and the worker's seed.

    Args:
        hflip: Allow left-right flips.
        vflip: Allow up-down flips.
        rot90: Allow rotations by 90, 180 or 270 degrees.
        p: Probability of each enabled operation, in ``[0, 1]``.
        seed: Seed of a private generator, or None.

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
        self._generator_owner: int | None = None

    def __repr__(self) -> str:
        return (
            f"SegmentAugment(hflip={self.hflip}, vflip={self.vflip}, rot90={self.rot90}, "
            f"p={self.p}, seed={self.seed})"
        )

    def __call__(self, sample: SegmentSample) -> SegmentSample:
        """A new sample with the drawn transform applied (the input is not modified)."""
        _check_sample(sample)
        generator = self._current_generator()
        flip_h = self.hflip and self._draw(generator)
        flip_v = self.vflip and self._draw(generator)
        turns = 0
        if self.rot90 and self._draw(generator):
            turns = int(torch.randint(1, 4, (1,), generator=generator).item())
        return apply_segment_transform(sample, hflip=flip_h, vflip=flip_v, turns=turns)

    def _draw(self, generator: torch.Generator | None) -> bool:
        return bool(torch.rand((), generator=generator).item() < self.p)

    def _current_generator(self) -> torch.Generator | None:
        if self.seed is None:
            return None
        info = get_worker_info()
        owner = -1 if info is None else int(info.seed)
        if self._generator is None or self._generator_owner != owner:
            digest = hashlib.sha256(f"{self.seed}:{owner}".encode()).digest()
            self._generator = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))
            self._generator_owner = owner
        return self._generator


def apply_segment_transform(
    sample: SegmentSample, *, hflip: bool = False, vflip: bool = False, turns: int = 0
) -> SegmentSample:
    """Apply one given transform to every spatial entry of ``sample`` (deterministic).

    Flips first (left-right on the last dimension, up-down on the one before), then
    ``turns`` counter-clockwise quarter turns (``torch.rot90``). Returns a new dict; other
    keys are passed through.
    """

    def move(x: Tensor) -> Tensor:
        if hflip:
            x = x.flip(-1)
        if vflip:
            x = x.flip(-2)
        if turns % 4:
            x = torch.rot90(x, turns % 4, dims=(-2, -1)).contiguous()
        return x

    out: dict[str, object] = dict(sample)
    for key in SPATIAL_KEYS:
        if key in sample:
            out[key] = move(sample[key])  # type: ignore[literal-required]
    if "features" in sample:
        out["features"] = [move(f) for f in sample["features"]]
    return out  # type: ignore[return-value]


def _check_sample(sample: SegmentSample) -> None:
    """Raise SegmentDatasetError unless a mask exists and all maps share its pixel grid."""
    if "mask" not in sample:
        raise SegmentDatasetError(
            f"sample {sample.get('name', '?')} has no mask; SegmentAugment needs a mask "
            f"(got keys {sorted(sample)})"
        )
    sizes = {k: tuple(sample[k].shape[-2:]) for k in SPATIAL_KEYS if k in sample}  # type: ignore[literal-required]
    if len(set(sizes.values())) != 1:
        raise SegmentDatasetError(
            f"sample {sample.get('name', '?')} has maps of different sizes {sizes}; "
            "they must share one pixel grid"
        )
