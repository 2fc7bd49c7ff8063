"""AnyChange latent matching: mask embeddings, angles, per-chip scores."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rs_sam.change import anychange
from rs_sam.change.anychange import change_angles, mask_embeddings, score_chip
from rs_sam.data.grid import ChipWindow
from rs_sam.data.pair import ChipPair
from rs_sam.models.decoding.features import encoder_features, images_per_pass
from rs_sam.models.encoders import load_encoder
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


class _Sized:
    """An encoder stand-in that only states its per-image activation estimate."""

    def __init__(self, activation_bytes: int | None) -> None:
        if activation_bytes is not None:
            self.activation_bytes = activation_bytes


def test_dates_are_batched_only_when_their_activations_are_small() -> None:
    mb = 2**20
    assert images_per_pass(_Sized(280 * mb), 2) == 1  # ViT-B at 1024 px: one date at a time
    assert images_per_pass(_Sized(100 * mb), 2) == 2  # MobileSAM: both dates together
    assert images_per_pass(_Sized(1 * mb), 2) == 2  # never more than asked
    assert images_per_pass(_Sized(None), 2) == 2  # no estimate: one batch


@pytest.mark.filterwarnings("ignore::rs_sam.models.encoders.base.RandomWeightsWarning")
@pytest.mark.parametrize("name", ["sam_vit_b", "mobile_sam"])
def test_scores_are_the_same_dates_batched_or_one_at_a_time(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    encoder = load_encoder(name, weights="random", tiny=True)
    assert images_per_pass(encoder, 2) == 2  # tiny models: small activations, one batch
    size = encoder.input_size
    rng = np.random.default_rng(1)
    image_a, image_b = (rng.uniform(0, 255, (3, size, size)).astype(np.float32) for _ in "ab")
    images = torch.from_numpy(np.stack([image_a, image_b]))
    together = encoder_features(encoder, images)
    apart = encoder_features(encoder, images, per_pass=1)
    torch.testing.assert_close(apart.embedding, together.embedding, rtol=1e-5, atol=1e-5)
    low = torch.zeros(2, 16, 16, dtype=torch.bool)
    low[0, 2:9, 3:12] = True
    low[1, 8:16, :] = True
    oracle = lambda features: MaskProposals(low, torch.ones(2), torch.ones(2))  # noqa: E731
    chip = ChipPair(ChipWindow(0, 0, size, 0), image_a, image_b, np.ones((size, size), bool))
    scores = {}
    for per_pass in (1, 2):
        monkeypatch.setattr(anychange, "images_per_pass", lambda enc, count, n=per_pass: n)
        scores[per_pass] = score_chip(chip, image_a, image_b, encoder, oracle).probability
    assert scores[1].max() > 0  # the masks have angles
    np.testing.assert_allclose(scores[1], scores[2], rtol=1e-5, atol=1e-6)
