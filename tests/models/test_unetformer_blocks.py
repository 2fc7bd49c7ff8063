"""The UNetFormer decoder blocks on their own: shapes, the aux head, the weighted fusion."""

from __future__ import annotations

import pytest
import torch

from rs_sam.models.unetformer_blocks import ConvBNReLU, UNetFormerDecoder, resize

CHANNELS = (8, 12, 16, 20)


def pyramid(batch: int = 2, side: int = 64) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return [
        torch.randn(batch, c, side // s, side // s, generator=generator)
        for c, s in zip(CHANNELS, (4, 8, 16, 32), strict=True)
    ]


@pytest.mark.parametrize("aux_head", [False, True])
def test_decoder_gives_logits_at_the_size_asked_and_aux_in_training_only(aux_head: bool) -> None:
    torch.manual_seed(0)
    decoder = UNetFormerDecoder(
        CHANNELS, dim=16, num_heads=2, window_size=4, num_classes=3, dropout=0.0, aux_head=aux_head
    )
    logits, aux = decoder.train()(pyramid(), (50, 70))
    assert logits.shape == (2, 3, 50, 70)
    assert (aux is not None) == aux_head
    if aux is not None:
        assert aux.shape == logits.shape
    with torch.no_grad():
        logits, aux = decoder.eval()(pyramid(), (64, 64))
    assert logits.shape == (2, 3, 64, 64) and aux is None


def test_resize_is_a_no_op_at_the_same_size_and_bilinear_otherwise() -> None:
    x = torch.arange(16.0).view(1, 1, 4, 4)
    assert resize(x, (4, 4)) is x
    assert resize(x, (8, 6)).shape == (1, 1, 8, 6)


def test_conv_bn_relu_caps_at_six_unless_plain_relu() -> None:
    x = torch.full((1, 1, 3, 3), 100.0)
    capped, plain = ConvBNReLU(1, 1, 1).eval(), ConvBNReLU(1, 1, 1, relu6=False).eval()
    for block in (capped, plain):
        torch.nn.init.ones_(block[0].weight)
    with torch.no_grad():
        assert capped(x).max() == 6.0 and plain(x).max() > 99.0
