"""TinyViT inference without its wasted passes: batch norms folded, GELUs in place.

Every convolution of MobileSAM's TinyViT is a ``Conv2d_BN``: a bias-free convolution followed
by ``BatchNorm2d``. With the batch norm in eval mode (running statistics) the pair is one
convolution, ``BN(conv(x, W)) = conv(x, W * s) + (beta - mean * s)`` with ``s = gamma /
sqrt(var + eps)`` per output channel, so the batch norm's own pass over every map (a tenth
of the encoder's time on a 2-core CPU) disappears. The folded weight is kept in
channels-last layout, and the encoder feeds its input channels last: the 1x1 and depthwise
convolutions at stride 4 run faster in that layout on CPU, and TinyViT's token <-> map
reshapes around its local convolutions become views instead of copies.

Every GELU of TinyViT acts on a temporary (the output of the convolution or linear layer
just before it, or of the residual sum in ``MBConv``), so without autograd it overwrites its
input instead of allocating a new map: at stride 4 each is a 64 MiB tensor at 1024 px, and
fresh memory of that size costs page faults on every pass.

Measured on a 2-core CPU (``benchmarks/encoders.py``, ``benchmarks/tinyvit_variants.py``)
the encoder takes 0.7 to 0.85 of the official time (the machine's drift between runs is of
the same order); outputs equal the official modules up to float rounding (tested).

Installing keeps every parameter, buffer and state-dict key: only each instance's class
changes, to a subclass of the official one, so ``mobile_sam.pt`` keeps loading strictly.
The folded weight is cached and recomputed whenever the convolution's weight or a
batch-norm parameter or statistic changes (a new tensor or an in-place update; weights made
under inference mode have no version counter and are folded on every call). The official
forwards run in training mode and when gradients are wanted.
"""

from __future__ import annotations

from functools import cache

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["InPlaceGELU", "fold_conv_bn", "gelu_in_place", "speed_up_tinyvit"]

#: Instance attribute holding the cached folded (key, weight, bias).
_CACHE = "_rs_sam_folded"


def speed_up_tinyvit(model: nn.Module) -> None:
    """Folded convolutions and in-place GELUs for every TinyViT module below ``model``."""
    fold_conv_bn(model)
    gelu_in_place(model)


class InPlaceGELU(nn.GELU):
    """``nn.GELU`` that overwrites its input when no autograd is recorded.

    Only for modules whose GELU input is a temporary nobody reads again (TinyViT's).
    """

    def forward(self, input: Tensor) -> Tensor:
        if torch.is_grad_enabled():
            return super().forward(input)
        return torch.ops.aten.gelu_(input, approximate=self.approximate)


def gelu_in_place(model: nn.Module) -> int:
    """Switch every ``nn.GELU`` below ``model`` to :class:`InPlaceGELU`; returns how many."""
    count = 0
    for module in model.modules():
        if type(module) is nn.GELU:
            module.__class__ = InPlaceGELU
            count += 1
    return count


def fold_conv_bn(model: nn.Module) -> int:
    """Give every TinyViT ``Conv2d_BN`` below ``model`` the folded forward; returns how many."""
    official, folded = _classes()
    count = 0
    for module in model.modules():
        if type(module) is official:
            module.__class__ = folded
            count += 1
    return count


@cache
def _classes() -> tuple[type[nn.Module], type[nn.Module]]:
    """segment_anything_hq's ``Conv2d_BN`` and its folded subclass (made on first use)."""
    import warnings

    with warnings.catch_warnings():  # timm's deprecation notices on import
        warnings.simplefilter("ignore")
        from segment_anything_hq.modeling.tiny_vit_sam import Conv2d_BN

    class FoldedConv2dBN(Conv2d_BN):  # type: ignore[misc, valid-type]
        """``Conv2d_BN`` whose eval forward is one convolution with the batch norm folded in."""

        def forward(self, x: Tensor) -> Tensor:
            conv, norm = self.c, self.bn
            if self.training or (
                torch.is_grad_enabled() and any(p.requires_grad for p in self.parameters())
            ):
                return super().forward(x)
            weight, bias = _folded(self, conv, norm)
            return F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)

        def __getstate__(self) -> dict:
            state = dict(super().__getstate__())
            state.pop(_CACHE, None)  # derived tensors: not pickled nor deep-copied
            return state

    # found by name through this module's __getattr__ (pickle, in this process or another)
    FoldedConv2dBN.__module__ = __name__
    FoldedConv2dBN.__qualname__ = FoldedConv2dBN.__name__
    return Conv2d_BN, FoldedConv2dBN


def __getattr__(name: str) -> type[nn.Module]:
    if name == "FoldedConv2dBN":
        return _classes()[1]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _folded(owner: nn.Module, conv: nn.Conv2d, norm: nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
    """The folded (weight, bias) of ``owner``, cached on it until its tensors change."""
    tensors = [t for t in (conv.weight, norm.weight, norm.bias, norm.running_mean,
                           norm.running_var) if t is not None]  # fmt: skip
    # inference tensors (made under inference mode) have no version counter: never cached
    key = None
    if not any(t.is_inference() for t in tensors):
        key = tuple((t.data_ptr(), t._version) for t in tensors)
        cached = owner.__dict__.get(_CACHE)
        if cached is not None and cached[0] == key:
            return cached[1], cached[2]
    # plain tensors even inside inference mode: training with LoRA reuses them with autograd
    with torch.inference_mode(False), torch.no_grad():
        assert norm.running_var is not None and norm.running_mean is not None
        scale = torch.rsqrt(norm.running_var + norm.eps)
        if norm.weight is not None:
            scale = scale * norm.weight
        weight = (conv.weight * scale[:, None, None, None]).contiguous(
            memory_format=torch.channels_last
        )
        bias = -norm.running_mean * scale
        if norm.bias is not None:
            bias = bias + norm.bias
    if key is not None:
        owner.__dict__[_CACHE] = (key, weight, bias)
    return weight, bias
