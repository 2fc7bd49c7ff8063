"""Lean SAM ViT attention: equal to the official modules, same parameters and keys."""

from __future__ import annotations

import copy
import pickle
from functools import partial

import pytest
import torch
from segment_anything.modeling.image_encoder import Attention, Block, ImageEncoderViT
from torch import nn

from rs_sam.models.encoders import load_encoder, vit_attention
from rs_sam.models.encoders.vit_attention import LeanViTAttention, band_rows, use_lean_attention

pytestmark = pytest.mark.filterwarnings("ignore::rs_sam.models.encoders.base.RandomWeightsWarning")

TOL = {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.float64: dict(rtol=1e-12, atol=1e-12)}


def randomise(module: nn.Module, seed: int = 0) -> nn.Module:
    """Random values for every parameter (rel-pos tables start at zero officially)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.3)
    return module.train(False)


def lean_copy(module: nn.Module) -> nn.Module:
    lean = copy.deepcopy(module)
    assert use_lean_attention(lean) > 0
    return lean


def tokens(*shape: int, dtype: torch.dtype, seed: int = 1) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.fixture
def many_bands(monkeypatch: pytest.MonkeyPatch) -> None:
    """A mask budget so small that global attention runs in several bands of rows."""
    monkeypatch.setattr(vit_attention, "MASK_BYTES", 4096)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    ("size", "table"),
    [((7, 9), (7, 9)), ((6, 6), (5, 7)), ((1, 1), (1, 1))],
    ids=["odd", "interpolated-rel-pos", "one-token"],
)
def test_global_attention_equals_official(
    many_bands: None, dtype: torch.dtype, size: tuple[int, int], table: tuple[int, int]
) -> None:
    official = randomise(Attention(24, 3, use_rel_pos=True, input_size=table)).to(dtype)
    lean = lean_copy(official)
    x = tokens(2, *size, 24, dtype=dtype)
    length = size[0] * size[1]
    assert length == 1 or band_rows(2, 3, length, x.element_size()) < length  # several bands
    with torch.no_grad():
        torch.testing.assert_close(lean(x), official(x), **TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_attention_without_rel_pos_equals_official(dtype: torch.dtype) -> None:
    official = randomise(Attention(16, 2, use_rel_pos=False)).to(dtype)
    x = tokens(3, 5, 4, 16, dtype=dtype)
    with torch.no_grad():
        torch.testing.assert_close(lean_copy(official)(x), official(x), **TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("window", [0, 4], ids=["global", "windowed-padded"])
def test_block_equals_official(many_bands: None, dtype: torch.dtype, window: int) -> None:
    # 9 x 11 tokens in 4 x 4 windows: both sides are padded
    block = Block(32, 4, use_rel_pos=True, window_size=window, input_size=(9, 11))
    official = randomise(block).to(dtype)
    x = tokens(2, 9, 11, 32, dtype=dtype)
    with torch.no_grad():
        torch.testing.assert_close(lean_copy(official)(x), official(x), **TOL[dtype])


def test_gradients_equal_official() -> None:
    # LoRA training runs autograd through the encoder
    official = randomise(Attention(16, 2, use_rel_pos=True, input_size=(5, 6))).double()
    lean = lean_copy(official)
    x = tokens(2, 5, 6, 16, dtype=torch.float64)
    grads = []
    for module in (official, lean):
        inp = x.clone().requires_grad_(True)
        (module(inp) ** 2).sum().backward()
        grads.append([inp.grad, *(p.grad for p in module.parameters())])
    for lean_grad, official_grad in zip(grads[1], grads[0], strict=True):
        torch.testing.assert_close(lean_grad, official_grad, rtol=1e-10, atol=1e-10)


def test_vit_b_sized_global_block_equals_official() -> None:
    # ViT-B's global attention at 1024 px: 12 heads, 64 x 64 tokens, in several bands
    official = Attention(768, 12, use_rel_pos=True, input_size=(64, 64)).train(False)
    with torch.no_grad():
        gen = torch.Generator().manual_seed(0)
        official.rel_pos_h.copy_(torch.randn(127, 64, generator=gen) * 0.3)
        official.rel_pos_w.copy_(torch.randn(127, 64, generator=gen) * 0.3)
    x = tokens(1, 64, 64, 768, dtype=torch.float32)
    assert band_rows(1, 12, 64 * 64, 4) < 64 * 64
    with torch.no_grad():
        torch.testing.assert_close(lean_copy(official)(x), official(x), rtol=1e-5, atol=1e-5)


def test_whole_tiny_encoder_equals_official() -> None:
    official = ImageEncoderViT(
        img_size=128, patch_size=16, embed_dim=32, depth=4, num_heads=2, mlp_ratio=4,
        out_chans=16, qkv_bias=True, norm_layer=partial(nn.LayerNorm, eps=1e-6),
        use_rel_pos=True, window_size=3, global_attn_indexes=(1, 3),
    )  # fmt: skip
    official = randomise(official)
    lean = lean_copy(official)
    image = tokens(2, 3, 128, 128, dtype=torch.float32)
    with torch.no_grad():
        torch.testing.assert_close(lean(image), official(image), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["sam_vit_b", "sam_hq_vit_b"])
def test_built_encoders_use_the_lean_attention_and_keep_their_keys(name: str) -> None:
    encoder = load_encoder(name, weights="random", tiny=True)
    vit = encoder.sam.image_encoder
    attentions = [block.attn for block in vit.blocks]
    assert all(isinstance(a, LeanViTAttention) for a in attentions)
    official_type = type(attentions[0]).__bases__[1]
    assert official_type.__name__ == "Attention" and "image_encoder" in official_type.__module__
    # the same state dict keys as the official module: a checkpoint loads strictly both ways
    plain = copy.deepcopy(vit)
    for block in plain.blocks:
        block.attn.__class__ = official_type
    assert list(plain.state_dict()) == list(vit.state_dict())
    vit.load_state_dict(randomise(plain, seed=3).state_dict(), strict=True)
    image = tokens(1, 3, 256, 256, dtype=torch.float32)
    with torch.no_grad():
        lean_out, plain_out = vit(image), plain(image)  # HQ's encoder also returns interm
    torch.testing.assert_close(lean_out, plain_out, rtol=1e-5, atol=1e-5)


def test_switching_is_idempotent_and_leaves_other_modules_alone() -> None:
    model = nn.Sequential(Attention(8, 2), nn.Linear(8, 8))
    assert use_lean_attention(model) == 1
    assert use_lean_attention(model) == 0  # already lean
    assert type(model[1]) is nn.Linear


def test_lean_modules_pickle() -> None:
    # as dask ships a model to its workers: a pickle round trip in memory, no file loaded
    official = randomise(Attention(16, 2, use_rel_pos=True, input_size=(4, 4)))
    lean = lean_copy(official)
    loaded = pickle.loads(pickle.dumps(lean))
    assert type(loaded) is type(lean)
    x = tokens(1, 4, 4, 16, dtype=torch.float32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), official(x), rtol=1e-5, atol=1e-5)
