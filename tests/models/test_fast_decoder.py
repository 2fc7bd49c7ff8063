"""decode_points equals the official prompt encoder + mask decoder forward."""

from __future__ import annotations

import copy

import pytest
import torch
from segment_anything.modeling import MaskDecoder

from rs_sam.models.fast_decoder import decode_points, is_supported
from tests.helpers.sam_modules import official, official_modules, point_prompts


def _assert_close(actual: torch.Tensor, expected: torch.Tensor, rel: float) -> None:
    scale = max(1.0, expected.abs().max().item())
    torch.testing.assert_close(actual, expected, rtol=rel, atol=rel * scale)


@pytest.fixture(scope="module")
def small():
    prompt_encoder, mask_decoder = official_modules(32, 16, 4, 64, seed=0)
    embedding = torch.randn(1, 32, 16, 16, generator=torch.Generator().manual_seed(1))
    return prompt_encoder, mask_decoder, embedding


@pytest.mark.parametrize("multimask", [True, False])
@pytest.mark.parametrize("n_points", [1, 2])
@pytest.mark.parametrize("n_prompts", [1, 5, 33])
def test_small_equalsofficial(small, n_prompts, n_points, multimask):
    prompt_encoder, mask_decoder, embedding = small
    points, labels = point_prompts(n_prompts, n_points, 256, seed=n_prompts * 10 + n_points)
    expected_masks, expected_iou = official(
        prompt_encoder, mask_decoder, embedding, points, labels, multimask
    )
    # small chunks and 3-row tiles: several chunks and tiles, ragged last ones
    masks, iou = decode_points(
        prompt_encoder,
        mask_decoder,
        embedding,
        points,
        labels,
        multimask_output=multimask,
        chunk=4,
        tile_pixels=3 * 16,
    )
    m = 3 if multimask else 1
    assert masks.shape == (n_prompts, m, 64, 64) and iou.shape == (n_prompts, m)
    assert expected_masks.abs().max() > 1.0  # the weights make non-trivial logits
    _assert_close(masks, expected_masks, 1e-4)
    _assert_close(iou, expected_iou, 1e-4)


@pytest.mark.parametrize("tile_pixels", [16, 100, 10_000])
def test_tiling_and_chunking_do_not_change_results(small, tile_pixels):
    prompt_encoder, mask_decoder, embedding = small
    points, labels = point_prompts(7, 1, 256, seed=3)
    reference = decode_points(prompt_encoder, mask_decoder, embedding, points, labels)
    for chunk in (1, 3, 100):
        masks, iou = decode_points(
            prompt_encoder,
            mask_decoder,
            embedding,
            points,
            labels,
            chunk=chunk,
            tile_pixels=tile_pixels,
        )
        _assert_close(masks, reference[0], 1e-5)
        _assert_close(iou, reference[1], 1e-5)


def test_float64_matches_to_rounding():
    """In double precision the reorganised algebra agrees to ~1e-12: it is exact."""
    prompt_encoder, mask_decoder = official_modules(32, 16, 4, 64, seed=5)
    mask_decoder.double()  # the official prompt encoder computes in float32 whatever its dtype
    embedding = torch.randn(1, 32, 16, 16, dtype=torch.float64)
    points, labels = point_prompts(6, 2, 256, seed=6, dtype=torch.float64)
    expected = official(prompt_encoder, mask_decoder, embedding, points, labels, True)
    actual = decode_points(
        prompt_encoder, mask_decoder, embedding, points, labels, chunk=4, tile_pixels=40
    )
    assert actual[0].dtype == torch.float64
    _assert_close(actual[0], expected[0], 1e-10)
    _assert_close(actual[1], expected[1], 1e-10)


def test_default_labels_and_ignored_points(small):
    prompt_encoder, mask_decoder, embedding = small
    points, _ = point_prompts(4, 2, 256, seed=7)
    ones = torch.ones(4, 2, dtype=torch.int64)
    expected = official(prompt_encoder, mask_decoder, embedding, points, ones, True)
    actual = decode_points(prompt_encoder, mask_decoder, embedding, points)
    _assert_close(actual[0], expected[0], 1e-4)
    ignored = torch.tensor([[1, -1]] * 4)
    expected = official(prompt_encoder, mask_decoder, embedding, points, ignored, False)
    actual = decode_points(
        prompt_encoder, mask_decoder, embedding, points, ignored, multimask_output=False
    )
    _assert_close(actual[0], expected[0], 1e-4)
    _assert_close(actual[1], expected[1], 1e-4)


@pytest.mark.slow
def test_real_size_equalsofficial():
    """SAM's decoder sizes (256 channels, 8 heads, 64x64 embedding), default init."""
    prompt_encoder, mask_decoder = official_modules(256, 64, 8, 2048, seed=2, randomise=False)
    embedding = torch.randn(1, 256, 64, 64, generator=torch.Generator().manual_seed(3))
    points, labels = point_prompts(4, 2, 1024, seed=4)
    for multimask in (True, False):
        expected = official(prompt_encoder, mask_decoder, embedding, points, labels, multimask)
        actual = decode_points(
            prompt_encoder, mask_decoder, embedding, points, labels, multimask_output=multimask
        )
        _assert_close(actual[0], expected[0], 1e-4)
        _assert_close(actual[1], expected[1], 1e-4)


def test_unsupported_decoder_takes_the_official_path(small):
    prompt_encoder, mask_decoder, embedding = small

    class Custom(MaskDecoder):
        def predict_masks(self, *args, **kwargs):
            masks, iou = super().predict_masks(*args, **kwargs)
            return masks + 1.0, iou

    custom = Custom(
        transformer_dim=32, transformer=mask_decoder.transformer, iou_head_hidden_dim=32
    )
    custom.load_state_dict(mask_decoder.state_dict())
    custom.eval()
    assert is_supported(prompt_encoder, mask_decoder)
    assert not is_supported(prompt_encoder, custom)
    points, labels = point_prompts(3, 1, 256, seed=8)
    expected = official(prompt_encoder, custom, embedding, points, labels, True)
    actual = decode_points(prompt_encoder, custom, embedding, points, labels)
    torch.testing.assert_close(actual[0], expected[0])
    torch.testing.assert_close(actual[1], expected[1])


def test_nopoint_prompts(small):
    prompt_encoder, mask_decoder, embedding = small
    masks, iou = decode_points(prompt_encoder, mask_decoder, embedding, torch.zeros(0, 1, 2))
    assert masks.shape == (0, 3, 64, 64) and iou.shape == (0, 3)


def test_bad_shapes_raise(small):
    prompt_encoder, mask_decoder, embedding = small
    with pytest.raises(ValueError):
        decode_points(prompt_encoder, mask_decoder, embedding, torch.zeros(3, 2))
    with pytest.raises(ValueError):
        decode_points(
            prompt_encoder, mask_decoder, embedding, torch.zeros(3, 1, 2), torch.ones(3, 2)
        )


def test_unmerged_decoder_lora_takes_the_official_path(small) -> None:
    """peft's LoRA on the decoder's attention wraps q_proj/v_proj: their .weight is only the
    base weight, so the fast path must not read it."""
    from peft import LoraConfig, inject_adapter_in_model

    prompt_encoder, shared_decoder, embedding = small
    mask_decoder = copy.deepcopy(shared_decoder)  # the module-scoped fixture stays unwrapped
    config = LoraConfig(
        r=2, lora_alpha=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False
    )
    inject_adapter_in_model(config, mask_decoder)
    mask_decoder.eval()
    assert not is_supported(prompt_encoder, mask_decoder)
    points, labels = point_prompts(4, 1, 256, seed=9)
    expected = official(prompt_encoder, mask_decoder, embedding, points, labels, True)
    actual = decode_points(prompt_encoder, mask_decoder, embedding, points, labels)
    torch.testing.assert_close(actual[0], expected[0])
    torch.testing.assert_close(actual[1], expected[1])
    assert is_supported(prompt_encoder, shared_decoder)  # the other tests' decoder is untouched
