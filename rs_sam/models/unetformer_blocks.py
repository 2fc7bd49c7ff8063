"""The blocks of the UNetFormer decoder (Wang et al., ISPRS J. Photogramm. 2022).

Assembled into a model by :class:`rs_sam.models.unetformer.UNetFormer`; ``D`` is the
decoder width.

GLTB (global-local transformer block), on ``(B, D, h, w)``::

    x = x + GLA(BN(x));  x = x + MLP(BN(x))        MLP: 1x1 conv D->4D, ReLU6, 1x1 conv 4D->D
    GLA(x) = proj(cross(window_msa(x)) + BN(conv3x3(x)) + BN(conv1x1(x)))
      window_msa: 1x1 conv to q, k, v; multi-head self-attention inside non-overlapping
                  ws x ws windows with a learned relative position bias
      cross:      mean over ws pixels along the rows plus mean over ws pixels along the
                  columns of the attention output (context across window borders)
      proj:       depthwise ws x ws conv, BN, 1x1 conv

WF (weighted fusion): ``w = relu(weights) / (sum(relu(weights)) + 1e-8)``;
``3x3 conv-BN-ReLU6(w_0 * conv1x1(skip) + w_1 * up(x))``.

Choices where the paper is silent or its code is specific to one setup (blocks):

* Maps whose side is not a multiple of the window are zero-padded on the bottom/right for
  the attention and the padded pixels are masked out as keys (the paper's code reflects
  them in, which fails on maps smaller than the window and lets padding leak into the
  attention); the output is cropped back. The cross-shaped means use edge-replicated
  padding so the output keeps the map size.
* Upsampling is bilinear onto the skip's size (not a fixed factor 2), so odd chip sizes and
  cached features of any size work.
* Activations are ReLU6 as in the paper's code; the GLTB norms are BatchNorm (the code's
  choice; the maps are small and batches of chips are large enough).
* The FRH channel attention reduces by 16 (at least 1 channel); the spatial attention is a
  depthwise 3x3 conv and a sigmoid, as in the paper's code.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ConvBNReLU", "GlobalLocalAttention", "UNetFormerDecoder", "resize"]

#: Expansion of the GLTB MLP.
MLP_RATIO = 4
#: Channel reduction of the FRH channel attention.
CHANNEL_ATTENTION_REDUCTION = 16
#: Keeps the fusion weights' normalisation finite when both are 0.
FUSION_EPS = 1e-8


# --------------------------------------------------------------------------- building blocks


class _ConvBN(nn.Sequential):
    """``k x k`` conv (no bias, "same" padding for odd ``k``) and BatchNorm."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(out_channels),
        )


class ConvBNReLU(nn.Sequential):
    """``k x k`` conv (no bias), BatchNorm, ReLU6 (plain ReLU when ``relu6`` is False)."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 3, *, relu6: bool = True
    ) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU6() if relu6 else nn.ReLU(),
        )


class _SeparableConvBN(nn.Module):
    """Depthwise ``k x k`` conv (zero "same" padding, any ``k``), BatchNorm, pointwise conv."""

    def __init__(self, channels: int, kernel_size: int) -> None:
        super().__init__()
        # (left, right, top, bottom): even kernels pad one more on the bottom/right.
        lo, hi = (kernel_size - 1) // 2, kernel_size // 2
        self.padding = (lo, hi, lo, hi)
        self.depthwise = nn.Conv2d(channels, channels, kernel_size, groups=channels, bias=False)
        self.norm = nn.BatchNorm2d(channels)
        self.pointwise = nn.Conv2d(channels, channels, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """``(N, C, h, w)`` -> ``(N, C, h, w)``."""
        return self.pointwise(self.norm(self.depthwise(F.pad(x, self.padding))))


def resize(x: Tensor, size: Sequence[int]) -> Tensor:
    """Bilinear resize of ``(N, C, h, w)`` to ``size`` (no-op when already there)."""
    size = (int(size[0]), int(size[1]))
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class GlobalLocalAttention(nn.Module):
    """Window self-attention with cross-shaped context (global) plus conv branches (local).

    Args:
        dim: Channels ``D`` in and out.
        num_heads: Attention heads; must divide ``dim``.
        window_size: Side ``ws`` of the attention windows and of the cross-shaped means.
    """

    relative_index: Tensor  # (ws*ws, ws*ws) int64, non-persistent

    def __init__(self, dim: int, num_heads: int, window_size: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.window_size = window_size
        self.local3 = _ConvBN(dim, dim, 3)
        self.local1 = _ConvBN(dim, dim, 1)
        self.qkv = nn.Conv2d(dim, 3 * dim, 1, bias=False)
        self.proj = _SeparableConvBN(dim, window_size)
        # One learned bias per head and relative offset (dy, dx) in [-(ws-1), ws-1]^2.
        span = 2 * window_size - 1
        self.relative_bias = nn.Parameter(torch.zeros(span * span, num_heads))
        nn.init.trunc_normal_(self.relative_bias, std=0.02)
        ys, xs = torch.meshgrid(torch.arange(window_size), torch.arange(window_size), indexing="ij")
        ys, xs = ys.flatten(), xs.flatten()  # (ws*ws,)
        dy = ys[:, None] - ys[None, :] + window_size - 1
        dx = xs[:, None] - xs[None, :] + window_size - 1
        self.register_buffer("relative_index", dy * span + dx, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, D, h, w)`` -> ``(B, D, h, w)``."""
        local = self.local3(x) + self.local1(x)
        attended = self._window_attention(x)
        return self.proj(self._cross_context(attended) + local)

    def _window_attention(self, x: Tensor) -> Tensor:
        """Multi-head self-attention inside ``ws x ws`` windows, ``(B, D, h, w)`` -> same."""
        batch, dim, height, width = x.shape
        ws, heads = self.window_size, self.num_heads
        pad_h, pad_w = -height % ws, -width % ws
        qkv = self.qkv(F.pad(x, (0, pad_w, 0, pad_h)))  # (B, 3D, Hp, Wp)
        rows, cols = (height + pad_h) // ws, (width + pad_w) // ws
        # (B, 3, heads, d, rows, ws, cols, ws) -> (3, B, rows*cols, heads, ws*ws, d)
        qkv = qkv.view(batch, 3, heads, dim // heads, rows, ws, cols, ws)
        qkv = qkv.permute(1, 0, 4, 6, 2, 5, 7, 3).reshape(
            3, batch, rows * cols, heads, ws * ws, dim // heads
        )
        bias = self.relative_bias[self.relative_index.view(-1)]  # (ws^4, heads)
        bias = bias.view(ws * ws, ws * ws, heads).permute(2, 0, 1)  # (heads, N, N)
        bias = bias.to(qkv.dtype)
        if pad_h or pad_w:
            valid = torch.zeros(rows * ws, cols * ws, dtype=torch.bool, device=x.device)
            valid[:height, :width] = True
            valid = valid.view(rows, ws, cols, ws).permute(0, 2, 1, 3).reshape(rows * cols, -1)
            # Padded keys get -inf; every window keeps >= 1 real key (padding < ws).
            blocked = torch.zeros(valid.shape, dtype=qkv.dtype, device=x.device)
            blocked = blocked.masked_fill(~valid, float("-inf"))
            bias = bias[None] + blocked[:, None, None, :]  # (windows, heads, N, N)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], attn_mask=bias)
        # (B, rows*cols, heads, ws*ws, d) -> (B, D, Hp, Wp) -> crop
        out = out.view(batch, rows, cols, heads, ws, ws, dim // heads)
        out = out.permute(0, 3, 6, 1, 4, 2, 5).reshape(batch, dim, rows * ws, cols * ws)
        return out[:, :, :height, :width]

    def _cross_context(self, x: Tensor) -> Tensor:
        """Mean over ``ws`` pixels along each column plus along each row; same shape."""
        ws = self.window_size
        lo, hi = (ws - 1) // 2, ws // 2
        vertical = F.avg_pool2d(F.pad(x, (0, 0, lo, hi), mode="replicate"), (ws, 1), stride=1)
        horizontal = F.avg_pool2d(F.pad(x, (lo, hi, 0, 0), mode="replicate"), (1, ws), stride=1)
        return vertical + horizontal


class _GLTB(nn.Module):
    """Global-local transformer block: attention and MLP, each behind BN with a residual."""

    def __init__(self, dim: int, num_heads: int, window_size: int) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(dim)
        self.attention = GlobalLocalAttention(dim, num_heads, window_size)
        self.norm2 = nn.BatchNorm2d(dim)
        hidden = MLP_RATIO * dim
        self.mlp = nn.Sequential(nn.Conv2d(dim, hidden, 1), nn.ReLU6(), nn.Conv2d(hidden, dim, 1))

    def forward(self, x: Tensor) -> Tensor:
        """``(B, D, h, w)`` -> ``(B, D, h, w)``."""
        x = x + self.attention(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class _WeightedFusion(nn.Module):
    """Upsample the decoder map onto the skip, learned normalised weighted sum, 3x3 conv."""

    def __init__(self, skip_channels: int, dim: int) -> None:
        super().__init__()
        self.skip = nn.Conv2d(skip_channels, dim, 1, bias=False)
        self.weights = nn.Parameter(torch.ones(2))
        self.post = ConvBNReLU(dim, dim, 3)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        """``(B, D, h, w)`` and ``(B, A, ~2h, ~2w)`` -> ``(B, D, *skip.shape[-2:])``."""
        weights = F.relu(self.weights)
        weights = weights / (weights.sum() + FUSION_EPS)
        fused = weights[0] * self.skip(skip) + weights[1] * resize(x, skip.shape[-2:])
        return self.post(fused)


class _FeatureRefinementHead(nn.Module):
    """Stride-4 fusion, then spatial and channel attention, a separable conv and a shortcut."""

    def __init__(self, skip_channels: int, dim: int) -> None:
        super().__init__()
        self.fusion = _WeightedFusion(skip_channels, dim)
        self.spatial = nn.Sequential(nn.Conv2d(dim, dim, 3, padding=1, groups=dim), nn.Sigmoid())
        hidden = max(1, dim // CHANNEL_ATTENTION_REDUCTION)
        self.channel = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(dim, hidden, 1, bias=False),
            nn.ReLU6(),
            nn.Conv2d(hidden, dim, 1, bias=False),
            nn.Sigmoid(),
        )
        self.shortcut = _ConvBN(dim, dim, 1)
        self.proj = _SeparableConvBN(dim, 3)
        self.act = nn.ReLU6()

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        """``(B, D, h, w)`` and ``(B, A_0, ~2h, ~2w)`` -> ``(B, D, *skip.shape[-2:])``."""
        x = self.fusion(x, skip)
        attended = self.spatial(x) * x + self.channel(x) * x
        return self.act(self.proj(attended) + self.shortcut(x))


class _ClassifierHead(nn.Sequential):
    """3x3 conv-BN-ReLU6, dropout, 1x1 conv to classes."""

    def __init__(self, dim: int, num_classes: int, dropout: float) -> None:
        super().__init__(
            ConvBNReLU(dim, dim, 3), nn.Dropout2d(dropout), nn.Conv2d(dim, num_classes, 1)
        )


class UNetFormerDecoder(nn.Module):
    """GLTB decoder, feature refinement head and classifier(s) on a 4-map pyramid.

    Args:
        channels: Channels of the (adapted) maps at strides 4, 8, 16, 32.
        dim: Decoder width ``D``.
        num_heads: Attention heads of each GLTB.
        window_size: Attention window side.
        num_classes: Output classes.
        dropout: Dropout before the classifier(s).
        aux_head: Build the auxiliary head (used in training mode only).
    """

    def __init__(
        self,
        channels: Sequence[int],
        *,
        dim: int,
        num_heads: int,
        window_size: int,
        num_classes: int,
        dropout: float,
        aux_head: bool,
    ) -> None:
        super().__init__()
        self.top = _ConvBN(channels[3], dim, 1)
        self.block32 = _GLTB(dim, num_heads, window_size)
        self.fuse16 = _WeightedFusion(channels[2], dim)
        self.block16 = _GLTB(dim, num_heads, window_size)
        self.fuse8 = _WeightedFusion(channels[1], dim)
        self.block8 = _GLTB(dim, num_heads, window_size)
        self.refine = _FeatureRefinementHead(channels[0], dim)
        self.classifier = _ClassifierHead(dim, num_classes, dropout)
        self.aux = _ClassifierHead(dim, num_classes, dropout) if aux_head else None

    def forward(
        self, features: Sequence[Tensor], size: tuple[int, int]
    ) -> tuple[Tensor, Tensor | None]:
        """Logits (and aux logits in training with an aux head) at ``size``.

        Args:
            features: Four maps ``(B, A_i, ~S/s_i, ~S/s_i)``, strides 4, 8, 16, 32.
            size: ``(H, W)`` of the outputs.

        Returns:
            ``(B, num_classes, H, W)`` logits and aux logits of the same shape, or None.
        """
        x32 = self.block32(self.top(features[3]))
        x16 = self.block16(self.fuse16(x32, features[2]))
        x8 = self.block8(self.fuse8(x16, features[1]))
        logits = resize(self.classifier(self.refine(x8, features[0])), size)
        if self.aux is None or not self.training:
            return logits, None
        stride8 = x8.shape[-2:]
        context = resize(x32, stride8) + resize(x16, stride8) + x8
        return logits, resize(self.aux(context), size)


# --------------------------------------------------------------------------- the model
