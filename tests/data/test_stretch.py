"""The one percentile stretch: every path fits with percentile_stretch, results unchanged."""

from __future__ import annotations

import numpy as np
import pytest

from rs_sam.data.change_datasets.pair_files import scale_pair
from rs_sam.data.normalize import PERCENTILES, JointStretch, percentile_stretch, stretch_image
from rs_sam.data.segment_datasets import stretch_image as facade_stretch_image


def _reference_fit(samples: list[np.ndarray], percentiles: tuple[float, float]) -> JointStretch:
    """The fitting rule as the three copies wrote it before they became one."""
    low, high = [], []
    for values in samples:
        lo, hi = np.percentile(values, percentiles) if values.size else (0.0, 1.0)
        if hi <= lo:
            lo, hi = lo - 1.0, lo + 1.0
        low.append(float(lo))
        high.append(float(hi))
    return JointStretch(low=tuple(low), high=tuple(high))


def _raw(dtype: str, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    raw = (rng.random((3, 40, 50)) * 4000).astype(dtype)
    raw[2] = 7  # a constant band
    if np.dtype(dtype).kind == "f":
        raw[0, :5, :5] = np.nan
        raw[1, 10, :] = np.inf
    return raw


def test_percentile_stretch_rule() -> None:
    stretch = percentile_stretch(
        [np.arange(101.0), np.full(9, 5.0), np.array([])], percentiles=(10.0, 90.0)
    )
    assert stretch.low == (10.0, 4.0, 0.0)  # constant band: its value +- 1 (mid-grey)
    assert stretch.high == (90.0, 6.0, 1.0)  # no samples: 0..1
    assert PERCENTILES == (2.0, 98.0)


@pytest.mark.parametrize("dtype", ["uint16", "float32", "float64", "int16"])
def test_stretch_image_is_bit_identical_to_the_former_segment_stretch(dtype: str) -> None:
    raw = _raw(dtype)
    valid = np.isfinite(raw).all(axis=0)
    expected = _reference_fit([band[valid].astype(np.float64) for band in raw], PERCENTILES)
    image = stretch_image(raw)
    assert image.shape == (3, 40, 50) and image.dtype == np.float32
    np.testing.assert_array_equal(
        image, expected.apply(np.where(np.isfinite(raw), raw, 0).astype(np.float32))
    )
    assert facade_stretch_image is stretch_image  # the segment datasets use the same one


@pytest.mark.parametrize("dtype", ["uint16", "float32"])
def test_scale_pair_is_bit_identical_to_the_former_change_stretch(dtype: str) -> None:
    raw_a, raw_b = _raw(dtype, seed=1), _raw(dtype, seed=2)
    samples = []
    for band in range(3):
        values = np.concatenate([raw_a[band].ravel(), raw_b[band].ravel()]).astype(np.float64)
        samples.append(values[np.isfinite(values)])
    expected = _reference_fit(samples, (1.0, 99.0))
    a, b = scale_pair(raw_a, raw_b, (1.0, 99.0))
    np.testing.assert_array_equal(a, expected.apply(raw_a.astype(np.float32)))
    np.testing.assert_array_equal(b, expected.apply(raw_b.astype(np.float32)))


def test_inference_fit_uses_the_same_rule() -> None:
    """JointStretch's fit from samples (inference) equals the training rule on the same values."""
    rng = np.random.default_rng(3)
    a = (rng.random((3, 30, 30)) * 3000).astype(np.uint16).astype(np.float32)
    b = (rng.random((3, 30, 30)) * 3000).astype(np.uint16).astype(np.float32)
    valid = np.ones((30, 30), bool)
    valid[:4] = False
    fitted = JointStretch._from_samples([a, b], valid, False, PERCENTILES)
    samples = [np.concatenate([a[i][valid], b[i][valid]]) for i in range(3)]
    assert fitted == percentile_stretch(samples, PERCENTILES)
    assert fitted == _reference_fit(samples, PERCENTILES)
    assert JointStretch._from_samples([a, b], valid, True, PERCENTILES) == JointStretch.identity(3)


def test_uint8_is_used_as_it_is() -> None:
    raw = np.arange(4 * 5, dtype=np.uint8).reshape(1, 4, 5)
    expected = np.repeat(raw, 3, 0).astype(np.float32)
    np.testing.assert_array_equal(stretch_image(raw), expected)
    a, b = scale_pair(raw, raw + 1)
    np.testing.assert_array_equal(a, expected)
    np.testing.assert_array_equal(b, expected + 1)
