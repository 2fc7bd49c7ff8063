"""Pieces of automatic mask proposals that have an official counterpart."""

from __future__ import annotations

import torch
from torchvision.ops import masks_to_boxes

from rs_sam.models.mask_proposals import mask_boxes


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
