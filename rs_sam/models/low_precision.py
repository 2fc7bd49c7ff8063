"""Lower-precision copies of decoder modules, for opt-in bfloat16 decoding.

``decoder_precision="bfloat16"`` decodes with the mask decoder's weights and activations in
bfloat16: about 4x the float32 matrix-product rate on CPUs with AVX512-BF16 or AMX (and
on GPUs), at the cost of masks that differ slightly from float32 decoding. The image
embedding stays float32 (the encoder is not affected); the outputs are returned in the
embedding's dtype.
"""

from __future__ import annotations

import copy
import warnings
import weakref
from functools import cache

import torch
from torch import nn

__all__ = [
    "DECODER_PRECISIONS",
    "cpu_has_bfloat16",
    "decoder_dtype",
    "low_precision_copy",
    "warn_if_slow_bfloat16",
]

#: Precision names of the mask decoding (settings and options) and their dtypes.
DECODER_PRECISIONS = {"float32": torch.float32, "bfloat16": torch.bfloat16}

_COPIES: weakref.WeakKeyDictionary[nn.Module, tuple[tuple, nn.Module]] = weakref.WeakKeyDictionary()


def decoder_dtype(precision: str) -> torch.dtype:
    """The dtype of a precision name.

    Raises:
        ValueError: an unknown name.
    """
    try:
        return DECODER_PRECISIONS[precision]
    except KeyError:
        raise ValueError(
            f"decoder precision {precision!r} is unknown; use {' or '.join(DECODER_PRECISIONS)}"
        ) from None


def cpu_has_bfloat16() -> bool | None:
    """Whether this CPU multiplies bfloat16 natively (AVX512-BF16 or AMX); None: unknown."""
    checks = [getattr(torch.cpu, name, None)
              for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]  # fmt: skip
    if not any(callable(check) for check in checks):
        return None
    return any(bool(check()) for check in checks if callable(check))


@cache
def warn_if_slow_bfloat16() -> None:
    """Warn once per process when bfloat16 decoding runs on a CPU without bfloat16 units."""
    if cpu_has_bfloat16() is False:
        warnings.warn(
            "bfloat16 decoding on a CPU without AVX512-BF16 or AMX is usually slower than "
            "float32 and only approximate; use --decoder-precision float32 here",
            RuntimeWarning,
            stacklevel=3,
        )


def low_precision_copy(module: nn.Module, dtype: torch.dtype) -> nn.Module:
    """``module`` with its floating-point parameters and buffers in ``dtype`` (cached).

    The copy is made once per module and dtype, and again when any parameter or buffer
    of ``module`` was replaced or modified in place since (its storage or version changed).
    """
    if all(t.dtype == dtype for t in _tensors(module) if t.is_floating_point()):
        return module
    key = (dtype, tuple((t.data_ptr(), t._version) for t in _tensors(module)))
    cached = _COPIES.get(module)
    if cached is not None and cached[0] == key:
        return cached[1]
    converted = copy.deepcopy(module).to(dtype)
    _COPIES[module] = (key, converted)
    return converted


def _tensors(module: nn.Module) -> list[torch.Tensor]:
    return [*module.parameters(), *module.buffers()]
