"""LoRA for SamLP-style fine-tuning of SAM-family encoders (library level: no training loop).

SamLP (Ding et al. 2024) adds low-rank updates to the **q and v** projections of the image
encoder's attention (rank 2 by default) and, in a variant, to the mask decoder's attention; the
base weights stay frozen. This module injects, counts, saves, loads and merges such adapters on a
:class:`~rs_sam.models.encoders.FrozenEncoder` of the SAM family (``sam_vit_*``, ``mobile_sam``).

Where peft is used and where it is not
--------------------------------------
* **Image encoder: a small custom module, not peft.** SAM ViT and MobileSAM's TinyViT compute
  q, k and v with ONE fused ``qkv`` ``nn.Linear`` per attention block. peft's LoRA adapts a whole
  Linear (all its output rows), so it cannot restrict the update to q and v; and the fused rows
  are laid out differently in the two families (ViT: ``[q | k | v]``; TinyViT: per head
  ``[q_h | k_h | v_h]``, interleaved). :class:`LoraQKV` replaces each ``qkv`` Linear with a Linear
  subclass that shares the base ``weight``/``bias`` (state-dict keys unchanged) and adds
  ``scale * B_p @ A_p @ x`` to the output rows of each target part ``p`` only (SamLP's design).
* **Mask decoder: peft.** Its attention has separate ``q_proj``/``k_proj``/``v_proj``/``out_proj``
  Linears, so :func:`peft.inject_adapter_in_model` with ``target_modules=["q_proj", "v_proj"]``
  does exactly SamLP's decoder variant. (peft keys then read ``...q_proj.base_layer.weight`` and
  ``...q_proj.lora_A.default.weight`` until :func:`merge_lora`.) peft imports transformers
  (seconds), so it is imported only when ``decoder=True``.

Load the base checkpoint before injecting: ``encoder.load_checkpoint`` is strict and does not
expect LoRA tensors. Both use the usual LoRA conventions: ``A`` Kaiming-uniform, ``B`` zero (the
output is unchanged at injection), ``scale = alpha / rank``.

Training and evaluation modes
-----------------------------
:class:`FrozenEncoder` keeps every submodule in eval mode whatever ``.train()`` is asked (so a
Lightning module can call ``.train()`` on its parent each epoch without waking BatchNorm in
TinyViT's conv stages). LoRA modules are submodules, so their dropout is **off** after any
``.train()``/``.eval()`` call. With SamLP's default ``dropout=0.0`` this changes nothing; with
dropout, call :func:`set_lora_train_mode` (``True``) after every ``.train()`` on the encoder or
its parents (e.g. in ``on_train_epoch_start``) and ``False`` before validation; it switches only
the LoRA dropout modules, never the base model.

Gradients: ``encoder(images)`` and ``encoder.embed(images)`` still work after injection (LoRA
applied) but run under ``torch.no_grad()`` as the frozen-encoder contract says. Training code uses
:func:`encode_trainable` / :func:`embed_trainable`, the same computation with autograd on.
``encoder.freeze()`` freezes LoRA too; :func:`set_trainable` unfreezes what should train (SamLP
stage 2: ``set_trainable(encoder, image_encoder=False, extra_prefixes=("prompt_encoder.",))``).
Whole parts of the mask decoder can train beside the LoRA (as SAMed fine-tunes its decoder):
:func:`decoder_part_prefixes` turns names such as ``output_hypernetworks_mlps`` into such
prefixes; :func:`save_adapter` then saves those tensors too and :func:`load_adapter` restores
them.

Adapter files
-------------
:func:`save_adapter` writes ``{"rs_sam_lora": record, "state_dict": {name: tensor}}`` with
``torch.save`` (atomically: temp file + ``os.replace``). Tensor names are those of the official
``Sam`` module (``image_encoder.blocks.0.attn.qkv.lora_A.q``, ``prompt_encoder.*``...). The
record holds the format version, the base encoder name, whether its weights were random, the
sha256 of its checkpoint (None for random weights), the tiny flag, the :class:`LoraSettings`, the
extra prefixes, created-by and the caller's JSON metadata. :func:`load_adapter` reads it with
``torch.load(weights_only=True)`` and refuses another base encoder or checkpoint.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rs_sam.checkpoints import TORCH_LOAD_ERRORS
from rs_sam.errors import (
    CheckpointError,
    CheckpointNotFoundError,
    ConfigError,
    OutputPathError,
)
from rs_sam.models.encoders.base import EncoderOutput, FrozenEncoder
from rs_sam.models.encoders.registry import encoder_fingerprint

ADAPTER_KEY = "rs_sam_lora"
ADAPTER_FORMAT = 1
PARTS = ("q", "k", "v")
DECODER_TARGETS = ("q_proj", "v_proj")
_SAM_PARTS = ("image_encoder.", "prompt_encoder.", "mask_decoder.")
_HASH_SHOWN = 12  # hex digits of a sha256 quoted in messages
_MAX_LISTED = 3  # tensor names quoted in one message


# ----------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class LoraSettings:
    """Where and how large the LoRA updates are.

    Attributes:
        rank: Rank of every update (SamLP: 2).
        alpha: LoRA alpha; the update is scaled by ``alpha / rank``. None means ``rank``
            (scale 1, SamLP's choice).
        dropout: Dropout on the LoRA input (0 = none, SamLP). Active only while
            :func:`set_lora_train_mode` says so (see the module docstring).
        targets: Parts of the image encoder's fused ``qkv`` that get an update, a subset of
            ``("q", "k", "v")`` in any order (SamLP: q and v).
        decoder: Also put LoRA (via peft) on the mask decoder's attention ``q_proj``/``v_proj``.
    """

    rank: int = 2
    alpha: float | None = None
    dropout: float = 0.0
    targets: tuple[str, ...] = ("q", "v")
    decoder: bool = False

    def __post_init__(self) -> None:
        rank = self.rank
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
            raise ConfigError(f"LoRA rank={rank!r} must be a positive integer (SamLP uses 2)")
        alpha = self.alpha
        if alpha is not None and (
            isinstance(alpha, bool)
            or not isinstance(alpha, int | float)
            or not math.isfinite(alpha)
            or alpha <= 0
        ):
            raise ConfigError(
                f"LoRA alpha={alpha!r} must be a positive number, or None to use the rank"
            )
        dropout = self.dropout
        if (
            isinstance(dropout, bool)
            or not isinstance(dropout, int | float)
            or not 0.0 <= dropout < 1.0
        ):
            raise ConfigError(f"LoRA dropout={dropout!r} must be in [0, 1); use 0 for none")
        targets = self.targets
        if isinstance(targets, str) or not isinstance(targets, Iterable):
            raise ConfigError(
                f"LoRA targets={targets!r} must be a list of parts such as ['q', 'v']"
            )
        targets = tuple(targets)
        unknown = [t for t in targets if t not in PARTS]
        if unknown or not targets:
            raise ConfigError(
                f"LoRA targets={list(targets)!r} must be a non-empty subset of "
                f"{list(PARTS)} (SamLP: ['q', 'v'])"
            )
        if len(set(targets)) != len(targets):
            raise ConfigError(f"LoRA targets={list(targets)!r} lists a part twice; list each once")
        if not isinstance(self.decoder, bool):
            raise ConfigError(f"LoRA decoder={self.decoder!r} must be true or false")
        object.__setattr__(self, "targets", tuple(t for t in PARTS if t in targets))
        if alpha is not None:
            object.__setattr__(self, "alpha", float(alpha))
        object.__setattr__(self, "dropout", float(dropout))

    @property
    def scaling(self) -> float:
        """Factor of every update: ``alpha / rank`` (1 when alpha is None)."""
        return 1.0 if self.alpha is None else self.alpha / self.rank

    def to_dict(self) -> dict[str, Any]:
        """Plain values (lists, not tuples) for configs and adapter files."""
        values = dataclasses.asdict(self)
        values["targets"] = list(self.targets)
        return values

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> LoraSettings:
        """Settings from :meth:`to_dict` output or a config section.

        Raises:
            ConfigError: Unknown keys or invalid values.
        """
        if not isinstance(values, Mapping):
            raise ConfigError(f"LoRA settings must be a mapping; got {type(values).__name__}")
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise ConfigError(
                f"unknown LoRA setting(s) {', '.join(map(str, unknown))}; valid: {', '.join(names)}"
            )
        kwargs = dict(values)
        if "targets" in kwargs and isinstance(kwargs["targets"], list):
            kwargs["targets"] = tuple(kwargs["targets"])
        return cls(**kwargs)


@dataclass(frozen=True)
class LoraInfo:
    """Parameter counts of an encoder carrying LoRA.

    Attributes:
        image_encoder: LoRA parameters in the image encoder.
        mask_decoder: LoRA parameters in the mask decoder (peft).
        trainable: Parameters of the whole encoder that require grad now.
        total: All parameters of the encoder (base and LoRA).
        image_layers: Fused ``qkv`` layers carrying LoRA.
        decoder_layers: Mask-decoder Linears carrying LoRA.
    """

    image_encoder: int
    mask_decoder: int
    trainable: int
    total: int
    image_layers: int
    decoder_layers: int

    @property
    def lora(self) -> int:
        """All LoRA parameters."""
        return self.image_encoder + self.mask_decoder

    @property
    def trainable_fraction(self) -> float:
        """``trainable / total``."""
        return self.trainable / self.total if self.total else 0.0


# ----------------------------------------------------------------------------- the module


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


def _qkv_rows(attn: Any, qkv: nn.Linear) -> dict[str, Tensor]:
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
    elif out == 3 * qkv.in_features:
        # SAM ViT: qkv(x).reshape(B, HW, 3, heads, -1): rows [q | k | v]
        dim = qkv.in_features
        return {part: torch.arange(i * dim, (i + 1) * dim) for i, part in enumerate(PARTS)}
    raise ConfigError(
        f"cannot tell where q, k and v sit in the fused qkv of {type(attn).__name__} "
        f"({qkv.in_features} -> {out}); LoRA supports SAM ViT and MobileSAM (TinyViT) attention"
    )


# ----------------------------------------------------------------------------- state


@dataclass
class _LoraState:
    settings: LoraSettings
    merged: bool = False


_STATE_ATTR = "_rs_sam_lora"


def _state(encoder: FrozenEncoder) -> _LoraState | None:
    state = encoder.__dict__.get(_STATE_ATTR)
    return state if isinstance(state, _LoraState) else None


def _sam(encoder: FrozenEncoder) -> Any:
    sam = getattr(encoder, "sam", None)
    if not isinstance(encoder, FrozenEncoder) or not isinstance(sam, nn.Module):
        name = encoder.spec.name if isinstance(encoder, FrozenEncoder) else type(encoder).__name__
        raise ConfigError(
            f"LoRA needs a SAM-family encoder with a SAM image encoder; '{name}' has none: "
            "use e.g. 'mobile_sam' or 'sam_vit_b'"
        )
    return sam


def _active_state(encoder: FrozenEncoder, action: str) -> _LoraState:
    state = _state(encoder)
    if state is None:
        raise ConfigError(
            f"cannot {action}: encoder '{encoder.spec.name}' carries no LoRA; "
            "call apply_lora(encoder, settings) or load_adapter(path, encoder) first"
        )
    if state.merged:
        raise ConfigError(
            f"cannot {action}: the LoRA of encoder '{encoder.spec.name}' was merged into its "
            "weights; do it before merge_lora, or build a fresh encoder with load_encoder"
        )
    return state


def _is_tiny(encoder: FrozenEncoder) -> bool:
    return encoder.input_size != encoder.spec.input_size


def _is_peft_lora(module: nn.Module) -> bool:
    if "peft" not in sys.modules:  # never import peft (and transformers) just to look
        return False
    from peft.tuners.lora import LoraLayer

    return isinstance(module, LoraLayer)


def _is_lora_key(name: str) -> bool:
    return any(part.startswith("lora_") for part in name.split("."))


def _lora_modules(root: nn.Module) -> Iterator[tuple[str, nn.Module, nn.Module, str]]:
    """(qualified name, module, parent, attribute) of every LoRA layer under ``root``."""
    for parent_name, parent in list(root.named_modules()):
        if isinstance(parent, LoraQKV) or _is_peft_lora(parent):
            continue  # nothing to find inside a LoRA layer
        for child_name, child in parent.named_children():
            if isinstance(child, LoraQKV) or _is_peft_lora(child):
                name = f"{parent_name}.{child_name}" if parent_name else child_name
                yield name, child, parent, child_name


def _numel(params: Iterable[nn.Parameter]) -> int:
    return sum(p.numel() for p in params)


def _listed(names: Iterable[str]) -> str:
    names = sorted(names)
    shown = ", ".join(names[:_MAX_LISTED])
    return shown + (f" and {len(names) - _MAX_LISTED} more" if len(names) > _MAX_LISTED else "")


# ----------------------------------------------------------------------------- inject


def apply_lora(encoder: FrozenEncoder, settings: LoraSettings | None = None) -> LoraInfo:
    """Inject LoRA into a SAM-family encoder, in place; only LoRA parameters train afterwards.

    Every fused ``qkv`` of the image encoder becomes a :class:`LoraQKV` with updates on
    ``settings.targets``; with ``settings.decoder`` the mask decoder's ``q_proj``/``v_proj`` get
    peft LoRA. ``B`` starts at zero, so outputs are unchanged. The encoder stays in eval mode.

    Args:
        encoder: A ``sam_vit_*`` or ``mobile_sam`` encoder without LoRA.
        settings: Rank, alpha, dropout, targets; default :class:`LoraSettings` (SamLP).

    Returns:
        Parameter counts (see :func:`count_lora_parameters`).

    Raises:
        ConfigError: Not a SAM-family encoder, or it already carries (or merged) a LoRA.
    """
    settings = LoraSettings() if settings is None else settings
    if not isinstance(settings, LoraSettings):
        raise ConfigError(f"settings must be a LoraSettings; got {type(settings).__name__}")
    sam = _sam(encoder)
    state = _state(encoder)
    if state is not None:
        what = "was merged with" if state.merged else "already carries"
        raise ConfigError(
            f"encoder '{encoder.spec.name}' {what} a LoRA; build a fresh encoder with "
            "load_encoder to apply another"
        )
    wrapped = 0
    for _, attn in list(sam.image_encoder.named_modules()):
        qkv = getattr(attn, "qkv", None)
        if type(qkv) is not nn.Linear:
            continue
        rows = _qkv_rows(attn, qkv)
        attn.qkv = LoraQKV(
            qkv,
            {part: rows[part] for part in settings.targets},
            rank=settings.rank,
            scaling=settings.scaling,
            dropout=settings.dropout,
        )
        wrapped += 1
    if wrapped == 0:
        raise ConfigError(
            f"encoder '{encoder.spec.name}' has no fused qkv attention in its image encoder; "
            "LoRA supports SAM ViT and MobileSAM"
        )
    if settings.decoder:
        _inject_decoder(sam.mask_decoder, settings)
    encoder.__dict__[_STATE_ATTR] = _LoraState(settings)
    encoder.train(False)
    return set_trainable(encoder)


def _inject_decoder(mask_decoder: nn.Module, settings: LoraSettings) -> None:
    from peft import LoraConfig, inject_adapter_in_model

    alpha: Any = settings.alpha if settings.alpha is not None else settings.rank  # float is fine
    config = LoraConfig(
        r=settings.rank,
        lora_alpha=alpha,
        lora_dropout=settings.dropout,
        target_modules=list(DECODER_TARGETS),
        bias="none",
    )
    inject_adapter_in_model(config, mask_decoder)


def set_trainable(
    encoder: FrozenEncoder,
    *,
    image_encoder: bool = True,
    mask_decoder: bool = True,
    extra_prefixes: Iterable[str] = (),
) -> LoraInfo:
    """Choose what trains: LoRA of the image encoder and/or decoder, plus whole named parts.

    Everything else is frozen. SamLP stage 1: the defaults. Stage 2 (promptable fine-tuning):
    ``image_encoder=False, extra_prefixes=("prompt_encoder.",)``.

    Args:
        encoder: An encoder carrying (unmerged) LoRA.
        image_encoder: Train the image encoder's LoRA.
        mask_decoder: Train the mask decoder's LoRA (if any).
        extra_prefixes: Names of ``Sam`` parameters trained in full (``"prompt_encoder."``).

    Raises:
        ConfigError: No LoRA, or a prefix that names no parameter.
    """
    _active_state(encoder, "choose trainable parameters")
    sam = _sam(encoder)
    prefixes = _check_prefixes(sam, extra_prefixes)
    for param in encoder.parameters():
        param.requires_grad_(False)
    for name, param in sam.named_parameters():
        if _is_lora_key(name):
            train = image_encoder if name.startswith("image_encoder.") else mask_decoder
        else:
            train = name.startswith(prefixes)
        param.requires_grad_(train)
    return count_lora_parameters(encoder)


def _check_prefixes(sam: nn.Module, prefixes: Iterable[str]) -> tuple[str, ...]:
    if isinstance(prefixes, str):
        prefixes = (prefixes,)
    checked = tuple(prefixes)
    names = list(sam.state_dict())
    for prefix in checked:
        if (
            not isinstance(prefix, str)
            or not prefix
            or not any(n.startswith(prefix) for n in names)
        ):
            raise ConfigError(
                f"extra prefix {prefix!r} names no tensor of the SAM model; use a name such as "
                f"{', '.join(repr(p) for p in _SAM_PARTS)}"
            )
    return checked


def decoder_parts(encoder: FrozenEncoder) -> tuple[str, ...]:
    """Names of the mask decoder's parts that hold parameters, in the decoder's order.

    For SAM and MobileSAM: ``transformer``, ``iou_token``, ``mask_tokens``,
    ``output_upscaling``, ``output_hypernetworks_mlps``, ``iou_prediction_head``. These are what
    :func:`decoder_part_prefixes` accepts.
    """
    decoder = _sam(encoder).mask_decoder
    return tuple(
        name for name, child in decoder.named_children() if any(True for _ in child.parameters())
    )


def decoder_part_prefixes(encoder: FrozenEncoder, parts: Iterable[str]) -> tuple[str, ...]:
    """``extra_prefixes`` that train (and save) whole parts of the mask decoder.

    ``("output_upscaling", "output_hypernetworks_mlps")`` gives
    ``("mask_decoder.output_upscaling.", "mask_decoder.output_hypernetworks_mlps.")``, for
    :func:`set_trainable`, :func:`lora_state_dict` and :func:`save_adapter`.

    Raises:
        ConfigError: Not a list of names, a name listed twice, or a name that is not a part of
            the mask decoder (the message lists the valid ones).
    """
    if isinstance(parts, str) or not isinstance(parts, Iterable):
        raise ConfigError(
            f"decoder parts {parts!r} must be a list of names such as "
            "['output_upscaling', 'output_hypernetworks_mlps']"
        )
    names = list(parts)
    valid = decoder_parts(encoder)
    unknown = [n for n in names if not isinstance(n, str) or n not in valid]
    if unknown:
        raise ConfigError(
            f"{', '.join(map(repr, unknown))} is not a part of the mask decoder; "
            f"valid: {', '.join(valid)}"
        )
    if len(set(names)) != len(names):
        raise ConfigError(f"decoder parts {names!r} list a part twice; list each once")
    return tuple(f"{_SAM_PARTS[2]}{name}." for name in names)


def count_lora_parameters(encoder: FrozenEncoder) -> LoraInfo:
    """LoRA, trainable and total parameter counts of ``encoder`` (zeros when it has no LoRA)."""
    sam = _sam(encoder)
    lora = [(n, p) for n, p in sam.named_parameters() if _is_lora_key(n)]
    image = _numel(p for n, p in lora if n.startswith(_SAM_PARTS[0]))
    decoder = _numel(p for n, p in lora if n.startswith(_SAM_PARTS[2]))
    layers = [name for name, *_ in _lora_modules(sam)]
    return LoraInfo(
        image_encoder=image,
        mask_decoder=decoder,
        trainable=_numel(p for p in encoder.parameters() if p.requires_grad),
        total=_numel(encoder.parameters()),
        image_layers=sum(n.startswith(_SAM_PARTS[0]) for n in layers),
        decoder_layers=sum(n.startswith(_SAM_PARTS[2]) for n in layers),
    )


def lora_settings(encoder: FrozenEncoder) -> LoraSettings | None:
    """The settings of the LoRA the encoder carries (also after merging), or None."""
    state = _state(encoder)
    return state.settings if state is not None else None


def set_lora_train_mode(encoder: FrozenEncoder, mode: bool = True) -> int:
    """Switch the dropout of the LoRA layers on (``True``) or off; the base model stays in eval.

    :class:`FrozenEncoder` puts every submodule in eval mode on each ``.train()``/``.eval()``
    call, so call this again after those. Returns the number of dropout modules switched (0 when
    ``dropout=0``: nothing to do).
    """
    _active_state(encoder, "switch LoRA dropout")
    switched = 0
    for _, layer, _, _ in _lora_modules(_sam(encoder)):
        dropouts = (
            [layer.lora_dropout]
            if isinstance(layer, LoraQKV)
            else list(layer.lora_dropout.values())  # type: ignore[union-attr, operator]
        )
        for module in dropouts:
            if isinstance(module, nn.Dropout):
                module.train(mode)
                switched += 1
    return switched


def encode_trainable(encoder: FrozenEncoder, images: Tensor) -> EncoderOutput:
    """``encoder(images)`` with autograd on: the pyramid and embedding, for training LoRA."""
    with torch.enable_grad():
        return encoder._encode(encoder.preprocess(images))


def embed_trainable(encoder: FrozenEncoder, images: Tensor) -> Tensor:
    """``encoder.embed(images)`` with autograd on, for training LoRA."""
    if encoder.embedding_dim is None:
        return encoder.embed(images)  # raises the encoder's own ConfigError
    with torch.enable_grad():
        return encoder._embed(encoder.preprocess(images))


# ----------------------------------------------------------------------------- state dicts


def lora_state_dict(
    encoder: FrozenEncoder, *, extra_prefixes: Iterable[str] = ()
) -> dict[str, Tensor]:
    """The LoRA tensors (detached CPU copies), plus every tensor under ``extra_prefixes``.

    Names are those of the official ``Sam`` module (``image_encoder.blocks.0.attn.qkv.lora_A.q``,
    ``prompt_encoder.point_embeddings.0.weight``...).

    Raises:
        ConfigError: No (unmerged) LoRA, or a prefix that names no tensor.
    """
    _active_state(encoder, "take the LoRA state dict")
    sam = _sam(encoder)
    prefixes = _check_prefixes(sam, extra_prefixes)
    return {
        name: tensor.detach().to("cpu", copy=True)
        for name, tensor in sam.state_dict().items()
        if _is_lora_key(name) or (prefixes and name.startswith(prefixes))
    }


def merge_lora(encoder: FrozenEncoder) -> int:
    """Fold LoRA into the base weights and remove the LoRA layers, in place.

    Image encoder: ``W[rows_p] += scale * B_p @ A_p``, the layer becomes a plain Linear again;
    mask decoder: peft's own ``merge()`` and unwrapping (what ``merge_and_unload`` does). The
    model then runs at the base model's speed and has the official state-dict keys; every
    parameter is frozen. Returns the number of layers merged.

    Raises:
        ConfigError: No (unmerged) LoRA.
    """
    state = _active_state(encoder, "merge LoRA")
    sam = _sam(encoder)
    merged = 0
    for _, layer, parent, attr in list(_lora_modules(sam)):
        if isinstance(layer, LoraQKV):
            plain = layer.merged()
        else:
            layer.merge()  # type: ignore[operator]
            plain = layer.get_base_layer()  # type: ignore[operator]
        setattr(parent, attr, plain)
        merged += 1
    if hasattr(sam.mask_decoder, "peft_config"):
        del sam.mask_decoder.peft_config
    state.merged = True
    encoder.freeze()
    return merged


# ----------------------------------------------------------------------------- adapter files


def _fingerprint(encoder: FrozenEncoder, base_checkpoint: str | Path | None) -> str | None:
    return encoder_fingerprint(encoder, base_checkpoint)


def _created_by() -> str:
    from rs_sam.version import __version__

    return f"rs-sam {__version__}"


def save_adapter(
    path: str | Path,
    encoder: FrozenEncoder,
    settings: LoraSettings | None = None,
    *,
    base_checkpoint: str | Path | None = None,
    extra_prefixes: Iterable[str] = (),
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Write the encoder's LoRA (and ``extra_prefixes`` tensors) to a small adapter file.

    Args:
        path: Output file (``.pt``); its folder must exist. Replaced atomically.
        encoder: An encoder carrying (unmerged) LoRA.
        settings: The settings it was injected with (default: those; a different value is an
            error).
        base_checkpoint: The checkpoint file the encoder was loaded from when it is not the
            official one (its sha256 is recorded); ignored for random weights.
        extra_prefixes: Non-LoRA parts trained in full and saved too (``"prompt_encoder."``).
        metadata: JSON-compatible values recorded as they are (epochs, data set, scores...).

    Returns:
        ``path``.

    Raises:
        ConfigError: No LoRA, other settings, bad prefixes or metadata.
        OutputPathError: The folder does not exist or cannot be written.
    """
    state = _active_state(encoder, "save an adapter")
    if settings is None:
        settings = state.settings
    elif settings != state.settings:
        raise ConfigError(
            f"settings {settings} differ from those the encoder's LoRA was injected with "
            f"({state.settings}); pass those, or leave settings out"
        )
    try:
        user = json.loads(json.dumps(dict(metadata or {}), allow_nan=False))
    except (TypeError, ValueError) as err:
        raise ConfigError(
            f"adapter metadata must hold only JSON values (str, numbers, lists, dicts): {err}"
        ) from err
    prefixes = _check_prefixes(_sam(encoder), extra_prefixes)
    record = {
        "format": ADAPTER_FORMAT,
        "kind": "rs-sam LoRA adapter",
        "base_encoder": encoder.spec.name,
        "base_weights": "random" if encoder.random_weights else "official",
        "base_sha256": _fingerprint(encoder, base_checkpoint),
        "tiny": _is_tiny(encoder),
        "settings": settings.to_dict(),
        "extra_prefixes": list(prefixes),
        "created_by": _created_by(),
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "metadata": user,
    }
    content = {ADAPTER_KEY: record, "state_dict": lora_state_dict(encoder, extra_prefixes=prefixes)}
    path = Path(path)
    if not path.parent.is_dir():
        raise OutputPathError(f"folder {path.parent} does not exist; create it first")
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise OutputPathError(f"cannot write into {path.parent} ({err.strerror})") from err
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(content, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


_REQUIRED = ("format", "base_encoder", "base_weights", "base_sha256", "tiny", "settings")


def _load_content(path: Path) -> tuple[dict[str, Any], dict[str, Tensor]]:
    if not path.is_file():
        raise CheckpointNotFoundError(f"LoRA adapter {path} does not exist; check the path")
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except TORCH_LOAD_ERRORS as err:
        text = str(err).strip()
        first = text.splitlines()[0][:200] if text else type(err).__name__
        raise CheckpointError(
            f"{path} cannot be loaded safely as a LoRA adapter ({first}); "
            "pass a file written by save_adapter"
        ) from err
    record = content.get(ADAPTER_KEY) if isinstance(content, dict) else None
    if not isinstance(record, dict):
        raise CheckpointError(
            f"{path} is not an rs-sam LoRA adapter (no '{ADAPTER_KEY}' record); "
            "pass a file written by save_adapter"
        )
    missing = [key for key in _REQUIRED if key not in record]
    tensors = content.get("state_dict")
    if missing or not isinstance(tensors, dict):
        raise CheckpointError(
            f"{path} is an incomplete LoRA adapter (missing {', '.join(missing) or 'state_dict'}); "
            "save it again with save_adapter"
        )
    version = record["format"]
    if not isinstance(version, int) or version > ADAPTER_FORMAT:
        raise CheckpointError(
            f"{path} has adapter format {version!r}, newer than this rs-sam reads "
            f"({ADAPTER_FORMAT}); upgrade rs-sam"
        )
    bad = [str(k) for k, v in tensors.items() if not isinstance(k, str) or not torch.is_tensor(v)]
    if bad:
        raise CheckpointError(f"{path} holds non-tensor entries ({_listed(bad)}); save it again")
    return record, tensors


def read_adapter_metadata(path: str | Path) -> dict[str, Any]:
    """The record of an adapter file (base encoder, sha256, tiny, settings...), without loading.

    Use it to build the matching encoder before :func:`load_adapter`.

    Raises:
        CheckpointNotFoundError, CheckpointError: Missing, damaged or non-adapter file.
    """
    record, _ = _load_content(Path(path))
    return dict(record)


def _short(sha: str | None) -> str:
    return "random weights" if sha is None else f"sha256 {sha[:_HASH_SHOWN]}…"


def _check_base(
    path: Path, record: Mapping[str, Any], encoder: FrozenEncoder, sha: str | None
) -> None:
    trained_on = record["base_encoder"]
    trained_sha = record["base_sha256"]
    trained_random = record["base_weights"] == "random"
    name = encoder.spec.name
    if trained_on != name:
        raise CheckpointError(
            f"adapter {path.name} was trained on '{trained_on}' ({_short(trained_sha)}) but the "
            f"encoder is '{name}'; load it with --encoder {trained_on}"
        )
    if bool(record["tiny"]) != _is_tiny(encoder):
        built = "the tiny test build" if record["tiny"] else "the full model"
        raise CheckpointError(
            f"adapter {path.name} was trained on {built} of '{name}' but the encoder is "
            f"{'the tiny test build' if _is_tiny(encoder) else 'the full model'}; "
            f"build the encoder the adapter was trained on"
        )
    if trained_random != encoder.random_weights:
        raise CheckpointError(
            f"adapter {path.name} was trained on '{name}' with "
            f"{'random' if trained_random else 'official'} weights but the encoder has "
            f"{'random' if encoder.random_weights else 'official'} weights; load the encoder "
            f"with {'weights=random' if trained_random else 'its official weights'}"
        )
    if not trained_random and trained_sha != sha:
        raise CheckpointError(
            f"adapter {path.name} was trained on '{name}' ({_short(trained_sha)}) but the "
            f"encoder's checkpoint has {_short(sha)}; load the encoder with the checkpoint "
            "the adapter was trained on (--checkpoint)"
        )


def load_adapter(
    path: str | Path,
    encoder: FrozenEncoder,
    *,
    base_checkpoint: str | Path | None = None,
) -> LoraSettings:
    """Inject LoRA with an adapter file's settings and load its tensors strictly, in place.

    The file is read with ``torch.load(weights_only=True)``. The encoder may already carry a LoRA
    with the same settings (its weights are then replaced). On any refusal after injection the
    injected LoRA is removed again, so the encoder is left as it was.

    Args:
        path: A file written by :func:`save_adapter`.
        encoder: The base encoder the adapter was trained on.
        base_checkpoint: The checkpoint file the encoder was loaded from, when not the official
            one (compared by sha256 with the adapter's record).

    Returns:
        The adapter's :class:`LoraSettings`.

    Raises:
        CheckpointNotFoundError: No such file.
        CheckpointError: Damaged or foreign file, another base encoder/checkpoint, or tensors
            that do not match the injected LoRA.
        ConfigError: The encoder already carries a different or merged LoRA.
    """
    path = Path(path)
    sam = _sam(encoder)
    record, tensors = _load_content(path)
    try:
        settings = LoraSettings.from_dict(record["settings"])
    except (ConfigError, TypeError) as err:
        raise CheckpointError(f"{path} has invalid LoRA settings ({err}); save it again") from err
    _check_base(path, record, encoder, _fingerprint(encoder, base_checkpoint))
    state = _state(encoder)
    injected = state is None
    if injected:
        apply_lora(encoder, settings)
    elif state is not None and (state.merged or state.settings != settings):
        raise ConfigError(
            f"encoder '{encoder.spec.name}' already carries "
            f"{'a merged' if state.merged else 'another'} LoRA ({state.settings}); "
            f"build a fresh encoder with load_encoder to load {path.name}"
        )
    try:
        _load_tensors(path, sam, tensors, record.get("extra_prefixes") or [])
    except BaseException:
        if injected:
            _unload(encoder)
        raise
    return settings


def _load_tensors(
    path: Path, sam: nn.Module, tensors: Mapping[str, Tensor], prefixes: list[str]
) -> None:
    own = sam.state_dict()
    prefix_tuple = tuple(p for p in prefixes if isinstance(p, str))
    expected = {n for n in own if _is_lora_key(n) or (prefix_tuple and n.startswith(prefix_tuple))}
    missing = expected - set(tensors)
    unexpected = set(tensors) - expected
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing ({_listed(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected ({_listed(unexpected)})")
        raise CheckpointError(
            f"adapter {path.name} does not match the LoRA layers it describes: "
            f"{'; '.join(parts)} tensors; save it again with this rs-sam"
        )
    wrong = [n for n, t in tensors.items() if tuple(t.shape) != tuple(own[n].shape)]
    if wrong:
        name = sorted(wrong)[0]
        raise CheckpointError(
            f"adapter {path.name} has tensors of the wrong shape ({len(wrong)}, e.g. {name}: "
            f"{tuple(tensors[name].shape)} vs {tuple(own[name].shape)}); it belongs to "
            "another model"
        )
    result = sam.load_state_dict(dict(tensors), strict=False)
    if result.unexpected_keys:  # pragma: no cover - excluded by the key check above
        raise CheckpointError(f"adapter {path.name} has unexpected tensors")


def _unload(encoder: FrozenEncoder) -> None:
    """Remove LoRA layers without merging (restores the base model)."""
    sam = _sam(encoder)
    for _, layer, parent, attr in list(_lora_modules(sam)):
        if isinstance(layer, LoraQKV):
            plain = nn.Linear(
                layer.in_features, layer.out_features, bias=layer.bias is not None, device="meta"
            )
            plain.weight = layer.weight
            if layer.bias is not None:
                plain.bias = layer.bias
        else:
            plain = layer.get_base_layer()  # type: ignore[operator]
        setattr(parent, attr, plain)
    if hasattr(sam.mask_decoder, "peft_config"):
        del sam.mask_decoder.peft_config
    encoder.__dict__.pop(_STATE_ATTR, None)
    encoder.freeze()


__all__ = [
    "ADAPTER_FORMAT",
    "ADAPTER_KEY",
    "LoraInfo",
    "LoraQKV",
    "LoraSettings",
    "apply_lora",
    "count_lora_parameters",
    "decoder_part_prefixes",
    "decoder_parts",
    "embed_trainable",
    "encode_trainable",
    "load_adapter",
    "lora_settings",
    "lora_state_dict",
    "merge_lora",
    "read_adapter_metadata",
    "save_adapter",
    "set_lora_train_mode",
    "set_trainable",
]


def adapt_encoder(
    encoder: FrozenEncoder,
    adapter: str | Path | None,
    *,
    base_checkpoint: str | Path | None = None,
    merge: bool = False,
) -> FrozenEncoder:
    """``encoder`` with a LoRA adapter loaded (and merged into its weights when ``merge``).

    The inference entry of ``--lora`` (``segment``, ``detect-change``): without an adapter
    the encoder is returned as it is. Merging gives the same outputs at the base model's
    speed; unmerged, the low-rank updates run beside the base weights.
    """
    if adapter is None:
        return encoder
    load_adapter(adapter, encoder, base_checkpoint=base_checkpoint)
    if merge:
        merge_lora(encoder)
    return encoder
