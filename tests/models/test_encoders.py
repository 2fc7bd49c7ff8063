"""Frozen encoders: registry, shapes, freezing, prompt parts, warnings (tiny random models)."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from rs_sam.errors import (
    ConfigError,
    InputRasterError,
    MissingDependencyError,
    UnknownEncoderError,
)
from rs_sam.models.encoders import (
    EncoderOutput,
    EncoderSpec,
    FrozenEncoder,
    RandomWeightsWarning,
    get_encoder,
    list_encoders,
    load_encoder,
)

pytestmark = pytest.mark.filterwarnings("ignore::rs_sam.models.encoders.base.RandomWeightsWarning")

SAM_NAMES = ["mobile_sam", "sam_vit_b", "sam_vit_l", "sam_vit_h"]
HQ_NAMES = ["sam_hq_vit_b", "sam_hq_vit_l", "sam_hq_vit_h", "sam_hq_vit_tiny"]
SAM2_NAMES = ["sam2_hiera_tiny", "sam2_hiera_small", "sam2_hiera_base_plus", "sam2_hiera_large"]
FASTSAM_NAMES = ["fastsam_s", "fastsam_x"]
HAS_ULTRALYTICS = importlib.util.find_spec("ultralytics") is not None
needs_ultralytics = pytest.mark.skipif(
    not HAS_ULTRALYTICS, reason="ultralytics (the optional 'fastsam' extra) is not installed"
)


def rgb(batch: int = 2, side: int = 200) -> torch.Tensor:
    """Random RGB chips in 0..255, (B, 3, side, side)."""
    return torch.rand(batch, 3, side, side, generator=torch.Generator().manual_seed(0)) * 255


@pytest.fixture(scope="module")
def tiny_encoders() -> dict[str, FrozenEncoder]:
    """One tiny random encoder per SAM-family name, built once."""
    return {name: load_encoder(name, weights="random", tiny=True) for name in SAM_NAMES}


# --------------------------------------------------------------------------- registry


def test_registry_lists_names_default_first() -> None:
    assert list_encoders() == SAM_NAMES + HQ_NAMES + SAM2_NAMES + FASTSAM_NAMES


def test_unknown_encoder_lists_choices() -> None:
    with pytest.raises(UnknownEncoderError, match="sam_vit_b, sam_vit_l") as info:
        get_encoder("sam_vit_q")
    assert isinstance(info.value, ValueError)
    assert "'sam_vit_q'" in str(info.value) and "\n" not in str(info.value)


def test_specs_are_frozen_and_complete() -> None:
    for name in list_encoders():
        spec = get_encoder(name)
        assert isinstance(spec, EncoderSpec) and spec.name == name
        assert spec.strides == (4, 8, 16, 32) and len(spec.channels) == 4
        assert spec.checkpoint.url.endswith(spec.checkpoint.filename)
        assert (spec.embedding_dim is None) == (spec.family == "fastsam")
        assert (spec.extra == "fastsam") == (spec.family == "fastsam")
    with pytest.raises(dataclasses.FrozenInstanceError):
        get_encoder("mobile_sam").input_size = 512  # type: ignore[misc]
    assert get_encoder("sam_vit_b").channels == (768, 768, 256, 256)
    assert get_encoder("sam_vit_l").channels == (1024, 1024, 256, 256)
    assert get_encoder("sam_vit_h").channels == (1280, 1280, 256, 256)
    assert get_encoder("mobile_sam").channels == (64, 128, 320, 320)


# --------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("name", SAM_NAMES)
def test_tiny_sam_family_shapes(name: str, tiny_encoders: dict[str, FrozenEncoder]) -> None:
    enc = tiny_encoders[name]
    assert enc.spec is get_encoder(name)
    size = enc.input_size
    assert size == 256
    out = enc(rgb(2, 200))  # any square side: resized to the input size
    assert isinstance(out, EncoderOutput) and len(out.features) == 4
    for feature, stride, channels in zip(out.features, enc.strides, enc.channels, strict=True):
        assert feature.shape == (2, channels, size // stride, size // stride)
        assert feature.dtype == torch.float32 and torch.isfinite(feature).all()
    assert out.embedding is not None
    assert out.embedding.shape == (2, enc.embedding_dim, size // 16, size // 16)
    torch.testing.assert_close(enc.embed(rgb(2, 200)), out.embedding)


def test_tiny_channels_differ_from_full_spec(tiny_encoders: dict[str, FrozenEncoder]) -> None:
    assert tiny_encoders["sam_vit_b"].channels == (64, 64, 32, 32)
    assert tiny_encoders["sam_vit_b"].embedding_dim == 32
    assert tiny_encoders["mobile_sam"].channels == (16, 32, 320, 320)
    assert tiny_encoders["mobile_sam"].embedding_dim == 256


def test_vit_embedding_is_the_official_encoder_output(
    tiny_encoders: dict[str, FrozenEncoder],
) -> None:
    enc = tiny_encoders["sam_vit_b"]
    images = rgb(1, 256)
    with torch.no_grad():
        official = enc.sam.image_encoder(enc.preprocess(images))
    torch.testing.assert_close(enc.embed(images), official)
    # stride 16 is the embedding itself, stride 32 its 2x pool
    out = enc(images)
    torch.testing.assert_close(out.features[2], official)
    torch.testing.assert_close(out.features[3], nn.functional.max_pool2d(official, 2))


@pytest.mark.slow
def test_tinyvit_pyramid_matches_the_official_forward(monkeypatch: pytest.MonkeyPatch) -> None:
    """At 1024 input (where TinyViT's own forward works) the stage loop gives its embedding."""
    from rs_sam.models.encoders import sam as sam_module

    variant = dict(sam_module._TINYVIT_VARIANTS["tiny"], image_size=1024)
    monkeypatch.setitem(sam_module._TINYVIT_VARIANTS, "tiny", variant)
    enc = load_encoder("mobile_sam", weights="random", tiny=True)
    images = rgb(1, 1024)
    out = enc(images)
    with torch.no_grad():
        official, _ = enc.sam.image_encoder(enc.preprocess(images))
    torch.testing.assert_close(out.embedding, official)
    assert [tuple(f.shape[-2:]) for f in out.features] == [
        (256, 256),
        (128, 128),
        (64, 64),
        (32, 32),
    ]


def test_preprocess_normalises_with_sam_statistics(
    tiny_encoders: dict[str, FrozenEncoder],
) -> None:
    enc = tiny_encoders["sam_vit_b"]
    mean = torch.tensor(enc.spec.pixel_mean).view(1, 3, 1, 1)
    images = mean.expand(1, 3, 256, 256).clone()
    assert enc.preprocess(images).abs().max() < 1e-5
    assert enc.preprocess(images.to(torch.uint8)).shape == (1, 3, 256, 256)


@pytest.mark.parametrize(
    "shape", [(3, 64, 64), (1, 1, 64, 64), (1, 4, 64, 64), (1, 3, 64, 80), (0, 3, 64, 64)]
)
def test_bad_image_shapes_are_rejected(
    shape: tuple[int, ...], tiny_encoders: dict[str, FrozenEncoder]
) -> None:
    with pytest.raises(InputRasterError, match="got"):
        tiny_encoders["sam_vit_b"](torch.zeros(shape))


# --------------------------------------------------------------------------- prompts


@pytest.mark.parametrize("name", SAM_NAMES)
def test_prompt_encoder_and_mask_decoder_fit_the_embedding(
    name: str, tiny_encoders: dict[str, FrozenEncoder]
) -> None:
    enc = tiny_encoders[name]
    embedding = enc.embed(rgb(1, 256))  # (1, C, E, E)
    n_points = 5
    coords = torch.rand(n_points, 1, 2) * enc.input_size  # one point per prompt
    labels = torch.ones(n_points, 1, dtype=torch.int)
    with torch.no_grad():
        sparse, dense = enc.prompt_encoder(points=(coords, labels), boxes=None, masks=None)
        masks, iou = enc.mask_decoder(
            image_embeddings=embedding,
            image_pe=enc.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=True,
        )
    side = embedding.shape[-1] * 4
    assert masks.shape == (n_points, 3, side, side)
    assert iou.shape == (n_points, 3)


# --------------------------------------------------------------------------- freezing


class _Head(nn.Module):
    """A trainable head on top of a frozen encoder, as a Lightning module would hold."""

    def __init__(self, encoder: FrozenEncoder) -> None:
        super().__init__()
        self.encoder = encoder
        self.conv = nn.Conv2d(encoder.channels[0], 1, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.conv(self.encoder(images).features[0])


@pytest.mark.parametrize("name", ["mobile_sam", "sam_vit_b"])
def test_encoder_stays_frozen_under_parent_train(
    name: str, tiny_encoders: dict[str, FrozenEncoder]
) -> None:
    enc = tiny_encoders[name]
    head = _Head(enc)
    head.train()
    assert head.training and head.conv.training
    assert not enc.training
    assert not any(module.training for module in enc.modules())
    assert not any(p.requires_grad for p in enc.parameters())
    head(rgb(1, 256)).mean().backward()  # gradients reach the head only
    assert head.conv.weight.grad is not None
    assert all(p.grad is None for p in enc.parameters())
    out = enc(rgb(1, 256))
    assert not out.features[0].requires_grad and not out.embedding.requires_grad  # type: ignore[union-attr]


def test_train_mode_gives_identical_outputs(tiny_encoders: dict[str, FrozenEncoder]) -> None:
    enc = tiny_encoders["mobile_sam"]  # BatchNorm + TinyViT's cached attention biases
    images = rgb(1, 256)
    before = enc.embed(images)
    enc.train(True)
    torch.testing.assert_close(enc.embed(images), before)


# --------------------------------------------------------------------------- options


def test_random_weights_warn_on_load_and_on_every_use() -> None:
    with pytest.warns(RandomWeightsWarning, match="meaningless"):
        enc = load_encoder("sam_vit_b", weights="random", tiny=True)
    assert enc.random_weights
    with pytest.warns(RandomWeightsWarning, match="RANDOM"):
        enc(rgb(1, 64))
    with pytest.warns(RandomWeightsWarning, match="RANDOM"):
        enc.embed(rgb(1, 64))
    assert issubclass(RandomWeightsWarning, UserWarning)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(weights="pretrained"), "weights="),
        (dict(weights="random", checkpoint="x.pt"), "weights='official'"),
        (dict(tiny=True), "weights='random'"),
        (dict(weights="random", tiny=True, device="gpu7"), "device="),
    ],
)
def test_contradictory_options_are_rejected(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_encoder("sam_vit_b", **kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- FastSAM


@needs_ultralytics
@pytest.mark.parametrize("name", FASTSAM_NAMES)
def test_tiny_fastsam_shapes_and_no_embedding(name: str) -> None:
    enc = load_encoder(name, weights="random", tiny=True)
    assert enc.prompt_encoder is None and enc.mask_decoder is None
    assert enc.embedding_dim is None
    out = enc(rgb(2, 300))
    assert out.embedding is None
    for feature, stride, channels in zip(out.features, enc.strides, enc.channels, strict=True):
        assert feature.shape == (2, channels, 256 // stride, 256 // stride)
    with pytest.raises(ConfigError, match="no SAM image embedding"):
        enc.embed(rgb(1, 64))
    head = _Head(enc)
    head.train()
    assert not any(module.training for module in enc.modules())
    assert not any(p.requires_grad for p in enc.parameters())


@needs_ultralytics
@pytest.mark.slow
def test_fastsam_x_spec_channels_match_the_built_model() -> None:
    """The registry's channels are what the probe finds in the full-size model (-s: in
    test_checkpoints, which loads a full-size FastSAM-s file)."""
    spec = get_encoder("fastsam_x")
    enc = spec.builder(spec, tiny=False)
    assert enc.channels == spec.channels
    assert enc.input_size == spec.input_size == 1024


def test_fastsam_without_ultralytics_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ultralytics", None)
    monkeypatch.setitem(sys.modules, "ultralytics.nn.tasks", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'rs-sam\[fastsam\]'") as info:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RandomWeightsWarning)
            load_encoder("fastsam_x", weights="random", tiny=True)
    assert isinstance(info.value, ImportError) and info.value.exit_code == 1


def test_every_identifiable_checkpoint_has_an_encoder() -> None:
    """The checkpoints layer tells users 'use encoder X' for what it identifies: X must exist."""
    from rs_sam.checkpoints import IDENTIFIABLE
    from rs_sam.models.encoders import ENCODERS

    assert IDENTIFIABLE <= set(ENCODERS)


def test_official_spec_for_matches_official_file_names(tmp_path: Path) -> None:
    from rs_sam.models.encoders.verify import official_spec_for

    spec = official_spec_for(tmp_path / "sam_vit_b_01ec64.pth")
    assert spec is not None and spec.name == "sam_vit_b"
    assert official_spec_for(tmp_path / "fine_tuned.pth") is None
