"""Scale imagery to the 0..255 RGB range the SAM family expects: the one stretch.

uint8 imagery is used as it is. Any other type (uint16 reflectance, float) gets one
percentile stretch per band computed from BOTH dates together: stretching each date on
its own would turn radiometric differences between dates into apparent change.

Inference (:meth:`JointStretch.fit`, :meth:`JointStretch.fit_scene`) and the training
datasets (:func:`stretch_image`, the change datasets' pair stretch, the raster datasets'
decimated fit) all fit with :func:`percentile_stretch` and scale with
:meth:`JointStretch.apply`, so their normalisation cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from rs_sam.data.pair import BitemporalPair
from rs_sam.data.rasters import is_integer_8bit
from rs_sam.data.scene import Scene
from rs_sam.errors import InputRasterError

#: Low and high percentiles of the stretch of non-uint8 imagery.
PERCENTILES = (2.0, 98.0)


@dataclass(frozen=True)
class JointStretch:
    """Per-band linear stretch ``(value - low) / (high - low) * 255``, clipped."""

    low: tuple[float, ...]
    high: tuple[float, ...]

    @classmethod
    def identity(cls, bands: int) -> JointStretch:
        return cls(low=(0.0,) * bands, high=(255.0,) * bands)

    @classmethod
    def fit(
        cls, pair: BitemporalPair, *, percentiles: tuple[float, float] = PERCENTILES
    ) -> JointStretch:
        """Fit on a decimated read of both dates' overlap (valid pixels only).

        Raises:
            InputRasterError: the overlap holds no valid pixel in both dates.
        """
        image_a, image_b, valid = pair.read_overview()
        if not valid.any():
            raise InputRasterError(
                f"the overlap of {pair.a.label} and {pair.b.label} contains only nodata; "
                "check --nodata and the inputs' extents"
            )
        eight_bit = is_integer_8bit(pair.a.dtype) and is_integer_8bit(pair.b.dtype)
        return cls._from_samples([image_a, image_b], valid, eight_bit, percentiles)

    @classmethod
    def fit_scene(
        cls, scene: Scene, *, percentiles: tuple[float, float] = PERCENTILES
    ) -> JointStretch:
        """The same stretch for a single raster (segmentation), from a decimated read."""
        image, valid = scene.read_overview()
        return cls._from_samples([image], valid, scene.eight_bit, percentiles)

    @classmethod
    def _from_samples(
        cls,
        images: list[np.ndarray],
        valid: np.ndarray,
        eight_bit: bool,
        percentiles: tuple[float, float],
    ) -> JointStretch:
        """Percentiles of the valid pixels of all ``images`` (C, H, W) together, per band."""
        bands = images[0].shape[0]
        if eight_bit:
            return cls.identity(bands)
        samples = (np.concatenate([image[b][valid] for image in images]) for b in range(bands))
        return percentile_stretch(samples, percentiles)

    def apply(self, image: np.ndarray) -> np.ndarray:
        """(C, H, W) raw values -> (3, H, W) float32 in 0..255 (one band is replicated)."""
        low = np.asarray(self.low, dtype=np.float32)[:, None, None]
        high = np.asarray(self.high, dtype=np.float32)[:, None, None]
        scaled = np.clip((image - low) / (high - low), 0.0, 1.0) * 255.0
        if scaled.shape[0] == 1:
            scaled = np.repeat(scaled, 3, axis=0)
        return scaled.astype(np.float32, copy=False)


def percentile_stretch(
    band_samples: Iterable[np.ndarray], percentiles: tuple[float, float] = PERCENTILES
) -> JointStretch:
    """The stretch that maps each band's ``percentiles`` of its sample values to 0 and 255.

    Args:
        band_samples: One 1-D array of sample values per band (valid pixels only, of every
            image that shares the stretch). Values are used in the dtype given.
        percentiles: Low and high percentile.

    A band without samples maps 0..1; a constant band maps to mid-grey (its value +- 1)
    rather than dividing by zero.
    """
    low, high = [], []
    for values in band_samples:
        lo, hi = np.percentile(values, percentiles) if values.size else (0.0, 1.0)
        if hi <= lo:
            lo, hi = lo - 1.0, lo + 1.0
        low.append(float(lo))
        high.append(float(hi))
    return JointStretch(low=tuple(low), high=tuple(high))


def stretch_image(raw: np.ndarray, percentiles: tuple[float, float] = PERCENTILES) -> np.ndarray:
    """(C, H, W) raw values -> (3, H, W) float32 0..255: uint8 as is, else a per-band stretch.

    The stretch is fitted on the pixels finite in every band; other pixels become 0.
    """
    if is_integer_8bit(raw.dtype.name):
        return JointStretch.identity(raw.shape[0]).apply(raw.astype(np.float32))
    valid = np.isfinite(raw).all(axis=0)
    stretch = percentile_stretch((band[valid].astype(np.float64) for band in raw), percentiles)
    return stretch.apply(np.where(np.isfinite(raw), raw, 0).astype(np.float32, copy=False))
