"""AnyChange latent matching: mask embeddings, angles, per-chip scores."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rs_sam.change.anychange import change_angles, mask_embeddings, score_chip
from rs_sam.data.grid import ChipWindow
from rs_sam.data.pair import ChipPair
from rs_sam.models.mask_proposals import MaskProposals, point_grid, stability_score
from tests.helpers.stand_ins import ColourEncoder


def test_mask_embedding_is_the_mean_inside_the_mask() -> None:
    embedding = torch.zeros(2, 4, 4)
    embedding[0, :, :2] = 1.0  # left half of channel 0 is 1
    embedding[1] = 5.0
    masks = torch.zeros(2, 16, 16, dtype=torch.bool)
    masks[0, :, :8] = True  # left half
    masks[1, :, :] = True  # everything
    means = mask_embeddings(masks, embedding)
    torch.testing.assert_close(means[0], torch.tensor([1.0, 5.0]))
    torch.testing.assert_close(means[1], torch.tensor([0.5, 5.0]))


def test_angles_are_zero_for_same_and_180_for_opposite() -> None:
    masks = torch.ones(1, 8, 8, dtype=torch.bool)
    embed = torch.randn(6, 4, 4)
    assert change_angles(masks, embed, embed, None).item() < 1e-2
    assert abs(change_angles(masks, embed, -embed, None).item() - 180.0) < 1e-2


def test_score_chip_finds_the_changed_object() -> None:
    size = 64
    rng = np.random.default_rng(0)
    base = np.full((3, size, size), 60.0, np.float32) + rng.normal(0, 2, (3, size, size)).astype(
        np.float32
    )
    later = base.copy()
    later[:, 16:40, 24:48] = 230.0  # a new bright object
    low = torch.zeros(2, 16, 16, dtype=torch.bool)
    low[0, 4:10, 6:12] = True  # the object's mask at the decoder's resolution
    low[1, 10:16, 0:6] = True  # an unchanged patch
    oracle = lambda embedding: MaskProposals(low, torch.ones(2), torch.ones(2))  # noqa: E731
    chip = ChipPair(
        window=ChipWindow(row_off=0, col_off=0, size=size, index=0),
        image_a=base,
        image_b=later,
        valid=np.ones((size, size), bool),
    )
    result = score_chip(chip, base, later, ColourEncoder(), oracle)
    inside = result.probability[20:36, 28:44]
    unchanged = result.probability[44:60, 4:20]
    assert result.proposals == 4  # two masks from each date
    assert inside.min() > 145 / 180  # dark grey -> white: a wide angle
    assert unchanged.max() < 10 / 180
    assert result.probability[:, 56:].max() == 0.0  # no mask there


def test_invalid_pixels_never_score() -> None:
    size = 64
    image = np.full((3, size, size), 50.0, np.float32)
    later = np.full((3, size, size), 220.0, np.float32)
    whole = torch.ones(1, 16, 16, dtype=torch.bool)
    valid = np.ones((size, size), bool)
    valid[:, :20] = False
    chip = ChipPair(ChipWindow(0, 0, size, 0), image, later, valid)
    oracle = lambda embedding: MaskProposals(whole, torch.ones(1), torch.ones(1))  # noqa: E731
    result = score_chip(chip, image, later, ColourEncoder(), oracle)
    assert result.probability[:, :20].max() == 0.0
    assert result.probability[:, 24:].min() > 0.5


def test_point_grid_covers_pixel_centres() -> None:
    grid = point_grid(4, 64)
    assert grid.shape == (16, 2)
    assert grid[:, 0].unique().tolist() == [8.0, 24.0, 40.0, 56.0]


def test_stability_score() -> None:
    logits = torch.full((1, 4, 4), -5.0)
    logits[0, :2, :2] = 5.0  # confident: 4 px either way
    logits[0, 3, 3] = 0.5  # ambiguous pixel counts only in the looser mask
    assert stability_score(logits, 1.0).item() == pytest.approx(4 / 5)
