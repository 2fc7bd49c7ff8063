"""Scale imagery to the 0..255 RGB range the SAM family expects.

uint8 imagery is used as it is. Any other type (uint16 reflectance, float) gets one
percentile stretch per band computed from BOTH dates together: stretching each date on
its own would turn radiometric differences between dates into apparent change.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rs_sam.data.pair import BitemporalPair
from rs_sam.data.rasters import is_integer_8bit
from rs_sam.data.scene import Scene
from rs_sam.errors import InputRasterError


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
        cls, pair: BitemporalPair, *, percentiles: tuple[float, float] = (2.0, 98.0)
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
        cls, scene: Scene, *, percentiles: tuple[float, float] = (2.0, 98.0)
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
        low, high = [], []
        for band in range(bands):
            values = np.concatenate([image[band][valid] for image in images])
            lo, hi = np.percentile(values, percentiles)
            if hi <= lo:  # constant band: map it to mid-grey rather than divide by zero
                lo, hi = lo - 1.0, lo + 1.0
            low.append(float(lo))
            high.append(float(hi))
        return cls(low=tuple(low), high=tuple(high))

    def apply(self, image: np.ndarray) -> np.ndarray:
        """(C, H, W) raw values -> (3, H, W) float32 in 0..255 (one band is replicated)."""
        low = np.asarray(self.low, dtype=np.float32)[:, None, None]
        high = np.asarray(self.high, dtype=np.float32)[:, None, None]
        scaled = np.clip((image - low) / (high - low), 0.0, 1.0) * 255.0
        if scaled.shape[0] == 1:
            scaled = np.repeat(scaled, 3, axis=0)
        return scaled.astype(np.float32, copy=False)
