"""SAM-CD network: shapes from any encoder, shared date weights, freezing, checkpoints."""

from __future__ import annotations

from typing import Any, cast

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rs_sam.errors import ConfigError, InputRasterError
from rs_sam.losses.change import ChangeLoss
from rs_sam.models.encoders import (
    EncoderOutput,
    FrozenEncoder,
    get_encoder,
    load_encoder,
)
from rs_sam.models.samcd import SamCD, SamCDOutput, adapter_channels

pytestmark = pytest.mark.filterwarnings("ignore::rs_sam.models.encoders.base.RandomWeightsWarning")

#: A narrow head: the published widths cost seconds per step on two CPU cores.
SMALL: dict[str, Any] = dict(
    latent_classes=4, decoder_channels=16, residual_blocks=1, change_channels=8
)
NAMES = ["mobile_sam", "sam_vit_b"]


def rgb(batch: int, side: int, seed: int) -> Tensor:
    """Random RGB chips in 0..255, (B, 3, side, side)."""
    return torch.rand(batch, 3, side, side, generator=torch.Generator().manual_seed(seed)) * 255


def tiny(name: str) -> FrozenEncoder:
    torch.manual_seed(0)
    return load_encoder(name, weights="random", tiny=True)


@pytest.fixture(scope="module")
def encoders() -> dict[str, FrozenEncoder]:
    """Tiny random encoders, shared by the tests that keep them frozen."""
    return {name: tiny(name) for name in NAMES}


class StubEncoder(FrozenEncoder):
    """Zero maps with given channels at strides 4..32 of a 64-pixel input."""

    def __init__(self, channels: tuple[int, int, int, int]) -> None:
        super().__init__(
            get_encoder("fastsam_x"), input_size=64, channels=channels, embedding_dim=None
        )
        self.random_weights = False

    def _encode(self, x: Tensor) -> EncoderOutput:
        maps = [
            torch.zeros(x.shape[0], c, 64 // s, 64 // s)
            for c, s in zip(self.channels, (4, 8, 16, 32), strict=True)
        ]
        return EncoderOutput(features=maps, embedding=None)

    def load_checkpoint(self, path: object) -> None:  # pragma: no cover - never called
        raise NotImplementedError


def head_parameters(model: SamCD) -> list[nn.Parameter]:
    return list(model.head.parameters())


# --------------------------------------------------------------------------- architecture


def test_encoders_differ_in_channels(encoders: dict[str, FrozenEncoder]) -> None:
    assert encoders["mobile_sam"].channels != encoders["sam_vit_b"].channels


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("side", [96, 128])
def test_output_shapes(encoders: dict[str, FrozenEncoder], name: str, side: int) -> None:
    encoder = encoders[name]
    model = SamCD(encoder, **SMALL).eval()
    assert model.head.adapter_widths == adapter_channels(encoder.channels)
    with torch.no_grad():
        out = model(rgb(2, side, 1), rgb(2, side, 2))
    assert isinstance(out, SamCDOutput)
    assert out.change.shape == (2, 1, side, side)
    assert out.semantic_a.shape == out.semantic_b.shape == (2, 4, side, side)
    assert torch.isfinite(out.change).all()


def test_published_widths_for_fastsam_x_channels() -> None:
    model = SamCD(StubEncoder((160, 320, 640, 640)))  # defaults = the published head
    head = model.head
    assert head.adapter_widths == (40, 80, 160, 160)
    first_convs = [next(m for m in b.modules() if isinstance(m, nn.Conv2d)) for b in head.decoder]
    assert [(c.in_channels, c.out_channels) for c in first_convs] == [
        (320, 80),
        (160, 40),
        (80, 64),
    ]
    assert len(head.change_blocks) == 6
    assert head.change_proj[0].in_channels == 128
    # The published head's parameter count, less the redundant bias of the attention's
    # first conv (followed by BN): 2,591,357 - 4.
    assert model.count_parameters() == 2_591_353
    with torch.no_grad():
        out = model.eval()(rgb(1, 64, 0), rgb(1, 64, 1))
    assert out.change.shape == (1, 1, 64, 64)


def test_narrow_channels_keep_eight_adapter_channels() -> None:
    assert adapter_channels((16, 32, 320, 320), 4) == (8, 8, 80, 80)
    model = SamCD(StubEncoder((4, 8, 12, 16)), **SMALL)
    assert model.head.adapter_widths == (8, 8, 8, 8)


def test_bilinear_upsampling_and_single_gate(encoders: dict[str, FrozenEncoder]) -> None:
    model = SamCD(encoders["sam_vit_b"], upsample="bilinear", attention_channels=1, **SMALL)
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in model.head.modules())
    assert model.head.attention[-2].out_channels == 1
    with torch.no_grad():
        out = model.eval()(rgb(1, 96, 0), rgb(1, 96, 1))
    assert out.change.shape == (1, 1, 96, 96)


def test_same_weights_for_both_dates(encoders: dict[str, FrozenEncoder]) -> None:
    model = SamCD(encoders["sam_vit_b"], **SMALL).eval()
    a, b = rgb(2, 96, 1), rgb(2, 96, 2)
    with torch.no_grad():
        out = model(a, b)
        swapped = model(b, a)
    torch.testing.assert_close(swapped.semantic_a, out.semantic_b)
    torch.testing.assert_close(swapped.semantic_b, out.semantic_a)


def test_forward_features_equals_forward(encoders: dict[str, FrozenEncoder]) -> None:
    encoder = encoders["mobile_sam"]
    model = SamCD(encoder, **SMALL).eval()
    a, b = rgb(2, 96, 3), rgb(2, 96, 4)
    with torch.no_grad():
        direct = model(a, b)
        cached = model.forward_features(encoder(a).features, encoder(b).features, (96, 96))
    for field in ("change", "semantic_a", "semantic_b"):
        torch.testing.assert_close(getattr(cached, field), getattr(direct, field))


# --------------------------------------------------------------------------- freezing


def test_frozen_encoder_gets_no_gradient_and_stays_in_eval(
    encoders: dict[str, FrozenEncoder],
) -> None:
    encoder = encoders["sam_vit_b"]
    model = SamCD(encoder, **SMALL)
    model.train()
    assert model.head.training and not encoder.training
    assert not any(m.training for m in encoder.modules())
    assert model.count_parameters() == sum(p.numel() for p in head_parameters(model))
    assert model.count_parameters(trainable_only=False) > model.count_parameters()

    out = model(rgb(2, 64, 5), rgb(2, 64, 6))
    target = (torch.rand(2, 64, 64, generator=torch.Generator().manual_seed(0)) > 0.5).long()
    ChangeLoss()(out, target)["loss"].backward()
    assert all(p.grad is None and not p.requires_grad for p in encoder.parameters())
    assert all(p.grad is not None for p in head_parameters(model))


@pytest.mark.parametrize("name", NAMES)
def test_unfrozen_encoder_is_fine_tuned(name: str) -> None:
    encoder = tiny(name)  # not the shared fixture: this test unfreezes it
    model = SamCD(encoder, freeze_encoder=False, **SMALL)
    image_encoder: Any = cast(Any, encoder).sam.image_encoder
    mask_decoder = encoder.mask_decoder
    assert all(p.requires_grad for p in image_encoder.parameters())
    assert mask_decoder is not None and not any(p.requires_grad for p in mask_decoder.parameters())

    model.train()
    assert encoder.training and image_encoder.training
    out = model(rgb(2, 64, 7), rgb(2, 64, 8))
    out.change.mean().backward()
    grads = [p.grad for p in image_encoder.patch_embed.parameters()]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)
    assert model.count_parameters() > sum(p.numel() for p in head_parameters(model))

    model.eval()
    assert not encoder.training
    with torch.no_grad():
        model(rgb(1, 64, 9), rgb(1, 64, 10))  # TinyViT's eval cache is rebuilt


# --------------------------------------------------------------------------- checkpoints


def test_head_state_dict_excludes_frozen_encoder_and_round_trips(
    encoders: dict[str, FrozenEncoder],
) -> None:
    encoder = encoders["sam_vit_b"]
    torch.manual_seed(1)
    trained = SamCD(encoder, **SMALL).eval()
    state = trained.head_state_dict()
    assert state and all(key.startswith("head.") for key in state)
    assert any(key.endswith("running_mean") for key in state)  # BN statistics travel too

    torch.manual_seed(2)
    fresh = SamCD(encoder, **SMALL).eval()
    a, b = rgb(1, 64, 11), rgb(1, 64, 12)
    with torch.no_grad():
        before = fresh(a, b).change
        fresh.load_head_state_dict(state)
        after = fresh(a, b).change
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, trained(a, b).change)


def test_load_head_state_dict_rejects_mismatch(encoders: dict[str, FrozenEncoder]) -> None:
    encoder = encoders["sam_vit_b"]
    model = SamCD(encoder, **SMALL)
    state = model.head_state_dict()
    other = SamCD(encoder, **{**SMALL, "latent_classes": 6})
    with pytest.raises(ConfigError, match=r"shape mismatches \(head\.semantic\.weight") as info:
        other.load_head_state_dict(state)
    assert "\n" not in str(info.value)
    partial = dict(state)
    partial.pop("head.semantic.bias")
    partial["extra.weight"] = torch.zeros(1)
    with pytest.raises(ConfigError, match=r"1 missing keys \(head\.semantic\.bias\); 1 unexpected"):
        model.load_head_state_dict(partial)


def test_head_state_dict_includes_fine_tuned_encoder() -> None:
    model = SamCD(tiny("sam_vit_b"), freeze_encoder=False, **SMALL)
    state = model.head_state_dict()
    assert any(key.startswith("encoder.") for key in state)
    model.load_head_state_dict(state)


# --------------------------------------------------------------------------- checks


def test_rejects_bad_inputs_and_options(encoders: dict[str, FrozenEncoder]) -> None:
    encoder = encoders["sam_vit_b"]
    model = SamCD(encoder, **SMALL)
    with pytest.raises(InputRasterError, match="differ"):
        model(rgb(1, 64, 0), rgb(1, 96, 0))
    features = encoder(rgb(1, 64, 0)).features
    with pytest.raises(ConfigError, match="built for"):
        model.forward_features([f[:, :4] for f in features], features, (64, 64))
    with pytest.raises(ConfigError, match="four maps"):
        model.forward_features(features[:3], features[:3], (64, 64))
    for bad in (
        {"latent_classes": 1},
        {"adapter_reduction": 0},
        {"residual_blocks": -1},
        {"attention_channels": 3},
        {"upsample": "nearest"},
    ):
        with pytest.raises(ConfigError) as info:
            SamCD(encoder, **{**SMALL, **bad})  # type: ignore[arg-type]
        assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="FrozenEncoder"):
        SamCD(nn.Identity())  # type: ignore[arg-type]


# --------------------------------------------------------------------------- training


@pytest.mark.slow
def test_overfits_one_pair(encoders: dict[str, FrozenEncoder]) -> None:
    """A few dozen Adam steps on one synthetic pair drive the BCE down clearly."""
    encoder = encoders["sam_vit_b"]
    torch.manual_seed(0)
    model = SamCD(encoder, **SMALL).train()
    a = rgb(2, 64, 20)
    b = a.clone()
    b[:, :, 16:40, 24:48] = 255.0 - b[:, :, 16:40, 24:48]  # a painted change
    target = torch.zeros(2, 64, 64, dtype=torch.long)
    target[:, 16:40, 24:48] = 1
    features_a, features_b = encoder(a).features, encoder(b).features  # cached once
    loss_fn = ChangeLoss(dice_weight=0.5)
    optimizer = torch.optim.Adam(model.head.parameters(), lr=1e-2)
    history = []
    for _ in range(40):
        terms = loss_fn(model.forward_features(features_a, features_b, (64, 64)), target)
        optimizer.zero_grad()
        terms["loss"].backward()
        optimizer.step()
        history.append(float(terms["bce"].detach()))
    assert history[-1] < 0.3 * history[0]
    model.eval()
    with torch.no_grad():
        change = model.forward_features(features_a, features_b, (64, 64)).change[:, 0]
    accuracy = ((change > 0).long() == target).float().mean()
    assert accuracy > 0.9
    assert F.binary_cross_entropy_with_logits(change, target.float()) < history[0]
