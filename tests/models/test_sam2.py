"""SAM 2.1 encoders: registry, the tiny build, strict loading of every layout, refusals of
other generations, and decoding through SamDecoder equal to transformers' Sam2Model."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from rs_sam.checkpoints import identify_checkpoint
from rs_sam.errors import CheckpointError, ConfigError
from rs_sam.models.decoding import SamDecoder
from rs_sam.models.encoders import DEFAULT_ENCODER, get_encoder, load_encoder
from rs_sam.models.encoders import sam2 as sam2_module
from rs_sam.models.encoders.sam2 import Sam2Encoder, build_sam2
from tests.helpers.sam2_files import meta_state_dict, transformers_state_dict

pytestmark = pytest.mark.filterwarnings("ignore::rs_sam.models.encoders.base.RandomWeightsWarning")

SIZES = {
    "sam2_hiera_tiny": (96, 192, 384, 768),
    "sam2_hiera_small": (96, 192, 384, 768),
    "sam2_hiera_base_plus": (112, 224, 448, 896),
    "sam2_hiera_large": (144, 288, 576, 1152),
}
URL = "https://dl.fbaipublicfiles.com/segment_anything_2/092824/"


def rgb(batch: int = 1, side: int = 200, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, 3, side, side, generator=torch.Generator().manual_seed(seed)) * 255


def tiny(seed: int = 0) -> Sam2Encoder:
    torch.manual_seed(seed)
    encoder = load_encoder("sam2_hiera_tiny", weights="random", tiny=True)
    assert isinstance(encoder, Sam2Encoder)
    return encoder


@pytest.fixture(scope="module")
def encoder() -> Sam2Encoder:
    return tiny()


def _as_transformers(encoder: Sam2Encoder, *, video: bool = True) -> dict[str, torch.Tensor]:
    """The encoder's weights in transformers' layout (with two video-model tensors)."""
    state = {
        k.replace("image_encoder.", "vision_encoder.", 1): v.clone()
        for k, v in encoder.sam.state_dict().items()
    }
    if video:
        state["memory_attention.layers.0.self_attn.q_proj.weight"] = torch.zeros(4, 4)
        state["occlusion_spatial_embedding_parameter"] = torch.zeros(1, 64)
    return state


# ----------------------------------------------------------------------------- registry


@pytest.mark.parametrize("name", list(SIZES))
def test_registry_entries(name: str) -> None:
    spec = get_encoder(name)
    assert spec.family == "sam2" and spec.licence == "Apache-2.0" and spec.input_size == 1024
    assert spec.channels == SIZES[name] and spec.embedding_dim == 256 and not spec.hq
    file = name.replace("sam2_", "sam2.1_") + ".pt"
    assert spec.checkpoint.filename == file and spec.checkpoint.url == URL + file
    assert spec.checkpoint.size is None and spec.checkpoint.sha256 is None  # none published
    assert spec.pixel_mean == (123.675, 116.28, 103.53)  # ImageNet mean (0..1) x 255
    assert spec.pixel_std == (58.395, 57.12, 57.375)
    assert DEFAULT_ENCODER == "mobile_sam"


# ----------------------------------------------------------------------------- the encoder


def test_tiny_build_gives_the_pyramid_embedding_and_high_res(encoder: Sam2Encoder) -> None:
    assert encoder.input_size == 256 and encoder.channels == (16, 32, 64, 128)
    assert encoder.embedding_dim == 32 and encoder.has_high_res and encoder.hq_decoder is None
    images = rgb(2)
    out = encoder(images)
    assert [tuple(f.shape) for f in out.features] == [
        (2, 16, 64, 64), (2, 32, 32, 32), (2, 64, 16, 16), (2, 128, 8, 8)
    ]  # fmt: skip
    assert out.embedding is not None and tuple(out.embedding.shape) == (2, 32, 16, 16)
    embedding, (s0, s1) = encoder.embed_high_res(images)
    assert tuple(s0.shape) == (2, 4, 64, 64) and tuple(s1.shape) == (2, 8, 32, 32)
    torch.testing.assert_close(embedding, out.embedding)
    torch.testing.assert_close(encoder.embed(images), out.embedding)
    assert not any(p.requires_grad for p in encoder.parameters())
    assert not encoder.train().training


def test_embed_high_res_is_refused_by_other_encoders() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mobile = load_encoder("mobile_sam", weights="random", tiny=True)
    assert not mobile.has_high_res
    with pytest.raises(ConfigError, match="SAM 2's"):
        mobile.embed_high_res(rgb())


# ----------------------------------------------------------------------------- loading


@pytest.mark.parametrize("name", list(SIZES))
def test_official_key_sets_of_every_size_load_strictly(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Meta's and transformers' key sets of each size (shapes only, on the meta device) go
    through load_checkpoint (the file read replaced): no missing or unexpected key."""
    with torch.device("meta"):
        model = build_sam2(get_encoder(name))
    for state in (meta_state_dict(name), transformers_state_dict(name)):
        assert identify_checkpoint(state) == name
        monkeypatch.setattr(sam2_module, "load_state_dict", lambda path, s=state: s)
        model.load_checkpoint(Path(f"{name}.pt"))  # strict: raises on any mismatch


def _meta_file(tmp_path: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    state = meta_state_dict("test", device="cpu")
    path = tmp_path / "sam2.1_test.pt"
    torch.save({"model": state}, path)  # Meta's files wrap the state dict
    return path, state


def test_meta_file_loads_with_its_names_mapped(tmp_path: Path) -> None:
    path, state = _meta_file(tmp_path)
    encoder = tiny(seed=1)
    encoder.load_checkpoint(path)
    loaded = encoder.sam.state_dict()
    points = torch.cat([state[f"sam_prompt_encoder.point_embeddings.{i}.weight"] for i in range(4)])
    assert torch.equal(loaded["prompt_encoder.point_embed.weight"], points)
    fourier = state["sam_prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"]
    assert torch.equal(loaded["shared_image_embedding.positional_embedding"], fourier)
    assert torch.equal(loaded["prompt_encoder.shared_embedding.positional_embedding"], fourier)
    assert torch.equal(loaded["no_memory_embedding"], state["no_mem_embed"])
    assert torch.equal(
        loaded["image_encoder.backbone.blocks.1.mlp.proj_out.weight"],
        state["image_encoder.trunk.blocks.1.mlp.layers.1.weight"],
    )
    assert torch.equal(
        loaded["mask_decoder.iou_prediction_head.layers.0.weight"],
        state["sam_mask_decoder.iou_prediction_head.layers.1.weight"],
    )


def test_transformers_file_folder_and_own_layout_give_the_same_model(tmp_path: Path) -> None:
    path, _ = _meta_file(tmp_path)
    reference = tiny(seed=1)
    reference.load_checkpoint(path)
    single = tmp_path / "model.safetensors"
    save_file(_as_transformers(reference), str(single))
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    save_file(_as_transformers(reference), str(folder / "model.safetensors"))
    own = tmp_path / "own.pt"
    torch.save(reference.sam.state_dict(), own)
    images = rgb()
    expected = reference.embed_high_res(images)
    for source in (single, folder, own):
        encoder = tiny(seed=2)
        encoder.load_checkpoint(source)
        got = encoder.embed_high_res(images)
        torch.testing.assert_close(got.embedding, expected.embedding, rtol=0, atol=0)
        torch.testing.assert_close(got.high_res, expected.high_res, rtol=0, atol=0)


def test_hf_folder_without_weights_is_one_line(tmp_path: Path) -> None:
    from rs_sam.errors import ModelFileNotFoundError

    with pytest.raises(ModelFileNotFoundError, match=r"holds no model\.safetensors") as info:
        tiny().load_checkpoint(tmp_path)
    assert "\n" not in str(info.value)


def _refusal(state: dict[str, torch.Tensor], tmp_path: Path, encoder: Sam2Encoder) -> str:
    path = tmp_path / "other.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as info:
        encoder.load_checkpoint(path)
    text = str(info.value)
    assert "\n" not in text and "does not fit encoder 'sam2_hiera_tiny'" in text
    return text


def test_other_generations_are_refused_by_name(tmp_path: Path, encoder: Sam2Encoder) -> None:
    zeros = torch.zeros
    vit_b = {"image_encoder.patch_embed.proj.weight": zeros(768, 3, 16, 16)}
    assert "'sam_vit_b' checkpoint: use encoder 'sam_vit_b'" in _refusal(vit_b, tmp_path, encoder)
    hq = {**vit_b, "mask_decoder.hf_token.weight": zeros(1, 256)}
    assert "'sam_hq_vit_b'" in _refusal(hq, tmp_path, encoder)
    mobile = {
        "image_encoder.patch_embed.seq.2.c.weight": zeros(64, 32, 3, 3),
        "image_encoder.neck.0.weight": zeros(256, 320, 1, 1),
    }
    assert "'mobile_sam' checkpoint" in _refusal(mobile, tmp_path, encoder)
    fastsam = {
        "model.0.conv.weight": zeros(32, 3, 3, 3),
        "model.22.proto.cv1.conv.weight": zeros(1),
    }
    assert "'fastsam_s'" in _refusal(fastsam, tmp_path, encoder)
    sam3 = {"detector.backbone.vision_backbone.trunk.patch_embed.proj.weight": zeros(1)}
    assert "SAM 3 checkpoint" in _refusal(sam3, tmp_path, encoder)


def test_another_size_or_a_partial_file_is_refused(
    tmp_path: Path, encoder: Sam2Encoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    small = meta_state_dict("sam2_hiera_small")  # shapes only: the file read is replaced
    monkeypatch.setattr(sam2_module, "load_state_dict", lambda path: small)
    with pytest.raises(CheckpointError, match="use encoder 'sam2_hiera_small'") as info:
        encoder.load_checkpoint(tmp_path / "sam2.1_hiera_small.pt")
    assert "\n" not in str(info.value)
    monkeypatch.undo()
    state = meta_state_dict("test", device="cpu")
    del state["sam_mask_decoder.conv_s0.bias"]
    state["image_encoder.trunk.extra.weight"] = torch.zeros(1)
    text = _refusal(state, tmp_path, tiny())
    assert "1 missing keys (mask_decoder.conv_s0.bias)" in text
    assert "1 unexpected keys (image_encoder.backbone.extra.weight)" in text


def test_hq_decoding_with_sam2_is_one_line(encoder: Sam2Encoder) -> None:
    with pytest.raises(ConfigError, match="SAM 2's decoder, without HQ-SAM's") as info:
        SamDecoder.for_encoder(encoder, "add")
    assert "\n" not in str(info.value)


# ----------------------------------------------------------------------------- decoding


@pytest.fixture(scope="module")
def reference(encoder: Sam2Encoder) -> object:
    """transformers' own Sam2Model with the tiny encoder's weights."""
    from transformers import Sam2Config, Sam2Model

    vision, prompt, decoder = sam2_module._configs("tiny")
    model = Sam2Model(Sam2Config(vision_config=vision, prompt_encoder_config=prompt,
                                 mask_decoder_config=decoder))  # fmt: skip
    model.load_state_dict(_as_transformers(encoder, video=False), strict=True)
    return model.eval()


def test_decoding_equals_transformers_sam2model(encoder: Sam2Encoder, reference) -> None:
    images = rgb(side=256, seed=3)
    decoder = SamDecoder.for_encoder(encoder)
    features = decoder.features(images)
    pixels = encoder.preprocess(images)
    with torch.no_grad():
        embeddings = reference.get_image_embeddings(pixels)
    torch.testing.assert_close(features.high_res[0], embeddings[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(features.high_res[1], embeddings[1], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(features.embedding, embeddings[2], rtol=1e-4, atol=1e-5)

    points = torch.tensor([[[40.0, 60.0]], [[200.0, 30.0]], [[128.0, 128.0]]])
    boxes = torch.tensor([[10.0, 20.0, 120.0, 100.0], [100, 100, 250, 200], [0, 0, 60, 60]])
    cases = [
        (dict(input_points=points[None]), dict(points=points), True),
        (dict(input_points=points[None]), dict(points=points), False),
        (dict(input_boxes=boxes[None]), dict(boxes=boxes), False),
        (dict(input_points=points[None], input_boxes=boxes[None]),
         dict(points=points, boxes=boxes), True),
    ]  # fmt: skip
    for theirs, ours, multimask in cases:
        with torch.no_grad():
            out = reference(pixel_values=pixels, multimask_output=multimask, **theirs)
        got = decoder.decode(features, multimask=multimask, chunk=2, **ours)
        torch.testing.assert_close(got.logits, out.pred_masks[0], rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(got.iou, out.iou_scores[0], rtol=1e-4, atol=1e-5)
        assert got.logits.shape[1] == (3 if multimask else 1)
    mask = torch.randn(1, 1, 64, 64, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        out = reference(pixel_values=pixels, input_points=points[None, :1], input_masks=mask)
    got = decoder.decode(features, points=points[:1], masks=mask)
    torch.testing.assert_close(got.logits, out.pred_masks[0], rtol=1e-4, atol=1e-4)
    train = decoder.decode_train(features, points=points, multimask=True)
    with torch.no_grad():
        out = reference(pixel_values=pixels, input_points=points[None])
    torch.testing.assert_close(train.logits, out.pred_masks[0], rtol=1e-4, atol=1e-4)
    empty = decoder.decode(features, points=points[:0])
    assert tuple(empty.logits.shape) == (0, 3, 64, 64)


# ----------------------------------------------------------------------------- full size


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SIZES))
def test_full_size_official_files_load(name: str, tmp_path: Path) -> None:
    """Meta's .pt and transformers' safetensors of each size, random tensors with the official
    key sets, through load_encoder's real path (files on disk)."""
    meta = tmp_path / (name.replace("sam2_", "sam2.1_") + ".pt")
    torch.save({"model": meta_state_dict(name, device="cpu")}, meta)
    encoder = load_encoder(name, checkpoint=meta)
    assert not encoder.random_weights
    folder = tmp_path / "hf"
    folder.mkdir()
    state = {
        k.replace("image_encoder.", "vision_encoder.", 1): v.contiguous()
        for k, v in encoder.sam.state_dict().items()
    }
    save_file(state, str(folder / "model.safetensors"))
    again = load_encoder(name, checkpoint=folder)
    for key, value in again.sam.state_dict().items():
        assert torch.equal(value, encoder.sam.state_dict()[key]), key


@pytest.mark.slow
def test_full_size_tiny_encoder_time_per_chip() -> None:
    """sam2_hiera_tiny at full size (random weights): one 1024 px chip (reported, not judged)."""
    encoder = load_encoder("sam2_hiera_tiny", weights="random")
    images = rgb(side=1024)
    encoder.embed_high_res(images)  # warm up
    start = time.perf_counter()
    out = encoder(images)
    seconds = time.perf_counter() - start
    assert tuple(out.embedding.shape) == (1, 256, 64, 64)  # type: ignore[union-attr]
    print(f"sam2_hiera_tiny: {seconds:.2f} s per 1024 px chip")
