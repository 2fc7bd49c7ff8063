"""Attention of SAM's ViT without whole attention matrices.

The official ``Attention`` computes the full ``(B*heads, L, L)`` score matrix, adds the
decomposed relative-position bias (MViTv2; it depends on the query) and takes its softmax.
For a global block of ViT-B at 1024 px (L = 64*64 tokens) that is 12 x 4096^2 floats, 805 MB
per image, held several times over.

Here the same arithmetic runs through ``scaled_dot_product_attention``, whose fused kernel
never stores the scores; the bias is its additive mask, built for a band of query rows at a
time (at most ``MASK_BYTES`` of it), so a global block holds a few tens of MB. Windowed
blocks use it too (faster on CPU as well). The result equals the official forward up to
float rounding (tested in float32 and float64).

MobileSAM's TinyViT attention (7x7 windows, learned biases) is left official: its matrices
are small, and SDPA with its bias as the mask took 1.1x its time on CPU.

Installing keeps every parameter, buffer and state-dict key: only each instance's class
changes, to a subclass of the official one whose ``forward`` is this file's, so official
checkpoints keep loading strictly and ``isinstance`` checks still hold.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from functools import cache
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: Most bytes of ViT rel-pos mask alive at once (query rows are processed in bands).
MASK_BYTES = 32 * 2**20

# Lean subclass name -> module of the official ``Attention`` it derives from
# (segment_anything_hq's is a copy of SAM's).
_OFFICIAL = {
    "LeanSamAttention": "segment_anything.modeling.image_encoder",
    "LeanHqAttention": "segment_anything_hq.modeling.image_encoder",
}


def band_rows(batch: int, heads: int, keys: int, itemsize: int, budget: int | None = None) -> int:
    """Query rows per band so that a ``(batch, heads, rows, keys)`` mask fits ``budget``.

    ``budget`` defaults to :data:`MASK_BYTES` (read at call time).
    """
    budget = MASK_BYTES if budget is None else budget
    return max(1, budget // (batch * heads * keys * itemsize))


def banded_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    scale: float,
    bias: Callable[[int, int], Tensor] | None = None,
    budget: int | None = None,
) -> Tensor:
    """``softmax(q k^T * scale + bias) v`` for ``(B, heads, L, d)`` inputs, by bands of rows.

    Args:
        q, k, v: queries, keys, values, ``(B, heads, L, d)``.
        scale: factor on ``q k^T``.
        bias: ``bias(start, stop)`` gives the additive bias of query rows ``start:stop``,
            ``(B, heads, stop - start, L)``; None for plain attention (one call).
        budget: most bytes of bias per band (default :data:`MASK_BYTES`).
    """
    if bias is None:
        return F.scaled_dot_product_attention(q, k, v, scale=scale)
    batch, heads, tokens, _ = q.shape
    rows = band_rows(batch, heads, k.shape[2], q.element_size(), budget)
    bands = [
        F.scaled_dot_product_attention(
            q[:, :, start : start + rows],
            k,
            v,
            attn_mask=bias(start, min(start + rows, tokens)),
            scale=scale,
        )
        for start in range(0, tokens, rows)
    ]
    return bands[0] if len(bands) == 1 else torch.cat(bands, dim=2)


def rel_pos_bias(
    q: Tensor, rel_pos_h: Tensor, rel_pos_w: Tensor, size: tuple[int, int]
) -> Callable[[int, int], Tensor]:
    """The decomposed relative-position bias of SAM's ViT (MViTv2), by bands of query rows.

    Only the two factors are stored: ``rel_h`` ``(B, heads, L, H)`` and ``rel_w``
    ``(B, heads, L, W)``; the bias of query i and key (y, x) is ``rel_h[i, y] + rel_w[i, x]``.
    """
    from segment_anything.modeling.image_encoder import get_rel_pos

    batch, heads, _, dim = q.shape
    height, width = size
    grid = q.reshape(batch * heads, height, width, dim)  # unscaled q, as the official code
    rel_h = torch.einsum("bhwc,hkc->bhwk", grid, get_rel_pos(height, height, rel_pos_h))
    rel_w = torch.einsum("bhwc,wkc->bhwk", grid, get_rel_pos(width, width, rel_pos_w))
    rel_h = rel_h.reshape(batch, heads, height * width, height)
    rel_w = rel_w.reshape(batch, heads, height * width, width)

    def band(start: int, stop: int) -> Tensor:
        part = rel_h[:, :, start:stop, :, None] + rel_w[:, :, start:stop, None, :]
        return part.flatten(-2)  # (B, heads, rows, H*W)

    return band


class LeanViTAttention(nn.Module):
    """``forward`` of SAM's ViT ``Attention`` (both packages' copies); mixed into them."""

    num_heads: int
    scale: float
    use_rel_pos: bool
    qkv: nn.Module
    proj: nn.Module
    rel_pos_h: Tensor
    rel_pos_w: Tensor

    def forward(self, x: Tensor) -> Tensor:
        """``(B, H, W, C)`` tokens (a window or the whole map) -> ``(B, H, W, C)``."""
        batch, height, width, _ = x.shape
        qkv = self.qkv(x).reshape(batch, height * width, 3, self.num_heads, -1)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, L, d)
        bias = None
        if self.use_rel_pos:
            bias = rel_pos_bias(q, self.rel_pos_h, self.rel_pos_w, (height, width))
        out = banded_attention(q, k, v, self.scale, bias)  # (B, heads, L, d)
        return self.proj(out.transpose(1, 2).reshape(batch, height, width, -1))


@cache
def _lean_class(name: str) -> type[nn.Module]:
    """The subclass ``name`` of an official class, whose ``forward`` is the lean one."""
    official = importlib.import_module(_OFFICIAL[name]).Attention
    return type(name, (LeanViTAttention, official), {"__module__": __name__, "__qualname__": name})


def __getattr__(name: str) -> Any:
    # The subclasses are made on first use (their bases are imported lazily); looking them up
    # by name here lets pickle find them, in this process or a new one.
    if name in _OFFICIAL:
        return _lean_class(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def use_lean_attention(module: nn.Module) -> int:
    """Switch every official SAM ViT attention inside ``module`` to the lean forward.

    Parameters, buffers and state-dict keys are untouched. Returns how many were switched.
    """
    lean_names = {(path, "Attention"): name for name, path in _OFFICIAL.items()}
    switched = 0
    for sub in module.modules():
        name = lean_names.get((type(sub).__module__, type(sub).__name__))
        if name is not None:
            sub.__class__ = _lean_class(name)
            switched += 1
    return switched
