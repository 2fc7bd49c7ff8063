"""Change losses: SAM-CD's temporal constraint and the weighted BCE + Dice + temporal sum."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from rs_sam.errors import ConfigError
from rs_sam.losses.change import ChangeLoss, temporal_consistency_loss
from rs_sam.models.samcd import SamCDOutput


def logits(*shape: int, seed: int) -> Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * 3


def labels(seed: int = 0, *, batch: int = 2, side: int = 16) -> Tensor:
    """(B, side, side) labels: 0 unchanged, 1 changed (a square), 255 ignored (a stripe)."""
    target = torch.zeros(batch, side, side, dtype=torch.long)
    target[:, 4:10, 5:12] = 1
    target[:, :, -2:] = 255
    return target


def output(seed: int, *, batch: int = 2, side: int = 16, k: int = 5) -> SamCDOutput:
    return SamCDOutput(
        change=logits(batch, 1, side, side, seed=seed).requires_grad_(),
        semantic_a=logits(batch, k, side, side, seed=seed + 1).requires_grad_(),
        semantic_b=logits(batch, k, side, side, seed=seed + 2).requires_grad_(),
    )


# --------------------------------------------------------------------------- temporal


def test_temporal_loss_is_zero_for_identical_distributions() -> None:
    a = logits(2, 5, 16, 16, seed=0)
    loss = temporal_consistency_loss(a, a.clone(), labels())
    assert float(loss) == pytest.approx(0.0, abs=1e-6)
    # A per-pixel constant shift leaves softmax unchanged.
    shifted = a + logits(2, 1, 16, 16, seed=1)
    assert float(temporal_consistency_loss(a, shifted, labels())) == pytest.approx(0, abs=1e-6)


def test_temporal_loss_is_positive_when_unchanged_pixels_differ() -> None:
    a, b = logits(2, 5, 16, 16, seed=0), logits(2, 5, 16, 16, seed=1)
    loss = temporal_consistency_loss(a, b, labels())
    assert 0 < float(loss) < 1
    # Matches the definition, computed by hand on the unchanged pixels.
    cos = F.cosine_similarity(F.softmax(a / 3, 1), F.softmax(b / 3, 1), dim=1)
    assert float(loss) == pytest.approx(float((1 - cos)[labels() == 0].mean()), rel=1e-5)


def test_temporal_loss_ignores_changed_and_ignored_pixels() -> None:
    a, b = logits(2, 5, 16, 16, seed=0), logits(2, 5, 16, 16, seed=1)
    target = labels()
    free = (target != 0).unsqueeze(1).expand_as(b)
    b_other = torch.where(free, logits(2, 5, 16, 16, seed=7), b)
    torch.testing.assert_close(
        temporal_consistency_loss(a, b, target), temporal_consistency_loss(a, b_other, target)
    )


def test_temporal_loss_gradient_reaches_unchanged_pixels_only() -> None:
    a = logits(2, 5, 16, 16, seed=0).requires_grad_()
    b = logits(2, 5, 16, 16, seed=1).requires_grad_()
    target = labels()
    temporal_consistency_loss(a, b, target).backward()
    assert a.grad is not None and b.grad is not None
    per_pixel = a.grad.abs().sum(1)
    assert (per_pixel[target == 0] > 0).all()
    assert (per_pixel[target != 0] == 0).all()


def test_temporal_loss_without_unchanged_pixels_is_a_differentiable_zero() -> None:
    a = logits(1, 5, 8, 8, seed=0).requires_grad_()
    b = logits(1, 5, 8, 8, seed=1)
    loss = temporal_consistency_loss(a, b, torch.ones(1, 8, 8, dtype=torch.long))
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert a.grad is not None and (a.grad == 0).all()


@pytest.mark.parametrize("temperature", [1.0, 0.5, 0.0])
def test_temporal_loss_rejects_temperature_not_above_one(temperature: float) -> None:
    a = logits(1, 5, 8, 8, seed=0)
    with pytest.raises(ConfigError, match=f"temperature={temperature}") as info:
        temporal_consistency_loss(a, a, torch.zeros(1, 8, 8), temperature=temperature)
    assert "\n" not in str(info.value)


def test_temporal_loss_resizes_semantic_maps_to_the_labels() -> None:
    a, b = logits(2, 5, 8, 8, seed=0), logits(2, 5, 8, 8, seed=1)
    target = labels()  # 16 x 16
    up = [F.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False) for x in (a, b)]
    torch.testing.assert_close(
        temporal_consistency_loss(a, b, target), temporal_consistency_loss(up[0], up[1], target)
    )
    with pytest.raises(ConfigError, match="same shape"):
        temporal_consistency_loss(a, logits(2, 4, 8, 8, seed=2), target)
    with pytest.raises(ConfigError, match="B = 2"):
        temporal_consistency_loss(a, b, target[:1])


def test_higher_temperature_softens_the_penalty() -> None:
    a, b = logits(2, 5, 16, 16, seed=0), logits(2, 5, 16, 16, seed=1)
    soft = temporal_consistency_loss(a, b, labels(), temperature=10.0)
    assert float(soft) < float(temporal_consistency_loss(a, b, labels(), temperature=2.0))


# --------------------------------------------------------------------------- ChangeLoss


def test_change_loss_total_is_the_weighted_sum() -> None:
    loss_fn = ChangeLoss(bce_weight=0.7, dice_weight=0.4, temporal_weight=2.5)
    terms = loss_fn(output(0), labels())
    assert set(terms) == {"loss", "bce", "dice", "temporal"}
    expected = 0.7 * terms["bce"] + 0.4 * terms["dice"] + 2.5 * terms["temporal"]
    torch.testing.assert_close(terms["loss"], expected)
    assert all(terms[k] > 0 for k in ("bce", "dice", "temporal"))
    terms["loss"].backward()


def test_change_loss_terms_match_their_definitions() -> None:
    out, target = output(1), labels()
    terms = ChangeLoss(pos_weight=3.0)(out, target)
    valid = target != 255
    logit, truth = out.change[:, 0][valid], (target[valid] == 1).float()
    bce = F.binary_cross_entropy_with_logits(logit, truth, pos_weight=torch.tensor(3.0))
    torch.testing.assert_close(terms["bce"], bce)
    prob = torch.sigmoid(logit)
    dice = 1 - (2 * (prob * truth).sum() + 1) / (prob.sum() + truth.sum() + 1)
    torch.testing.assert_close(terms["dice"], dice)
    temporal = temporal_consistency_loss(out.semantic_a, out.semantic_b, target)
    torch.testing.assert_close(terms["temporal"], temporal)


def test_change_loss_ignores_unlabelled_pixels() -> None:
    out, target = output(2), labels()
    ignored = (target == 255).unsqueeze(1)
    other = SamCDOutput(
        change=torch.where(ignored, torch.full_like(out.change, 40.0), out.change),
        semantic_a=torch.where(ignored, -out.semantic_a, out.semantic_a),
        semantic_b=out.semantic_b,
    )
    loss_fn = ChangeLoss(dice_weight=1.0)
    first, second = loss_fn(out, target), loss_fn(other, target)
    for key in first:
        torch.testing.assert_close(first[key], second[key])


def test_change_loss_near_zero_for_perfect_predictions() -> None:
    target = labels()
    semantic = logits(2, 5, 16, 16, seed=3)
    perfect = SamCDOutput(
        change=(target == 1).float().unsqueeze(1) * 40 - 20,
        semantic_a=semantic,
        semantic_b=semantic.clone(),
    )
    terms = ChangeLoss(dice_weight=1.0)(perfect, target.unsqueeze(1))  # (B, 1, H, W) accepted
    assert float(terms["loss"]) < 1e-2


def test_change_loss_resizes_predictions_to_the_target() -> None:
    out = output(4, side=8)
    terms = ChangeLoss()(out, labels(side=16))
    assert torch.isfinite(terms["loss"])


def test_change_loss_rejects_bad_labels_and_options() -> None:
    target = labels()
    target[0, 0, 0] = 2
    with pytest.raises(ConfigError, match=r"target holds \[2\]"):
        ChangeLoss()(output(0), target)
    with pytest.raises(ConfigError, match="expected"):
        ChangeLoss()(output(0), labels()[0])
    for bad in (
        {"temperature": 1.0},
        {"bce_weight": -1.0},
        {"bce_weight": 0.0, "temporal_weight": 0.0},
        {"pos_weight": 0.0},
        {"ignore_index": 1},
    ):
        with pytest.raises(ConfigError) as info:
            ChangeLoss(**bad)  # type: ignore[arg-type]
        assert "\n" not in str(info.value)


def test_pos_weight_follows_the_module_device_and_dtype() -> None:
    loss_fn = ChangeLoss(pos_weight=2.0).to(torch.float64)
    assert loss_fn.pos_weight is not None and loss_fn.pos_weight.dtype == torch.float64
    assert "pos_weight" not in loss_fn.state_dict()
