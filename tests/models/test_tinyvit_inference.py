"""TinyViT with batch norms folded and GELUs in place equals the official modules."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
from torch import nn

from rs_sam.models.encoders import load_encoder
from rs_sam.models.encoders.tinyvit_inference import InPlaceGELU, _classes, fold_conv_bn
from tests.helpers.stand_ins import randomise_weights

OFFICIAL, FOLDED = _classes()


def _randomise(model: nn.Module, seed: int) -> None:
    """Random weights and batch-norm statistics (the defaults make the folding trivial)."""
    torch.manual_seed(seed)
    randomise_weights(model)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.normal_(0.0, 0.5)
            module.running_var.uniform_(0.5, 2.0)


def _official_copy(model: nn.Module) -> nn.Module:
    """``model`` with every folded Conv2d_BN and in-place GELU back to the official class."""
    model = copy.deepcopy(model)
    for module in model.modules():
        if type(module) is FOLDED:
            module.__class__ = OFFICIAL
        elif type(module) is InPlaceGELU:
            module.__class__ = nn.GELU
    return model


@pytest.fixture(scope="module")
def encoder():
    encoder = load_encoder("mobile_sam", weights="random", tiny=True)
    _randomise(encoder.sam.image_encoder, seed=0)
    return encoder


def test_every_conv_bn_is_folded_and_keys_are_unchanged(encoder) -> None:
    vit = encoder.sam.image_encoder
    kinds = {type(m) for m in vit.modules()}
    assert FOLDED in kinds and OFFICIAL not in kinds
    assert InPlaceGELU in kinds and nn.GELU not in kinds
    official = _official_copy(vit)
    assert list(vit.state_dict()) == list(official.state_dict())
    official.load_state_dict(vit.state_dict(), strict=True)
    assert fold_conv_bn(official) == sum(type(m) is FOLDED for m in vit.modules())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_encoder_outputs_equal_the_official_modules(encoder, dtype) -> None:
    folded = copy.deepcopy(encoder).to(dtype)
    official = copy.deepcopy(encoder).to(dtype)
    official.sam.image_encoder = _official_copy(official.sam.image_encoder)
    images = torch.rand(2, 3, 256, 256, generator=torch.Generator().manual_seed(1), dtype=dtype)
    with torch.inference_mode():
        got, want = folded(images * 255), official(images * 255)
    tol = 1e-4 if dtype == torch.float32 else 1e-10
    for a, b in zip([*got.features, got.embedding], [*want.features, want.embedding], strict=True):
        scale = b.abs().max().item()
        assert (a - b).abs().max().item() <= tol * scale
    # the folding really ran: the folded forward differs from BN(conv(x)) by rounding only
    assert any("_rs_sam_folded" in m.__dict__ for m in folded.sam.image_encoder.modules())


def test_changed_statistics_are_picked_up(encoder) -> None:
    pair = copy.deepcopy(encoder.sam.image_encoder.patch_embed.seq[0])
    x = torch.randn(1, 3, 32, 32)
    with torch.inference_mode():
        before = pair(x)
        pair.bn.running_var.mul_(4.0)  # in place: same storage, new version
        after = pair(x)
        pair.c.weight = nn.Parameter(pair.c.weight.detach() * 2.0)  # a new tensor
        replaced = pair(x)
        expected = OFFICIAL.forward(pair.eval(), x)
    assert not torch.allclose(before, after)
    torch.testing.assert_close(replaced, expected, rtol=1e-5, atol=1e-5)


def test_training_and_trainable_weights_take_the_official_path(encoder) -> None:
    pair = copy.deepcopy(encoder.sam.image_encoder.patch_embed.seq[0]).requires_grad_(True)
    x = torch.randn(2, 3, 16, 16)
    pair.train()
    out = pair(x)
    assert "_rs_sam_folded" not in pair.__dict__  # batch statistics: nothing folded
    out.sum().backward()
    assert pair.c.weight.grad is not None
    pair.eval()
    pair.c.weight.grad = None
    pair(x).sum().backward()  # trainable weights: gradients reach them
    assert pair.c.weight.grad is not None and "_rs_sam_folded" not in pair.__dict__


def test_frozen_weights_fold_and_pass_gradients_to_the_input(encoder) -> None:
    """As in LoRA training: frozen convolutions, gradients to what comes before them; the
    folded weight may first have been made under inference mode."""
    pair = copy.deepcopy(encoder.sam.image_encoder.patch_embed.seq[0]).eval()
    pair.requires_grad_(False)
    x = torch.randn(1, 3, 16, 16)
    with torch.inference_mode():
        pair(x)
    leaf = x.clone().requires_grad_(True)
    out = pair(leaf)
    out.square().sum().backward()
    official = copy.deepcopy(pair)
    official.__class__ = OFFICIAL
    leaf2 = x.clone().requires_grad_(True)
    official(leaf2).square().sum().backward()
    assert "_rs_sam_folded" in pair.__dict__
    torch.testing.assert_close(leaf.grad, leaf2.grad, rtol=1e-4, atol=1e-4)


def test_a_folded_encoder_pickles_without_its_cache(encoder) -> None:
    """As dask and torch.save(model) need: the folded class is found by name."""
    images = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(2)) * 255
    with torch.inference_mode():
        before = encoder(images).embedding  # fills the caches
        copied = pickle.loads(pickle.dumps(encoder))
        after = copied(images).embedding
    kinds = {type(m) for m in copied.sam.image_encoder.modules()}
    assert FOLDED in kinds and OFFICIAL not in kinds
    assert not any("_rs_sam_folded" in m.__dict__ for m in copy.deepcopy(encoder).modules())
    torch.testing.assert_close(after, before, rtol=0, atol=0)


def test_gelu_overwrites_its_input_only_without_autograd() -> None:
    gelu = InPlaceGELU()
    x = torch.randn(5, 7)
    expected = nn.functional.gelu(x)
    with torch.no_grad():
        y = x.clone()
        assert gelu(y) is y and torch.equal(y, expected)
    leaf = x.clone().requires_grad_(True)
    out = gelu(leaf)
    assert out is not leaf and torch.equal(leaf.detach(), x)
    out.sum().backward()
    official = x.clone().requires_grad_(True)
    nn.functional.gelu(official).sum().backward()
    torch.testing.assert_close(leaf.grad, official.grad)


def test_encoder_with_autograd_equals_without(encoder) -> None:
    """LoRA training runs TinyViT with autograd: the official GELUs, the same output."""
    images = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        fast = encoder._stages(images)[0][16]
    leaf = images.clone().requires_grad_(True)
    slow = encoder._stages(leaf)[0][16]
    slow.square().sum().backward()
    assert leaf.grad is not None and torch.isfinite(leaf.grad).all()
    torch.testing.assert_close(slow.detach(), fast, rtol=1e-5, atol=1e-5)
