"""SamDecoder: the one caller of SAM's prompt encoder and mask decoder."""

from __future__ import annotations

import pytest
import torch

from rs_sam.errors import ConfigError
from rs_sam.models.decoding import ChipFeatures, SamDecoder
from rs_sam.models.encoders import load_encoder
from rs_sam.models.lora import LoraSettings, apply_lora
from tests.helpers.stand_ins import randomise_weights

pytestmark = pytest.mark.filterwarnings("ignore::rs_sam.models.encoders.base.RandomWeightsWarning")


def _chip(seed: int = 0) -> torch.Tensor:
    return torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(seed)) * 255


@pytest.fixture(scope="module")
def plain():
    torch.manual_seed(0)
    encoder = load_encoder("mobile_sam", weights="random", tiny=True)
    randomise_weights(encoder.sam.mask_decoder)
    return encoder


@pytest.fixture(scope="module")
def hq():
    torch.manual_seed(1)
    encoder = load_encoder("sam_hq_vit_tiny", weights="random", tiny=True)
    randomise_weights(encoder.sam.mask_decoder)
    return encoder


def _official(encoder, embedding, *, points=None, boxes=None, masks=None, multimask=True):
    pe = encoder.prompt_encoder
    labels = None if points is None else torch.ones(points.shape[:2], dtype=torch.int64)
    with torch.inference_mode():
        sparse, dense = pe(
            points=None if points is None else (points, labels), boxes=boxes, masks=masks
        )
        return encoder.mask_decoder(embedding, pe.get_dense_pe(), sparse, dense, multimask)


def test_decode_equals_the_official_forward_for_every_prompt_kind(plain) -> None:
    decoder = SamDecoder.for_encoder(plain)
    features = decoder.features(_chip())
    points = torch.tensor([[[40.0, 50.0]], [[200.0, 90.0]], [[128.0, 128.0]]])
    boxes = torch.tensor([[10.0, 20.0, 120.0, 200.0]] * 3)
    masks = torch.randn(3, 1, 4 * 16, 4 * 16, generator=torch.Generator().manual_seed(2))
    for case, multimask in (
        (dict(points=points), True),
        (dict(points=points), False),
        (dict(boxes=boxes), False),
        (dict(points=points, masks=masks), True),
    ):
        got = decoder.decode(features, **case, multimask=multimask)
        ref, ref_iou = _official(plain, features.embedding, **case, multimask=multimask)
        assert ref.abs().max() > 1.0
        torch.testing.assert_close(got.logits, ref, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(got.iou, ref_iou, rtol=1e-4, atol=1e-4)
        m = 3 if multimask else 1
        assert got.index.shape == (3, m) and got.index[1].tolist() == list(range(m))
        assert got.sam_logits is None


def test_a_lora_wrapped_decoder_takes_the_official_forward() -> None:
    torch.manual_seed(3)
    encoder = load_encoder("mobile_sam", weights="random", tiny=True)
    apply_lora(encoder, LoraSettings(decoder=True))
    with torch.no_grad():
        for name, parameter in encoder.sam.mask_decoder.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0.0, 0.5)  # a trained adapter: it changes the outputs
    decoder = SamDecoder.for_encoder(encoder)
    features = decoder.features(_chip(1))
    points = torch.tensor([[[40.0, 50.0]], [[200.0, 90.0]]])
    got = decoder.decode(features, points=points)
    ref, _ = _official(encoder, features.embedding, points=points)
    torch.testing.assert_close(got.logits, ref)


def test_decode_train_follows_the_trainable_parameters(plain) -> None:
    decoder = SamDecoder.for_encoder(plain)
    embedding = plain.embed(_chip()).requires_grad_(True)
    # no prompt at all: one row of SAM's "no prompt" embedding, with autograd to the input
    out = decoder.decode_train(ChipFeatures(embedding), multimask=True)
    assert out.logits.shape == (1, 3, 64, 64) and out.logits.requires_grad
    out.logits.sum().backward()
    assert embedding.grad is not None and embedding.grad.abs().sum() > 0
    with torch.no_grad():
        ref, _ = _official(plain, embedding.detach())
    torch.testing.assert_close(out.logits.detach(), ref, rtol=1e-4, atol=1e-4)
    boxes = torch.tensor([[10.0, 20.0, 120.0, 200.0]])
    pe = plain.prompt_encoder
    pe.point_embeddings[2].weight.requires_grad_(True)  # a trained prompt encoder (box corner)
    try:
        out = decoder.decode_train(ChipFeatures(embedding.detach()), boxes=boxes)
        out.logits.sum().backward()
        assert pe.point_embeddings[2].weight.grad is not None
    finally:
        pe.point_embeddings[2].weight.requires_grad_(False)
        pe.point_embeddings[2].weight.grad = None


def test_hq_decode_train_gives_the_hq_and_sam_logits(hq) -> None:
    decoder = SamDecoder.for_encoder(hq, "only")
    features = decoder.features(_chip())
    assert features.interm is not None and features.hq_features is None
    prepared = decoder.prepare(features)
    assert prepared.hq_features is not None and decoder.prepare(prepared) is prepared
    boxes = torch.tensor([[10.0, 20.0, 120.0, 200.0], [0.0, 0.0, 255.0, 255.0], [5, 5, 60, 60]])
    trained = decoder.decode_train(features, boxes=boxes, multimask=False, chunk=2)
    inferred = decoder.decode(features, boxes=boxes, multimask=False)
    torch.testing.assert_close(trained.logits.detach(), inferred.logits, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(trained.iou.detach(), inferred.iou, rtol=1e-4, atol=1e-4)
    assert trained.index.shape == inferred.index.shape == (3, 1)
    pe, hq_decoder = hq.prompt_encoder, hq.hq_decoder
    with torch.inference_mode():  # SAM's single mask of the official HQ decoder (output 0)
        sparse, dense = pe(points=None, boxes=boxes, masks=None)
        masks, _ = hq_decoder.predict_masks(
            features.embedding, pe.get_dense_pe(), sparse, dense, prepared.hq_features
        )
    assert trained.sam_logits is not None
    torch.testing.assert_close(trained.sam_logits.detach(), masks[:, :1], rtol=1e-4, atol=1e-4)
    assert not torch.allclose(trained.logits, trained.sam_logits)


def test_for_encoder_refuses_what_it_cannot_decode(plain) -> None:
    with pytest.raises(ConfigError, match="needs an HQ-SAM encoder"):
        SamDecoder.for_encoder(plain, "add")
    with pytest.raises(ConfigError, match="hq='more' is invalid"):
        SamDecoder.for_encoder(plain, "more")  # type: ignore[arg-type]
    fastsam = load_encoder("fastsam_s", weights="random", tiny=True)
    with pytest.raises(ConfigError, match="no SAM prompt encoder"):
        SamDecoder.for_encoder(fastsam)
    with pytest.raises(ValueError, match="without an encoder"):
        SamDecoder(plain.prompt_encoder, plain.mask_decoder).features(_chip())
    assert SamDecoder.for_encoder(plain).input_size == plain.input_size
