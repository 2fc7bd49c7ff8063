"""Taking LoRA out of an encoder: its state dict, merging into the base weights, removal."""

from __future__ import annotations

from collections.abc import Iterable

from torch import Tensor, nn

from rs_sam.models.encoders.base import FrozenEncoder
from rs_sam.models.lora.layers import (
    STATE_ATTR,
    active_lora_state,
    check_prefixes,
    is_lora_key,
    lora_layers,
    sam_module,
)
from rs_sam.models.lora.qkv import LoraQKV


def lora_state_dict(
    encoder: FrozenEncoder, *, extra_prefixes: Iterable[str] = ()
) -> dict[str, Tensor]:
    """The LoRA tensors (detached CPU copies), plus every tensor under ``extra_prefixes``.

    Names are those of the official ``Sam`` module (``image_encoder.blocks.0.attn.qkv.lora_A.q``,
    ``prompt_encoder.point_embeddings.0.weight``...).

    Raises:
        ConfigError: No (unmerged) LoRA, or a prefix that names no tensor.
    """
    active_lora_state(encoder, "take the LoRA state dict")
    sam = sam_module(encoder)
    prefixes = check_prefixes(sam, extra_prefixes)
    return {
        name: tensor.detach().to("cpu", copy=True)
        for name, tensor in sam.state_dict().items()
        if is_lora_key(name) or (prefixes and name.startswith(prefixes))
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
    state = active_lora_state(encoder, "merge LoRA")
    sam = sam_module(encoder)
    merged = 0
    for _, layer, parent, attr in list(lora_layers(sam)):
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


def unload_lora(encoder: FrozenEncoder) -> None:
    """Remove the LoRA layers without merging, in place: the base model again, all frozen."""
    sam = sam_module(encoder)
    for _, layer, parent, attr in list(lora_layers(sam)):
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
    encoder.__dict__.pop(STATE_ATTR, None)
    encoder.freeze()

