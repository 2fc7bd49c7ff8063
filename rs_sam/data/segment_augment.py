"""Geometric augmentation of segmentation samples.

The same flip/quarter turn is applied to the image, the mask, the SAM object and boundary
maps and any cached feature maps, so every pixel keeps its label, object id and boundary
flag. Only transforms of the pixel grid are offered: no resampling, so ids stay exact.
"""

from __future__ import annotations

import functools

from rs_sam.data.augment import GridAugment, flip_turn
from rs_sam.data.segment_datasets import SegmentDatasetError, SegmentSample

#: Sample entries that live on the pixel grid (last two dimensions).
SPATIAL_KEYS = ("image", "mask", "objects", "boundary")


class SegmentAugment(GridAugment):
    """Random flips and quarter turns of a :class:`SegmentSample`.

    Each enabled operation happens independently with probability ``p``, in the order
    horizontal flip, vertical flip, rotation by ``k`` quarter turns (``k`` uniform in 1..3);
    together they reach all 8 symmetries of the square. They act on the last two dimensions
    of ``image``, ``mask``, ``objects``, ``boundary`` and every map of ``features`` (see
    :class:`~rs_sam.data.augment.PairAugment` on why that is only approximate for cached
    SAM features).

    Randomness as in :class:`~rs_sam.data.augment.GridAugment`: ``seed=None`` uses torch's
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

    def __repr__(self) -> str:
        return (
            f"SegmentAugment(hflip={self.hflip}, vflip={self.vflip}, rot90={self.rot90}, "
            f"p={self.p}, seed={self.seed})"
        )

    def __call__(self, sample: SegmentSample) -> SegmentSample:
        """A new sample with the drawn transform applied (the input is not modified)."""
        _check_sample(sample)
        flip_h, flip_v, turns = self._draw_grid(self._current_generator())
        return apply_segment_transform(sample, hflip=flip_h, vflip=flip_v, turns=turns)


def apply_segment_transform(
    sample: SegmentSample, *, hflip: bool = False, vflip: bool = False, turns: int = 0
) -> SegmentSample:
    """Apply one given transform to every spatial entry of ``sample`` (deterministic).

    Flips first (left-right on the last dimension, up-down on the one before), then
    ``turns`` counter-clockwise quarter turns (``torch.rot90``). Returns a new dict; other
    keys are passed through.
    """
    move = functools.partial(flip_turn, hflip=hflip, vflip=vflip, turns=turns)
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
