"""The image-encoder LoRA layer: a fused ``qkv`` Linear with updates on some of its rows.

SAM ViT, MobileSAM's TinyViT and SAM 2's Hiera compute q, k and v with ONE fused ``qkv`` Linear
per attention block, laid out differently (ViT and Hiera: ``[q | k | v]``; TinyViT: per head
``[q_h | k_h | v_h]``).
:func:`qkv_rows` finds each part's rows; :class:`LoraQKV` adapts only the target parts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rs_sam.errors import ConfigError
from rs_sam.models.lora.settings import PARTS


class LoraQKV(nn.Linear):
    """A fused ``qkv`` Linear with LoRA updates on some of its output rows only.

    The base ``weight`` and ``bias`` are the original Linear's Parameters (same state-dict keys,
    still frozen); per target part ``p`` it adds ``scaling * B_p @ A_p @ dropout(x)`` to the
    output rows ``index_p`` (``A_p``: ``(rank, in)``, Kaiming-uniform; ``B_p``:
    ``(len(index_p), rank)``, zero). Parameters: ``lora_A.<p>``, ``lora_B.<p>``.

    Args:
        base: The fused ``qkv`` Linear.
        rows: Output-row indices of each target part (``{"q": LongTensor, "v": ...}``).
        rank, scaling, dropout: See :class:`LoraSettings`.
    """

    def __init__(
        self,
        base: nn.Linear,
        rows: Mapping[str, Tensor],
        *,
        rank: int,
        scaling: float,
        dropout: float,
    ) -> None:
        nn.Module.__init__(self)  # share the base Parameters instead of creating new ones
        self.in_features = base.in_features
        self.out_features = base.out_features
        self.weight = base.weight
        if base.bias is None:
            self.register_parameter("bias", None)
        else:
            self.bias = base.bias
        self.rank = rank
        self.scaling = scaling
        self.parts = tuple(rows)
        self.lora_dropout: nn.Module = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        device, dtype = base.weight.device, base.weight.dtype
        self.lora_A = nn.ParameterDict()
        self.lora_B = nn.ParameterDict()
        for part, index in rows.items():
            self.register_buffer(f"rows_{part}", index.to(base.weight.device), persistent=False)
            a = torch.empty(rank, self.in_features, device=device, dtype=dtype)
            nn.init.kaiming_uniform_(a, a=math.sqrt(5))  # peft's default initialisation
            self.lora_A[part] = nn.Parameter(a)
            self.lora_B[part] = nn.Parameter(
                torch.zeros(len(index), rank, device=device, dtype=dtype)
            )

    def rows(self, part: str) -> Tensor:
        """Output-row indices of ``part``."""
        index: Tensor = getattr(self, f"rows_{part}")
        return index

    def delta_weight(self, part: str) -> Tensor:
        """``scaling * B @ A`` for ``part``: ``(len(rows), in_features)``."""
        return self.scaling * (self.lora_B[part] @ self.lora_A[part])

    def forward(self, x: Tensor) -> Tensor:
        out = F.linear(x, self.weight, self.bias)
        h = self.lora_dropout(x)
        for part in self.parts:
            delta = F.linear(F.linear(h, self.lora_A[part]), self.lora_B[part]) * self.scaling
            out = out.index_add(-1, self.rows(part), delta.to(out.dtype))
        return out

    def merged(self) -> nn.Linear:
        """A plain Linear with the updates folded in (this module's Parameters, updated)."""
        with torch.no_grad():
            for part in self.parts:
                self.weight[self.rows(part)] += self.delta_weight(part).to(self.weight.dtype)
        linear = nn.Linear(
            self.in_features, self.out_features, bias=self.bias is not None, device="meta"
        )
        linear.weight = self.weight
        if self.bias is not None:
            linear.bias = self.bias
        return linear

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, lora_rank={self.rank}, lora_parts={list(self.parts)}"


def qkv_rows(attn: Any, qkv: nn.Linear) -> dict[str, Tensor]:
    """Output rows of q, k and v inside the fused ``qkv`` of a SAM ViT or TinyViT attention."""
    out = qkv.out_features
    heads = getattr(attn, "num_heads", None)
    if hasattr(attn, "key_dim") and hasattr(attn, "d") and isinstance(heads, int):
        # TinyViT (MobileSAM): qkv.view(B, N, heads, -1).split([key_dim, key_dim, d]) per head
        key_dim, d = int(attn.key_dim), int(attn.d)
        block = 2 * key_dim + d
        if heads * block == out:
            starts = torch.arange(heads) * block
            spans = {"q": (0, key_dim), "k": (key_dim, 2 * key_dim), "v": (2 * key_dim, block)}
            return {
                part: (starts[:, None] + torch.arange(lo, hi)[None, :]).reshape(-1)
                for part, (lo, hi) in spans.items()
            }
    else:
        # SAM ViT: qkv(x).reshape(B, HW, 3, heads, -1): rows [q | k | v] of its width. SAM 2's
        # Hiera: the same, of the block's output width (dim_out), which doubles at a stage's
        # first block (qkv: dim -> 3 * dim_out).
        dim = getattr(attn, "dim_out", None) if hasattr(attn, "query_stride") else None
        dim = qkv.in_features if dim is None else int(dim)
        if out == 3 * dim:
            return {part: torch.arange(i * dim, (i + 1) * dim) for i, part in enumerate(PARTS)}
    raise ConfigError(
        f"cannot tell where q, k and v sit in the fused qkv of {type(attn).__name__} "
        f"({qkv.in_features} -> {out}); LoRA supports SAM ViT, MobileSAM (TinyViT) and "
        "SAM 2 (Hiera) attention"
    )
