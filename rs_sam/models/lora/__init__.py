"""LoRA for SamLP-style fine-tuning of SAM-family encoders (library level: no training loop).

SamLP (Ding et al. 2024) adds low-rank updates to the **q and v** projections of the image
encoder's attention (rank 2 by default) and, in a variant, to the mask decoder's attention; the
base weights stay frozen. This package injects, counts, saves, loads and merges such adapters on a
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

Modules
-------
``settings`` (:class:`LoraSettings`, :class:`LoraInfo`), ``qkv`` (:class:`LoraQKV`, the image
encoder's layer), ``layers`` (which encoders carry LoRA, where its layers sit), ``inject``
(injection, training helpers, counts), ``merge`` (state dict, merging, removal),
``adapter_file`` (the adapter file format) and ``adapt`` (:func:`adapt_encoder`, the inference
entry of ``--lora``).
"""

from __future__ import annotations

from rs_sam.models.lora.adapt import adapt_encoder
from rs_sam.models.lora.adapter_file import (
    ADAPTER_FORMAT,
    ADAPTER_KEY,
    load_adapter,
    read_adapter_metadata,
    save_adapter,
)
from rs_sam.models.lora.inject import (
    apply_lora,
    count_lora_parameters,
    decoder_part_prefixes,
    decoder_parts,
    embed_trainable,
    encode_trainable,
    lora_settings,
    set_lora_train_mode,
    set_trainable,
)
from rs_sam.models.lora.merge import lora_state_dict, merge_lora
from rs_sam.models.lora.qkv import LoraQKV
from rs_sam.models.lora.settings import LoraInfo, LoraSettings

__all__ = [
    "ADAPTER_FORMAT",
    "ADAPTER_KEY",
    "LoraInfo",
    "LoraQKV",
    "LoraSettings",
    "adapt_encoder",
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
