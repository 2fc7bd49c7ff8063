"""Opt-in bfloat16 mask decoding: close to float32, really in bfloat16, cached weights."""

from __future__ import annotations

import warnings

import pytest
import torch
from segment_anything.modeling import MaskDecoder

from rs_sam.models.decoding import ChipFeatures, SamDecoder
from rs_sam.models.encoders import load_encoder
from rs_sam.models.fast_decoder import decode_points, is_supported
from rs_sam.models.low_precision import (
    decoder_dtype,
    low_precision_copy,
    warn_if_slow_bfloat16,
)
from rs_sam.models.mask_proposals import ProposalSettings, propose_masks
from tests.helpers.sam_modules import official, official_modules, point_prompts


@pytest.fixture(scope="module")
def modules():
    prompt_encoder, mask_decoder = official_modules(64, 16, 4, 128, seed=3)
    embedding = torch.randn(1, 64, 16, 16, generator=torch.Generator().manual_seed(4))
    return prompt_encoder, mask_decoder, embedding


def _close_but_not_equal(actual: torch.Tensor, exact: torch.Tensor) -> None:
    """Within bfloat16 rounding of the exact result (relative to its scale), not equal."""
    assert actual.dtype == exact.dtype == torch.float32
    scale = exact.abs().max().item()
    error = (actual - exact).abs().max().item()
    assert 0 < error <= 0.05 * scale, (error, scale)


@pytest.mark.parametrize("multimask", [True, False])
def test_fast_path_in_bfloat16_is_close_to_float32(modules, multimask) -> None:
    prompt_encoder, mask_decoder, embedding = modules
    points, labels = point_prompts(11, 1, 256, seed=5)
    exact = decode_points(prompt_encoder, mask_decoder, embedding, points, labels,
                          multimask_output=multimask)  # fmt: skip
    low = decode_points(prompt_encoder, mask_decoder, embedding, points, labels,
                        multimask_output=multimask, dtype=torch.bfloat16)  # fmt: skip
    _close_but_not_equal(low[0], exact[0])
    _close_but_not_equal(low[1], exact[1])
    # the same decoder in bfloat16 through the official forward: the same values up to the
    # rounding of either
    with torch.autocast("cpu", torch.bfloat16):
        autocast = official(prompt_encoder, mask_decoder, embedding, points, labels, multimask)
    scale = exact[0].abs().max().item()
    assert (low[0] - autocast[0].float()).abs().max().item() <= 0.05 * scale
    assert next(mask_decoder.parameters()).dtype == torch.float32  # the module is untouched


def test_official_path_in_bfloat16_runs_under_autocast(modules) -> None:
    prompt_encoder, mask_decoder, embedding = modules

    class Custom(MaskDecoder):  # its own predict_masks: not supported by the fast path
        def predict_masks(self, *args, **kwargs):
            return super().predict_masks(*args, **kwargs)

    custom = Custom(transformer_dim=64, transformer=mask_decoder.transformer,
                    iou_head_hidden_dim=64).eval()  # fmt: skip
    custom.load_state_dict(mask_decoder.state_dict())
    assert not is_supported(prompt_encoder, custom)
    points, labels = point_prompts(4, 1, 256, seed=6)
    exact = decode_points(prompt_encoder, custom, embedding, points, labels)
    low = decode_points(prompt_encoder, custom, embedding, points, labels, dtype=torch.bfloat16)
    _close_but_not_equal(low[0], exact[0])


def test_low_precision_copy_is_cached_until_the_weights_change(modules) -> None:
    _, mask_decoder, _ = modules
    assert low_precision_copy(mask_decoder, torch.float32) is mask_decoder
    first = low_precision_copy(mask_decoder, torch.bfloat16)
    assert first is not mask_decoder and low_precision_copy(mask_decoder, torch.bfloat16) is first
    assert all(p.dtype == torch.bfloat16 for p in first.parameters())
    weight = mask_decoder.iou_token.weight
    original = weight.detach().clone()
    try:
        with torch.no_grad():
            weight.add_(1.0)
        second = low_precision_copy(mask_decoder, torch.bfloat16)
        assert second is not first
        torch.testing.assert_close(second.iou_token.weight.float(), weight.detach(), atol=0.05,
                                   rtol=0.01)  # fmt: skip
    finally:
        with torch.no_grad():
            weight.copy_(original)


def test_proposals_in_bfloat16(modules) -> None:
    prompt_encoder, mask_decoder, embedding = modules
    decoder = SamDecoder(prompt_encoder, mask_decoder)
    zero = {"points_per_side": 4, "pred_iou_thresh": 0.0, "stability_thresh": 0.0}
    exact = propose_masks(decoder, ChipFeatures(embedding), settings=ProposalSettings(**zero))
    settings = ProposalSettings(**zero, decoder_precision="bfloat16")
    low = propose_masks(decoder, ChipFeatures(embedding), settings=settings)
    assert low.decoded == exact.decoded == 16
    assert low.scores.dtype == torch.float32 and len(low) > 0
    assert (low.scores.max() - exact.scores.max()).abs() < 0.05


def test_bad_precision_names() -> None:
    assert decoder_dtype("bfloat16") is torch.bfloat16
    with pytest.raises(ValueError, match="decoder precision 'half' is unknown"):
        decoder_dtype("half")
    with pytest.raises(ValueError, match="decoder precision 'fp16' is unknown"):
        ProposalSettings(decoder_precision="fp16")


def test_sam2_heads_in_bfloat16_run_under_autocast() -> None:
    torch.manual_seed(0)
    encoder = load_encoder("sam2_hiera_tiny", weights="random", tiny=True)
    decoder = SamDecoder.for_encoder(encoder)
    size = decoder.input_size
    features = decoder.features(torch.rand(1, 3, size, size) * 255)
    points = torch.rand(5, 1, 2, generator=torch.Generator().manual_seed(7)) * size
    exact = decoder.decode(features, points=points)
    low = decoder.decode(features, points=points, dtype=torch.bfloat16)
    _close_but_not_equal(low.logits, exact.logits)


def test_hq_decoding_refuses_bfloat16() -> None:
    encoder = load_encoder("sam_hq_vit_tiny", weights="random", tiny=True)
    decoder = SamDecoder.for_encoder(encoder, hq="add")
    features = ChipFeatures(torch.zeros(1, 256, 64, 64))
    with pytest.raises(ValueError, match="HQ-SAM decodes in the features' dtype"):
        decoder.decode(features, points=torch.zeros(1, 1, 2), dtype=torch.bfloat16)


def test_a_cpu_without_bfloat16_units_is_warned_once(modules, monkeypatch) -> None:
    prompt_encoder, mask_decoder, embedding = modules
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    warn_if_slow_bfloat16.cache_clear()
    decoder = SamDecoder(prompt_encoder, mask_decoder)
    points = point_prompts(2, 1, 256, seed=9)[0]
    try:
        with pytest.warns(RuntimeWarning, match="without AVX512-BF16 or AMX"):
            decoder.decode(ChipFeatures(embedding), points=points, dtype=torch.bfloat16)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # once per process
            decoder.decode(ChipFeatures(embedding), points=points, dtype=torch.bfloat16)
            decoder.decode(ChipFeatures(embedding), points=points)  # float32: never
    finally:
        warn_if_slow_bfloat16.cache_clear()
