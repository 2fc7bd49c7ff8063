"""UNetFormer: shapes on both backbones, freezing, aux head, cached features, checkpoints."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from rs_sam.errors import CheckpointError, CheckpointNotFoundError, ConfigError
from rs_sam.models.encoders import FrozenEncoder, load_encoder
from rs_sam.models.unetformer import UNetFormer
from rs_sam.models.unetformer_blocks import GlobalLocalAttention

pytestmark = pytest.mark.filterwarnings("ignore::rs_sam.models.encoders.base.RandomWeightsWarning")

#: A narrow decoder: the paper's width costs seconds per step on two CPU cores.
SMALL: dict[str, Any] = dict(decoder_channels=16, num_heads=2, window_size=4)
RESNET: dict[str, Any] = dict(backbone="resnet18", freeze_encoder=False, **SMALL)


def rgb(batch: int, height: int, width: int | None = None, *, seed: int = 0) -> Tensor:
    """Random RGB chips in 0..255, (B, 3, H, W)."""
    shape = (batch, 3, height, height if width is None else width)
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) * 255


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """One torch thread: on two shared cores, thread hand-offs cost ~10 ms per small op."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def encoder(one_thread: None) -> FrozenEncoder:
    """Tiny random MobileSAM (input 256), shared by the tests that keep it frozen."""
    torch.manual_seed(0)
    encoder = load_encoder("mobile_sam", weights="random", tiny=True)
    encoder(rgb(1, 64))  # warm up the CPU kernels outside the timed tests
    return encoder


def sam_model(encoder: FrozenEncoder, seed: int = 0, **kwargs: Any) -> UNetFormer:
    torch.manual_seed(seed)
    return UNetFormer(encoder, num_classes=kwargs.pop("num_classes", 5), **{**SMALL, **kwargs})


def adapters(model: UNetFormer) -> list[nn.Conv2d]:
    """The adapters' 1x1 convs, strides 4..32."""
    assert model.adapters is not None
    return [m for m in model.adapters.modules() if isinstance(m, nn.Conv2d)]


# --------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("side", [96, 300])
def test_sam_output_at_chip_size(encoder: FrozenEncoder, side: int) -> None:
    # The chip (96 or 300) differs from the encoder input (256): logits come back at the chip.
    assert encoder.input_size == 256
    model = sam_model(encoder).eval()
    with torch.no_grad():
        logits = model(rgb(2, side))
    assert logits.shape == (2, 5, side, side)
    assert torch.isfinite(logits).all()


def test_sam_window_not_dividing_maps(encoder: FrozenEncoder) -> None:
    # Maps of 64/32/16/8 px with 6 px windows: padded and masked, cropped back.
    model = sam_model(encoder, window_size=6).eval()
    with torch.no_grad():
        assert model(rgb(1, 80)).shape == (1, 5, 80, 80)


@pytest.mark.parametrize("size", [(64, 64), (70, 90)])
def test_resnet_output_shapes(size: tuple[int, int]) -> None:
    # 70 x 90 gives stage maps of 18x23, 9x12, 5x6, 3x3: none a multiple of the window.
    torch.manual_seed(0)
    model = UNetFormer(num_classes=4, aux_head=True, **RESNET)
    logits, aux = model(rgb(2, *size))
    assert logits.shape == aux.shape == (2, 4, *size)
    model.eval()
    with torch.no_grad():
        assert model(rgb(1, *size)).shape == (1, 4, *size)


def test_window_attention_masks_padding() -> None:
    # A 1x1 map in a 4x4 window: the only real key is the pixel itself, so the attention
    # returns its value vector whatever the padding holds.
    torch.manual_seed(0)
    attention = GlobalLocalAttention(8, num_heads=2, window_size=4).eval()
    x = torch.randn(2, 8, 1, 1)
    value = attention.qkv(x)[:, 16:]
    torch.testing.assert_close(attention._window_attention(x), value)
    assert attention(torch.randn(1, 8, 5, 7)).shape == (1, 8, 5, 7)


def test_window_attention_matches_per_pixel_reference() -> None:
    # A 6x7 map in 4x4 windows (padded to 8x8): each pixel attends to the real pixels of its
    # window only, with the relative position bias of the pair.
    torch.manual_seed(0)
    ws, heads, dim = 4, 2, 8
    attention = GlobalLocalAttention(dim, num_heads=heads, window_size=ws).eval()
    x = torch.randn(1, dim, 6, 7)
    with torch.no_grad():
        got = attention._window_attention(x)
        q, k, v = attention.qkv(x)[0].view(3, heads, dim // heads, 6, 7)
        table = attention.relative_bias
        expected = torch.zeros_like(got).view(heads, dim // heads, 6, 7)
        for y in range(6):
            for x0 in range(7):
                keys = [
                    (ky, kx)
                    for ky in range(y // ws * ws, min(6, y // ws * ws + ws))
                    for kx in range(x0 // ws * ws, min(7, x0 // ws * ws + ws))
                ]
                offsets = [
                    ((y - ky) + ws - 1) * (2 * ws - 1) + (x0 - kx) + ws - 1 for ky, kx in keys
                ]
                ky, kx = torch.tensor(keys).T
                logits = torch.einsum("hd,hdn->hn", q[:, :, y, x0], k[:, :, ky, kx])
                logits = logits / (dim // heads) ** 0.5 + table[offsets].T
                expected[:, :, y, x0] = torch.einsum(
                    "hn,hdn->hd", logits.softmax(-1), v[:, :, ky, kx]
                )
    torch.testing.assert_close(got, expected.view_as(got), atol=1e-5, rtol=1e-5)


def test_paper_sized_resnet_has_published_parameter_count() -> None:
    # The paper reports 11.7 M parameters for UNetFormer with ResNet-18 (6 classes).
    model = UNetFormer(backbone="resnet18", num_classes=6, freeze_encoder=False)
    assert 11.6e6 < model.count_parameters() < 11.8e6


# --------------------------------------------------------------------------- freezing


def test_frozen_encoder_gets_no_grad_head_does(encoder: FrozenEncoder) -> None:
    model = sam_model(encoder)
    assert all(not p.requires_grad for p in model.encoder.parameters())
    logits = model(rgb(2, 64))
    logits.logsumexp(1).mean().backward()
    assert all(p.grad is None for p in model.encoder.parameters())
    head = [p for n, p in model.named_parameters() if not n.startswith("encoder.")]
    assert head and all(p.grad is not None and torch.isfinite(p.grad).all() for p in head)
    assert all(c.weight.grad is not None and c.weight.grad.abs().sum() > 0 for c in adapters(model))
    trainable = sum(p.numel() for p in head)
    assert model.count_parameters() == trainable
    assert model.count_parameters(trainable_only=False) > trainable


def test_train_keeps_frozen_encoder_in_eval(encoder: FrozenEncoder) -> None:
    model = sam_model(encoder)
    model.train()
    assert model.training and model.decoder.training
    assert not any(m.training for m in model.encoder.modules())
    model.eval()
    assert not model.decoder.training


def test_fine_tuned_sam_encoder_trains(encoder: FrozenEncoder) -> None:
    torch.manual_seed(1)
    own = load_encoder("mobile_sam", weights="random", tiny=True)
    model = UNetFormer(own, num_classes=3, freeze_encoder=False, **SMALL)
    assert model.encoder.training  # follows the parent
    assert own.mask_decoder is not None
    assert all(not p.requires_grad for p in own.mask_decoder.parameters())
    model(rgb(1, 64)).mean().backward()
    grads = [p.grad for p in own.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    assert any(k.startswith("encoder.") for k in model.head_state_dict())


def write_fake_hub(folder: Path) -> dict[str, Path]:
    """What hf_hub_download would fetch for smp's ResNet-18: a config and random weights."""
    from safetensors.torch import save_file
    from segmentation_models_pytorch.encoders import get_encoder

    torch.manual_seed(7)
    weights = {k: v.contiguous() for k, v in get_encoder("resnet18").state_dict().items()}
    files = {"config.json": folder / "config.json", "model.safetensors": folder / "w.st"}
    files["config.json"].write_text("{}")
    save_file(weights, str(files["model.safetensors"]))
    return files


def test_resnet_imagenet_weights_frozen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from segmentation_models_pytorch import encoders as smp_encoders

    files = write_fake_hub(tmp_path)
    monkeypatch.setattr(
        smp_encoders, "hf_hub_download", lambda repo, filename, **_: str(files[filename])
    )
    model = UNetFormer(backbone="resnet18", num_classes=3, imagenet_weights=True, **SMALL)
    model.train()
    assert not any(m.training for m in model.encoder.modules())
    assert not any(k.startswith("encoder.") for k in model.head_state_dict())
    model(rgb(1, 64)).mean().backward()
    assert all(p.grad is None for p in model.encoder.parameters())


def test_resnet_imagenet_download_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    from segmentation_models_pytorch import encoders as smp_encoders

    def offline(*args: object, **kwargs: object) -> str:
        raise OSError("no network")

    monkeypatch.setattr(smp_encoders, "hf_hub_download", offline)
    with pytest.raises(CheckpointNotFoundError, match="Hugging Face hub cache"):
        UNetFormer(backbone="resnet18", num_classes=3, imagenet_weights=True)


# --------------------------------------------------------------------------- aux, cache, state


def test_aux_head_only_in_training(encoder: FrozenEncoder) -> None:
    model = sam_model(encoder, aux_head=True)
    out = model(rgb(2, 72))
    assert isinstance(out, tuple) and len(out) == 2
    assert out[0].shape == out[1].shape == (2, 5, 72, 72)
    assert not torch.equal(out[0], out[1])
    model.eval()
    with torch.no_grad():
        assert isinstance(model(rgb(1, 72)), Tensor)


def test_forward_features_equals_forward(encoder: FrozenEncoder) -> None:
    model = sam_model(encoder).eval()
    images = rgb(2, 80, seed=3)
    with torch.no_grad():
        cached = encoder(images).features
        torch.testing.assert_close(model.forward_features(cached, (80, 80)), model(images))
    with pytest.raises(ConfigError, match="channels"):
        model.forward_features([f[:, :4] for f in cached], (80, 80))
    with pytest.raises(ConfigError, match="four maps"):
        model.forward_features(cached[:3], (80, 80))
    with pytest.raises(ConfigError, match="size"):
        model.forward_features(cached, (80, 0))


def test_head_state_round_trip(encoder: FrozenEncoder) -> None:
    trained = sam_model(encoder, seed=1, aux_head=True)
    trained(rgb(2, 64))  # one training step's BN statistics
    trained.eval()
    state = trained.head_state_dict()
    assert state and not any(k.startswith("encoder.") for k in state)
    fresh = sam_model(encoder, seed=2, aux_head=True).eval()
    images = rgb(1, 64, seed=4)
    with torch.no_grad():
        assert not torch.equal(fresh(images), trained(images))
        fresh.load_head_state_dict(state)
        torch.testing.assert_close(fresh(images), trained(images), rtol=0, atol=0)


def test_mismatched_state_raises(encoder: FrozenEncoder) -> None:
    model = sam_model(encoder)
    state = model.head_state_dict()
    missing = dict(state)
    del missing["decoder.classifier.2.weight"]
    with pytest.raises(
        CheckpointError, match=r"\(1 missing keys \(decoder\.classifier\.2\.weight\)\)"
    ):
        model.load_head_state_dict(missing)
    with pytest.raises(CheckpointError, match=r"1 unexpected keys \(decoder\.extra\)"):
        model.load_head_state_dict({**state, "decoder.extra": torch.zeros(1)})
    other = sam_model(encoder, num_classes=7).head_state_dict()
    with pytest.raises(CheckpointError, match=r"shape mismatches \(decoder\.classifier\.2\."):
        model.load_head_state_dict(other)
    with pytest.raises(CheckpointError, match="unexpected"):
        model.load_head_state_dict(sam_model(encoder, aux_head=True).head_state_dict())


# --------------------------------------------------------------------------- arguments


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_classes": 1},
        {"num_classes": 3, "decoder_channels": 0},
        {"num_classes": 3, "decoder_channels": 16, "num_heads": 3},
        {"num_classes": 3, "window_size": 1},
        {"num_classes": 3, "dropout": 1.0},
        {"num_classes": 3, "adapter_reduction": 0},
        {"num_classes": 3, "backbone": "vit"},
        {"num_classes": 3, "imagenet_weights": True},
    ],
)
def test_bad_arguments(encoder: FrozenEncoder, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        UNetFormer(encoder, **kwargs)


def test_backbone_encoder_pairing(encoder: FrozenEncoder) -> None:
    with pytest.raises(ConfigError, match="FrozenEncoder"):
        UNetFormer(num_classes=3)
    with pytest.raises(ConfigError, match="encoder=None"):
        UNetFormer(encoder, backbone="resnet18", num_classes=3, freeze_encoder=False)
    with pytest.raises(ConfigError, match="freeze_encoder=False"):
        UNetFormer(backbone="resnet18", num_classes=3)
    with pytest.raises(ConfigError, match="adapter_reduction"):
        UNetFormer(backbone="resnet18", num_classes=3, freeze_encoder=False, adapter_reduction=2)


def test_adapter_widths_follow_encoder_channels(encoder: FrozenEncoder) -> None:
    convs = adapters(sam_model(encoder, adapter_reduction=4))
    assert [c.out_channels for c in convs] == [max(8, c // 4) for c in encoder.channels]
    assert [c.in_channels for c in convs] == list(encoder.channels)
