"""Putting LoRA into an encoder and training it: injection, trainable parts, counts, dropout.

Image encoder: every fused ``qkv`` becomes a :class:`~rs_sam.models.lora.qkv.LoraQKV`. Mask
decoder (``decoder=True``): peft's :func:`peft.inject_adapter_in_model` on ``q_proj``/``v_proj``
(peft imports transformers, seconds, so it is imported only then).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

from rs_sam.errors import ConfigError
from rs_sam.models.encoders.base import EncoderOutput, FrozenEncoder
from rs_sam.models.lora.layers import (
    SAM_PARTS,
    STATE_ATTR,
    LoraState,
    active_lora_state,
    check_prefixes,
    is_lora_key,
    lora_layers,
    lora_state,
    sam_module,
)
from rs_sam.models.lora.qkv import LoraQKV, qkv_rows
from rs_sam.models.lora.settings import LoraInfo, LoraSettings

#: The mask decoder's attention Linears that get LoRA (SamLP's decoder variant).
DECODER_TARGETS = ("q_proj", "v_proj")


def apply_lora(encoder: FrozenEncoder, settings: LoraSettings | None = None) -> LoraInfo:
    """Inject LoRA into a SAM-family encoder, in place; only LoRA parameters train afterwards.

    Every fused ``qkv`` of the image encoder becomes a :class:`LoraQKV` with updates on
    ``settings.targets``; with ``settings.decoder`` the mask decoder's ``q_proj``/``v_proj`` get
    peft LoRA. ``B`` starts at zero, so outputs are unchanged. The encoder stays in eval mode.

    Args:
        encoder: A ``sam_vit_*``, ``mobile_sam`` or ``sam2_hiera_*`` encoder without LoRA.
        settings: Rank, alpha, dropout, targets; default :class:`LoraSettings` (SamLP).

    Returns:
        Parameter counts (see :func:`count_lora_parameters`).

    Raises:
        ConfigError: Not a SAM-family encoder, or it already carries (or merged) a LoRA.
    """
    settings = LoraSettings() if settings is None else settings
    if not isinstance(settings, LoraSettings):
        raise ConfigError(f"settings must be a LoraSettings; got {type(settings).__name__}")
    sam = sam_module(encoder)
    state = lora_state(encoder)
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
        rows = qkv_rows(attn, qkv)
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
            "LoRA supports SAM ViT, MobileSAM and SAM 2.1 (Hiera)"
        )
    if settings.decoder:
        _inject_decoder(sam.mask_decoder, settings)
    encoder.__dict__[STATE_ATTR] = LoraState(settings)
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
    active_lora_state(encoder, "choose trainable parameters")
    sam = sam_module(encoder)
    prefixes = check_prefixes(sam, extra_prefixes)
    for param in encoder.parameters():
        param.requires_grad_(False)
    for name, param in sam.named_parameters():
        if is_lora_key(name):
            train = image_encoder if name.startswith("image_encoder.") else mask_decoder
        else:
            train = name.startswith(prefixes)
        param.requires_grad_(train)
    return count_lora_parameters(encoder)



def decoder_parts(encoder: FrozenEncoder) -> tuple[str, ...]:
    """Names of the mask decoder's parts that hold parameters, in the decoder's order.

    For SAM and MobileSAM: ``transformer``, ``iou_token``, ``mask_tokens``,
    ``output_upscaling``, ``output_hypernetworks_mlps``, ``iou_prediction_head``. These are what
    :func:`decoder_part_prefixes` accepts.
    """
    decoder = sam_module(encoder).mask_decoder
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
    return tuple(f"{SAM_PARTS[2]}{name}." for name in names)


def _numel(params: Iterable[nn.Parameter]) -> int:
    return sum(p.numel() for p in params)


def count_lora_parameters(encoder: FrozenEncoder) -> LoraInfo:
    """LoRA, trainable and total parameter counts of ``encoder`` (zeros when it has no LoRA)."""
    sam = sam_module(encoder)
    lora = [(n, p) for n, p in sam.named_parameters() if is_lora_key(n)]
    image = _numel(p for n, p in lora if n.startswith(SAM_PARTS[0]))
    decoder = _numel(p for n, p in lora if n.startswith(SAM_PARTS[2]))
    layers = [name for name, *_ in lora_layers(sam)]
    return LoraInfo(
        image_encoder=image,
        mask_decoder=decoder,
        trainable=_numel(p for p in encoder.parameters() if p.requires_grad),
        total=_numel(encoder.parameters()),
        image_layers=sum(n.startswith(SAM_PARTS[0]) for n in layers),
        decoder_layers=sum(n.startswith(SAM_PARTS[2]) for n in layers),
    )


def lora_settings(encoder: FrozenEncoder) -> LoraSettings | None:
    """The settings of the LoRA the encoder carries (also after merging), or None."""
    state = lora_state(encoder)
    return state.settings if state is not None else None


def set_lora_train_mode(encoder: FrozenEncoder, mode: bool = True) -> int:
    """Switch the dropout of the LoRA layers on (``True``) or off; the base model stays in eval.

    :class:`FrozenEncoder` puts every submodule in eval mode on each ``.train()``/``.eval()``
    call, so call this again after those. Returns the number of dropout modules switched (0 when
    ``dropout=0``: nothing to do).
    """
    active_lora_state(encoder, "switch LoRA dropout")
    switched = 0
    for _, layer, _, _ in lora_layers(sam_module(encoder)):
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

