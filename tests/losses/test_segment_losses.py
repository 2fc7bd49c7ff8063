"""SSRS losses: object consistency, soft boundary F1, and the combined segmentation loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from rs_sam.errors import ConfigError
from rs_sam.losses.segment import (
    SegmentationLoss,
    boundary_loss,
    object_consistency_loss,
    soft_boundary,
)

#: Logit scale of "one-hot" predictions: softmax gives 1.0 and ~2e-9 in float32.
SHARP = 20.0


def one_hot_logits(labels: Tensor, classes: int) -> Tensor:
    """``(B, H, W)`` labels -> ``(B, C, H, W)`` logits whose softmax is one-hot in float32."""
    return SHARP * F.one_hot(labels, classes).permute(0, 3, 1, 2).float()


def square_labels(side: int = 16, lo: int = 4, hi: int = 11) -> Tensor:
    """``(1, side, side)``: class 1 inside rows/cols ``lo..hi-1``, class 0 elsewhere."""
    labels = torch.zeros(1, side, side, dtype=torch.long)
    labels[:, lo:hi, lo:hi] = 1
    return labels


def sam_boundary(labels: Tensor, classes: int) -> Tensor:
    """The boundary a SAM mask map gives: pixels with a differently labelled 8-neighbour.

    This is exactly what :func:`soft_boundary` returns for a one-hot map of the same labels
    (2 px wide, straddling each edge), so a prediction equal to ``labels`` matches it.
    """
    return soft_boundary(F.one_hot(labels, classes).permute(0, 3, 1, 2).float())


def random_logits(*shape: int, seed: int = 0) -> Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).requires_grad_()


# --------------------------------------------------------------------------- object term


def naive_object_loss(logits: Tensor, objects: Tensor) -> Tensor:
    """Loop reference: squared error (mean over classes) over all object pixels."""
    prob = F.softmax(logits, dim=1)
    errors = []
    for b in range(objects.shape[0]):
        for k in objects[b].unique().tolist():
            if k == 0:
                continue
            members = prob[b][:, objects[b] == k].T  # (N_k, C)
            errors.append((members - members.mean(0)).pow(2).mean(1))
    return torch.cat(errors).mean()


def test_object_loss_matches_loop_reference() -> None:
    generator = torch.Generator().manual_seed(1)
    objects = torch.randint(0, 5, (3, 10, 12), generator=generator)
    logits = random_logits(3, 4, 10, 12)
    got = object_consistency_loss(logits, objects)
    torch.testing.assert_close(got, naive_object_loss(logits, objects))


def test_object_loss_zero_when_constant_inside_each_object() -> None:
    # Three objects and background; inside each object the logits are one arbitrary vector
    # (not one-hot), so the softmax is constant there. Background pixels are random.
    objects = torch.zeros(2, 12, 12, dtype=torch.long)
    objects[0, :6, :6], objects[0, 6:, 3:], objects[1, 2:9, 2:9] = 1, 2, 1
    logits = torch.randn(2, 5, 12, 12, generator=torch.Generator().manual_seed(2))
    for b, k in ((0, 1), (0, 2), (1, 1)):
        vector = torch.randn(5, generator=torch.Generator().manual_seed(10 * b + k))
        logits[b][:, objects[b] == k] = vector[:, None]
    loss = object_consistency_loss(logits, objects)
    assert float(loss) < 1e-12


def test_object_loss_positive_when_object_split_between_classes() -> None:
    # One object, left half predicted class 0, right half class 1 (one-hot): mean (.5, .5),
    # every pixel is off by .5 in both classes, so the loss is (.25 + .25) / 2.
    objects = torch.ones(1, 8, 8, dtype=torch.long)
    labels = torch.zeros(1, 8, 8, dtype=torch.long)
    labels[:, :, 4:] = 1
    loss = object_consistency_loss(one_hot_logits(labels, 2), objects)
    assert float(loss) == pytest.approx(0.25, abs=1e-6)


def test_object_ids_are_per_image() -> None:
    # Id 1 in image 0 is all class 0 and in image 1 all class 1: two objects, both constant.
    objects = torch.ones(2, 6, 6, dtype=torch.long)
    labels = torch.stack([torch.zeros(6, 6), torch.ones(6, 6)]).long()
    assert float(object_consistency_loss(one_hot_logits(labels, 2), objects)) < 1e-12


def test_object_loss_differentiable() -> None:
    objects = torch.zeros(2, 8, 8, dtype=torch.long)
    objects[:, 2:7, 1:6] = 3
    logits = random_logits(2, 4, 8, 8)
    object_consistency_loss(logits, objects).backward()
    assert logits.grad is not None
    inside = logits.grad.permute(0, 2, 3, 1)[objects > 0]
    assert torch.isfinite(logits.grad).all() and inside.abs().sum() > 0
    assert logits.grad.permute(0, 2, 3, 1)[objects == 0].abs().sum() == 0


def test_object_loss_without_objects_is_connected_zero() -> None:
    logits = random_logits(1, 3, 5, 5)
    loss = object_consistency_loss(logits, torch.zeros(1, 5, 5, dtype=torch.long))
    assert float(loss.detach()) == 0 and loss.requires_grad
    loss.backward()
    assert logits.grad is not None and logits.grad.abs().sum() == 0


def test_object_loss_resizes_logits_and_rejects_bad_ids() -> None:
    objects = torch.ones(1, 8, 8, dtype=torch.long)
    assert object_consistency_loss(random_logits(1, 3, 4, 4), objects).ndim == 0
    with pytest.raises(ConfigError, match="negative"):
        object_consistency_loss(random_logits(1, 3, 8, 8), -objects)
    with pytest.raises(ConfigError, match="integer"):
        object_consistency_loss(random_logits(1, 3, 8, 8), objects.float())
    with pytest.raises(ConfigError, match="shape"):
        object_consistency_loss(random_logits(2, 3, 8, 8), objects)


# --------------------------------------------------------------------------- boundary term


def test_soft_boundary_of_one_hot_is_the_label_edge() -> None:
    labels = square_labels()
    edge = soft_boundary(F.softmax(one_hot_logits(labels, 2), dim=1))
    assert set(edge.unique().tolist()) == {0.0, 1.0}
    # 2 px band straddling the square's outline: rows/cols 3..11 minus the interior 5..9.
    expected = torch.zeros(1, 16, 16)
    expected[:, 3:12, 3:12] = 1
    expected[:, 5:10, 5:10] = 0
    torch.testing.assert_close(edge, expected)


@pytest.mark.parametrize("tolerance", [0, 2])
def test_boundary_loss_zero_for_perfect_prediction(tolerance: int) -> None:
    # The SAM boundary is the edge band of a square object; the prediction is that square
    # (one-hot logits), whose soft boundary is the same band, so P = R = F1 = 1.
    labels = square_labels().repeat(2, 1, 1)
    boundary = sam_boundary(labels, 3)
    loss = boundary_loss(one_hot_logits(labels, 3), boundary, tolerance=tolerance)
    assert float(loss) < 1e-6


def test_boundary_loss_one_when_every_boundary_missed() -> None:
    labels = square_labels()
    flat = one_hot_logits(torch.zeros_like(labels), 2)  # one class everywhere: no edge
    assert float(boundary_loss(flat, sam_boundary(labels, 2))) == pytest.approx(1.0)


def test_boundary_loss_positive_when_part_of_boundary_missed() -> None:
    sam_objects = square_labels()
    sam_objects[:, 12:15, 1:4] = 1  # a second object the prediction misses
    predicted = square_labels()
    loss = boundary_loss(one_hot_logits(predicted, 2), sam_boundary(sam_objects, 2))
    assert 0.05 < float(loss) < 0.95


def test_boundary_loss_tolerance_forgives_small_shifts() -> None:
    sam = sam_boundary(square_labels(lo=4, hi=11), 2)
    shifted = one_hot_logits(square_labels(lo=5, hi=12), 2)  # 1 px down and right
    assert float(boundary_loss(shifted, sam, tolerance=0)) > 0.1
    assert float(boundary_loss(shifted, sam, tolerance=1)) < 1e-6


def test_boundary_loss_differentiable() -> None:
    logits = random_logits(2, 4, 12, 12, seed=3)
    boundary = sam_boundary(square_labels(12, 3, 8).repeat(2, 1, 1), 2)
    loss = boundary_loss(logits, boundary)
    loss.backward()
    assert 0 < float(loss.detach()) < 1
    assert logits.grad is not None
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_boundary_loss_ignore_and_empty() -> None:
    labels = square_labels()
    boundary = sam_boundary(labels, 2)
    flat = random_logits(1, 2, 16, 16)
    # No SAM edge at all: skipped, a connected zero.
    loss = boundary_loss(flat, torch.zeros_like(boundary))
    assert float(loss.detach()) == 0 and loss.requires_grad
    loss.backward()
    # Every SAM edge inside the ignored area: nothing left to match.
    ignore = torch.zeros(1, 16, 16, dtype=torch.bool)
    ignore[:, 2:13, 2:13] = True
    assert float(boundary_loss(flat, boundary, ignore).detach()) == 0
    with pytest.raises(ConfigError, match="tolerance"):
        boundary_loss(flat, boundary, tolerance=-1)


# --------------------------------------------------------------------------- combined loss


def batch(seed: int = 0) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Logits (2, 3, 16, 16), targets with ignored pixels, SAM objects and boundary."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 3, 16, 16, generator=generator).requires_grad_()
    target = torch.randint(0, 3, (2, 16, 16), generator=generator)
    target[:, :3] = 255
    objects = square_labels().repeat(2, 1, 1)
    return logits, target, objects, sam_boundary(objects, 2)


def test_segmentation_loss_terms_and_total() -> None:
    logits, target, objects, boundary = batch()
    aux = torch.randn(2, 3, 8, 8).requires_grad_()
    criterion = SegmentationLoss(object_weight=1.0, boundary_weight=0.1, aux_weight=0.4)
    out = criterion(logits, target, objects, boundary, aux_logits=aux)
    assert set(out) == {"loss", "ce", "object", "boundary", "aux"}
    expected = out["ce"] + out["object"] + 0.1 * out["boundary"] + 0.4 * out["aux"]
    torch.testing.assert_close(out["loss"], expected)
    out["loss"].backward()
    assert logits.grad is not None and aux.grad is not None and aux.grad.abs().sum() > 0
    assert set(criterion(logits, target)) == {"loss", "ce"}


def test_segmentation_loss_zero_weights_drop_terms() -> None:
    logits, target, objects, boundary = batch()
    criterion = SegmentationLoss(object_weight=0, boundary_weight=0, aux_weight=0)
    out = criterion(logits, target, objects, boundary, aux_logits=logits)
    assert set(out) == {"loss", "ce"}
    torch.testing.assert_close(out["loss"], out["ce"])


def test_segmentation_loss_ignore_index() -> None:
    logits, target, objects, boundary = batch()
    out = SegmentationLoss()(logits, target)
    valid = target != 255
    reference = F.cross_entropy(logits.permute(0, 2, 3, 1)[valid], target[valid])
    torch.testing.assert_close(out["ce"], reference)
    # Logits under ignored pixels change nothing, not even the SAM terms.
    changed = logits.detach().clone()
    changed[:, :, :3] = 100 * torch.randn(2, 3, 3, 16)
    criterion = SegmentationLoss()
    a = criterion(logits, target, objects, boundary)
    b = criterion(changed, target, objects, boundary)
    for key in ("ce", "object", "boundary"):
        torch.testing.assert_close(a[key], b[key])
    # All pixels ignored: a finite, connected zero CE.
    empty = criterion(logits, torch.full_like(target, 255))
    assert float(empty["ce"].detach()) == 0 and empty["loss"].requires_grad


def test_segmentation_loss_objects_cut_by_ignore() -> None:
    # An object split between two classes, but the class-1 half is unlabelled: only the
    # constant half is left, so the object term is 0.
    labels = torch.zeros(1, 8, 8, dtype=torch.long)
    labels[:, :, 4:] = 1
    target = torch.zeros(1, 8, 8, dtype=torch.long)
    target[:, :, 4:] = 255
    out = SegmentationLoss()(one_hot_logits(labels, 2), target, torch.ones_like(target))
    assert float(out["object"]) < 1e-12


def test_segmentation_loss_class_weights_match_torch() -> None:
    logits, target, _, _ = batch()
    weights = [0.5, 2.0, 1.0]
    out = SegmentationLoss(class_weights=weights)(logits, target)
    reference = F.cross_entropy(logits, target, weight=torch.tensor(weights), ignore_index=255)
    torch.testing.assert_close(out["ce"], reference)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"object_weight": -1.0},
        {"boundary_weight": float("nan")},
        {"aux_weight": -0.1},
        {"class_weights": []},
        {"class_weights": [1.0, -1.0]},
        {"ignore_index": 1.5},
    ],
)
def test_segmentation_loss_rejects_bad_settings(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        SegmentationLoss(**kwargs)  # type: ignore[arg-type]


def test_segmentation_loss_rejects_bad_inputs() -> None:
    logits, target, _, _ = batch()
    with pytest.raises(ConfigError, match="class_weights"):
        SegmentationLoss(class_weights=[1.0, 1.0])(logits, target)
    bad = target.clone()
    bad[0, 5, 5] = 7
    with pytest.raises(ConfigError, match=r"\[7\]"):
        SegmentationLoss()(logits, bad)
    with pytest.raises(ConfigError, match="aux_logits"):
        SegmentationLoss()(logits, target, aux_logits=logits[:, :2])
