"""Which encoders carry LoRA, and where its layers and tensors sit in the SAM model.

An encoder carrying LoRA holds a :class:`LoraState` (its settings, whether merged) in its
``__dict__``. LoRA tensors are those with a ``lora_*`` component in their name; LoRA layers are
:class:`~rs_sam.models.lora.qkv.LoraQKV` (image encoder) and peft's ``LoraLayer`` (mask decoder).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from torch import nn

from rs_sam.errors import ConfigError
from rs_sam.models.encoders.base import FrozenEncoder
from rs_sam.models.lora.qkv import LoraQKV
from rs_sam.models.lora.settings import LoraSettings

#: Top-level parts of the official ``Sam`` module, as state-dict prefixes.
SAM_PARTS = ("image_encoder.", "prompt_encoder.", "mask_decoder.")
#: Attribute of the encoder's ``__dict__`` that holds its :class:`LoraState`.
STATE_ATTR = "_rs_sam_lora"


@dataclass
class LoraState:
    """The LoRA an encoder carries: the settings it was injected with, and whether merged."""

    settings: LoraSettings
    merged: bool = False


def lora_state(encoder: FrozenEncoder) -> LoraState | None:
    """The encoder's :class:`LoraState`, or None when it never carried LoRA."""
    state = encoder.__dict__.get(STATE_ATTR)
    return state if isinstance(state, LoraState) else None


def sam_module(encoder: FrozenEncoder) -> Any:
    """The official ``Sam`` module inside a SAM-family encoder.

    Raises:
        ConfigError: ``encoder`` is not a SAM-family encoder.
    """
    sam = getattr(encoder, "sam", None)
    if not isinstance(encoder, FrozenEncoder) or not isinstance(sam, nn.Module):
        name = encoder.spec.name if isinstance(encoder, FrozenEncoder) else type(encoder).__name__
        raise ConfigError(
            f"LoRA needs a SAM-family encoder with a SAM image encoder; '{name}' has none: "
            "use e.g. 'mobile_sam' or 'sam_vit_b'"
        )
    return sam


def active_lora_state(encoder: FrozenEncoder, action: str) -> LoraState:
    """The encoder's unmerged :class:`LoraState`.

    Raises:
        ConfigError: No LoRA, or a merged one (the message says that ``action`` needs one).
    """
    state = lora_state(encoder)
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


def is_tiny_build(encoder: FrozenEncoder) -> bool:
    """Whether the encoder is the tiny test build (another input size than its spec's)."""
    return encoder.input_size != encoder.spec.input_size


def _is_peft_lora(module: nn.Module) -> bool:
    if "peft" not in sys.modules:  # never import peft (and transformers) just to look
        return False
    from peft.tuners.lora import LoraLayer

    return isinstance(module, LoraLayer)


def is_lora_key(name: str) -> bool:
    """Whether a state-dict key names a LoRA tensor (a ``lora_*`` component)."""
    return any(part.startswith("lora_") for part in name.split("."))


def lora_layers(root: nn.Module) -> Iterator[tuple[str, nn.Module, nn.Module, str]]:
    """(qualified name, module, parent, attribute) of every LoRA layer under ``root``."""
    for parent_name, parent in list(root.named_modules()):
        if isinstance(parent, LoraQKV) or _is_peft_lora(parent):
            continue  # nothing to find inside a LoRA layer
        for child_name, child in parent.named_children():
            if isinstance(child, LoraQKV) or _is_peft_lora(child):
                name = f"{parent_name}.{child_name}" if parent_name else child_name
                yield name, child, parent, child_name


def check_prefixes(sam: nn.Module, prefixes: Iterable[str]) -> tuple[str, ...]:
    """``prefixes`` as a tuple (one string counts as one prefix), each naming a ``sam`` tensor.

    Raises:
        ConfigError: A prefix that is empty, not a string, or names no tensor.
    """
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
                f"{', '.join(repr(p) for p in SAM_PARTS)}"
            )
    return checked

