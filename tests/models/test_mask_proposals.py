"""Automatic mask proposals: pieces with an official counterpart, and the skip_covered mode."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import masks_to_boxes

from rs_sam.models.mask_proposals import (
    ProposalSettings,
    coarse_to_fine,
    mask_boxes,
    point_grid,
    propose_masks,
)


def test_mask_boxes_equal_torchvision_masks_to_boxes() -> None:
    generator = torch.Generator().manual_seed(0)
    masks = torch.zeros((40, 37, 53), dtype=torch.bool)
    for mask in masks:
        y0, x0 = torch.randint(0, 30, (2,), generator=generator).tolist()
        h, w = torch.randint(1, 20, (2,), generator=generator).tolist()
        mask[y0 : y0 + h, x0 : x0 + w] = (
            torch.rand((h, w), generator=generator)[
                : mask[y0 : y0 + h].shape[0], : mask[:, x0 : x0 + w].shape[1]
            ]
            < 0.3
        )
        mask[min(y0, 36), min(x0, 52)] = True  # never empty
    masks[3] = False
    masks[3, 36, 52] = True  # a single corner pixel
    assert torch.equal(mask_boxes(masks), masks_to_boxes(masks).long())


def test_empty_masks_get_a_zero_box() -> None:
    masks = torch.zeros((2, 5, 6), dtype=torch.bool)
    masks[1, 2:4, 1:5] = True
    assert mask_boxes(masks).tolist() == [[0, 0, 0, 0], [1, 2, 4, 3]]


# ---------------------------------------------------------------- skip_covered (approximate)


class _RegionDecoder:
    """A stand-in SAM decoder on a 64x64 input with 16x16 masks (one per point).

    A point in the left half returns the whole left half with predicted IoU ``left_iou``; a
    point in the right half returns the 2x2 block of mask pixels around it (IoU 0.5). Logits
    are +-10, so every mask is perfectly stable. Records the points it decodes.
    """

    input_size = 64

    def __init__(self, left_iou: float) -> None:
        self.left_iou = left_iou
        self.decoded: list[tuple[float, float]] = []

    def prepare(self, features: object) -> object:
        return features

    def decode(self, features: object, *, points: torch.Tensor, **_: object) -> tuple:
        logits = torch.full((len(points), 1, 16, 16), -10.0)
        iou = torch.empty(len(points), 1)
        for i, (x, y) in enumerate(points[:, 0].tolist()):
            self.decoded.append((x, y))
            if x < 32:
                logits[i, 0, :, :8] = 10.0
                iou[i] = self.left_iou
            else:
                r, c = int(y) // 4, int(x) // 4
                logits[i, 0, r // 2 * 2 : r // 2 * 2 + 2, c // 2 * 2 : c // 2 * 2 + 2] = 10.0
                iou[i] = 0.5
        return logits, iou, None, None


class _Features:
    embedding = torch.zeros(1)


def _settings(**kw: object) -> ProposalSettings:
    base = {"points_per_side": 8, "points_per_batch": 16, "pred_iou_thresh": 0.0,
            "stability_thresh": 0.0}  # fmt: skip
    return ProposalSettings(**{**base, **kw})  # type: ignore[arg-type]


def test_coarse_to_fine_visits_every_point_once_coarsest_first() -> None:
    order = coarse_to_fine(16)
    assert sorted(order.tolist()) == list(range(256))
    rows, cols = order // 16, order % 16
    # the first 64: every other row and column; the first 16 of them: every fourth
    assert ((rows[:64] % 2 == 0) & (cols[:64] % 2 == 0)).all()
    assert ((rows[:16] % 4 == 0) & (cols[:16] % 4 == 0)).all()
    assert order[:4].tolist() == [0, 8, 128, 136]
    assert coarse_to_fine(1).tolist() == [0]
    assert sorted(coarse_to_fine(5).tolist()) == list(range(25))


def test_exact_mode_decodes_every_grid_point_in_order() -> None:
    decoder = _RegionDecoder(left_iou=0.99)
    proposals = propose_masks(decoder, _Features(), settings=_settings())  # type: ignore[arg-type]
    grid = point_grid(8, 64)
    assert decoder.decoded == [tuple(p) for p in grid.tolist()]
    assert proposals.decoded == 64


def test_skip_covered_drops_points_inside_confident_masks_only() -> None:
    exact_decoder, fast_decoder = _RegionDecoder(0.99), _RegionDecoder(0.99)
    exact = propose_masks(exact_decoder, _Features(), settings=_settings())  # type: ignore[arg-type]
    fast = propose_masks(
        fast_decoder,
        _Features(),
        settings=_settings(skip_covered=0.9),  # type: ignore[arg-type]
    )
    grid = point_grid(8, 64)
    first = {tuple(p) for p in grid[coarse_to_fine(8)[:16]].tolist()}
    right = {tuple(p) for p in grid.tolist() if p[0] >= 32}
    # the first batch (every other row and column) is decoded whole; after it the left
    # half is covered, so only the right half's remaining points follow
    assert set(fast_decoder.decoded) == first | right
    assert fast.decoded == len(first | right) == 40
    # here the skipped points' masks were duplicates that NMS removes anyway
    assert len(fast) == len(exact)
    assert torch.equal(fast.masks.sum((1, 2)).sort().values, exact.masks.sum((1, 2)).sort().values)


def test_skip_covered_ignores_masks_below_its_confidence() -> None:
    decoder = _RegionDecoder(left_iou=0.85)
    proposals = propose_masks(
        decoder,
        _Features(),
        settings=_settings(skip_covered=0.9),  # type: ignore[arg-type]
    )
    assert proposals.decoded == 64  # the left-half masks are not confident enough
    assert sorted(decoder.decoded) == sorted(tuple(p) for p in point_grid(8, 64).tolist())


def test_skip_covered_must_be_a_fraction() -> None:
    for bad in (0.0, -0.5, 1.5):
        with pytest.raises(ValueError, match="skip_covered"):
            ProposalSettings(skip_covered=bad)
