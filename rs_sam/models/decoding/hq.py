"""HQ-SAM decoding: SAM's mask logits plus (or replaced by) the HQ output token's.

HQ-SAM (Ke et al., 2023) keeps SAM frozen and adds an HQ output token to the mask decoder.
Its mask is predicted from SAM's upscaled decoder features fused with the image embedding and
early-layer encoder features (:class:`~rs_sam.models.encoders.base.HqEmbedding`). As in the
paper and the official ``MaskDecoderHQ.forward``:

* ``hq="add"`` (``hq_token_only=False``): the HQ token's low-resolution logits are ADDED to
  SAM's mask logits at the decoder's resolution (``4E x 4E``, 256x256 for a 1024 input),
  before any upsampling;
* ``hq="only"`` (``hq_token_only=True``): the HQ token's logits alone.

The SAM mask involved is the one the official forward picks: the single-mask output, or with
``multimask_output`` the ambiguity mask with the highest predicted IoU (HQ decoding always
yields one mask per prompt). The predicted IoU is that SAM mask's.

The fused HQ features (:func:`hq_features`) are computed once per image, not per call as
in the official forward; pass them to every :func:`decode_hq` call on the same image. On CPU
the decoding is :func:`~rs_sam.models.fast_decoder.decode_hq_tokens`, the fast decoder's
exact reorganisation of SAM's transformer and upscaling with the HQ token as one more output
token. Elsewhere (GPU, or modules it does not support) it is the official
``MaskDecoderHQ.predict_masks`` in chunks of prompts (the official code materialises per
prompt a copy of the embedding and two ``(C/8, 4E, 4E)`` maps, about 45 MiB per prompt for a
1024 input), followed by the selection above (:func:`select_hq`), the official forward's last
ten lines, written here to also return which SAM mask was used.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
from torch import Tensor, nn

from rs_sam.models.fast_decoder import decode_hq_tokens, is_hq_supported

__all__ = [
    "DEFAULT_HQ_CHUNK",
    "HqLogits",
    "decode_hq",
    "hq_features",
    "is_hq_decoder",
    "select_hq",
]

#: Prompts decoded together by ``decode_hq`` (memory for a 64x64 embedding of 256 channels:
#: about 45 MiB each with the official decoder, 4 MiB with the fast one).
DEFAULT_HQ_CHUNK = 16


class HqLogits(NamedTuple):
    """HQ decoding of ``N`` prompts.

    Attributes:
        logits: ``(N, 1, 4E, 4E)`` low-resolution mask logits.
        iou: ``(N, 1)`` SAM's predicted IoU of the SAM mask used.
        index: ``(N,)`` int64: which SAM output that mask is (0 for the single mask, 0..2
            for the ambiguity masks with ``multimask_output``).
    """

    logits: Tensor
    iou: Tensor
    index: Tensor


def is_hq_decoder(module: object) -> bool:
    """Whether ``module`` is ``segment_anything_hq``'s ``MaskDecoderHQ`` (duck-typed)."""
    return isinstance(module, nn.Module) and all(
        hasattr(module, name)
        for name in ("hf_token", "hf_mlp", "compress_vit_feat", "embedding_encoder")
    )


def hq_features(hq_decoder: nn.Module, embedding: Tensor, interm: Tensor) -> Tensor:
    """The fused HQ features ``(B, C/8, 4E, 4E)`` of the official ``MaskDecoderHQ.forward``.

    Args:
        hq_decoder: ``MaskDecoderHQ``.
        embedding: ``(B, C, E, E)`` SAM image embedding.
        interm: ``(B, D, E, E)`` early-layer features (channels first).
    """
    return hq_decoder.embedding_encoder(embedding) + hq_decoder.compress_vit_feat(interm)


def select_hq(
    masks: Tensor, iou: Tensor, *, hq_slot: int, multimask_output: bool, hq: str
) -> tuple[HqLogits, Tensor]:
    """The official forward's choice among ``MaskDecoderHQ.predict_masks``'s outputs.

    Args:
        masks: ``(b, 5, 4E, 4E)``: SAM's single mask, its 3 ambiguity masks, the HQ mask.
        iou: ``(b, 4)`` SAM's predicted IoU of its masks.
        hq_slot: Index of the HQ mask in ``masks``.

    Returns:
        The HQ decoding and SAM's own logits ``(b, 1, 4E, 4E)`` of the SAM mask used.
    """
    rows = torch.arange(masks.shape[0], device=masks.device)
    if multimask_output:
        best_iou, best = iou[:, 1:hq_slot].max(dim=1)
        sam_masks = masks[rows, best + 1]
    else:
        best_iou, best = iou[:, 0], torch.zeros_like(rows)
        sam_masks = masks[:, 0]
    hq_masks = masks[:, hq_slot]
    logits = hq_masks if hq == "only" else sam_masks + hq_masks
    return HqLogits(logits[:, None], best_iou[:, None], best), sam_masks[:, None]


@torch.inference_mode()
def decode_hq(
    prompt_encoder: nn.Module,
    hq_decoder: nn.Module,
    embedding: Tensor,
    interm: Tensor,
    *,
    points: Tensor | None = None,
    labels: Tensor | None = None,
    boxes: Tensor | None = None,
    multimask_output: bool = False,
    hq: Literal["add", "only"] = "add",
    chunk: int = DEFAULT_HQ_CHUNK,
    features: Tensor | None = None,
) -> HqLogits:
    """HQ-SAM's mask logits of many prompts against one image.

    Equal to the official::

        sparse, dense = prompt_encoder(points=(points, labels), boxes=boxes, masks=None)
        hq_decoder(image_embeddings=embedding, image_pe=prompt_encoder.get_dense_pe(),
                   sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                   multimask_output=multimask_output, hq_token_only=hq == "only",
                   interm_embeddings=[interm.permute(0, 2, 3, 1)])

    Args:
        prompt_encoder: SAM's ``PromptEncoder``.
        hq_decoder: ``segment_anything_hq``'s ``MaskDecoderHQ`` (eval mode).
        embedding: ``(1, C, E, E)`` SAM image embedding.
        interm: ``(1, D, E, E)`` early-layer features (``encoder.embed_hq(...).interm``).
        points: ``(N, P, 2)`` x/y coordinates in model-input pixels (already shifted by
            -0.5 as for SAM's prompt encoder), or None.
        labels: ``(N, P)`` point labels (1 foreground, 0 background); all 1 when omitted.
        boxes: ``(N, 4)`` x0, y0, x1, y1 boxes in model-input pixels, or None.
        multimask_output: use the best of SAM's three ambiguity masks (one point) instead of
            its single mask.
        hq: ``"add"``: SAM's logits + the HQ token's; ``"only"``: the HQ token's alone.
        chunk: prompts decoded together, >= 1.
        features: ``hq_features(hq_decoder, embedding, interm)``, computed here when None;
            pass it to decode several batches of prompts against one image.

    Returns:
        :class:`HqLogits` with ``N`` rows.

    Raises:
        ValueError: No prompts of either kind, mismatched shapes, a batch of several
            embeddings, a decoder that is not ``MaskDecoderHQ``, or bad ``hq``/``chunk``.
    """
    if not is_hq_decoder(hq_decoder):
        raise ValueError(f"{type(hq_decoder).__name__} is not HQ-SAM's MaskDecoderHQ")
    if hq not in ("add", "only"):
        raise ValueError(f"hq={hq!r} is not 'add' or 'only'")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    if embedding.ndim != 4 or embedding.shape[0] != 1:
        raise ValueError(f"embedding must be (1, C, E, E), got {tuple(embedding.shape)}")
    if interm.ndim != 4 or interm.shape[0] != 1 or interm.shape[-2:] != embedding.shape[-2:]:
        raise ValueError(
            f"interm must be (1, D, {embedding.shape[-2]}, {embedding.shape[-1]}), "
            f"got {tuple(interm.shape)}"
        )
    if points is None and boxes is None:
        raise ValueError("decode_hq needs points or boxes")
    if points is not None:
        if points.ndim != 3 or points.shape[-1] != 2:
            raise ValueError(f"points must be (N, P, 2), got {tuple(points.shape)}")
        if labels is None:
            labels = torch.ones(points.shape[:2], dtype=torch.int64, device=points.device)
        if labels.shape != points.shape[:2]:
            raise ValueError(f"labels must be {tuple(points.shape[:2])}, got {tuple(labels.shape)}")
    n = int(points.shape[0] if points is not None else boxes.shape[0])  # type: ignore[union-attr]
    if boxes is not None and boxes.shape != (n, 4):
        raise ValueError(f"boxes must be ({n}, 4), got {tuple(boxes.shape)}")
    height, width = (4 * side for side in embedding.shape[-2:])
    if n == 0:  # the official decoder fails on an empty batch
        return HqLogits(
            logits=embedding.new_empty((0, 1, height, width)),
            iou=embedding.new_empty((0, 1)),
            index=torch.empty(0, dtype=torch.int64, device=embedding.device),
        )
    sparse, dense = prompt_encoder(
        points=None if points is None else (points, labels), boxes=boxes, masks=None
    )
    image_pe = prompt_encoder.get_dense_pe()
    fused = hq_features(hq_decoder, embedding, interm) if features is None else features
    shared_dense = dense.shape[0] == 1 or dense.stride(0) == 0  # no mask input: no_mask_embed
    if embedding.device.type == "cpu" and shared_dense and is_hq_supported(hq_decoder):
        return HqLogits(
            *decode_hq_tokens(
                hq_decoder,
                embedding,
                image_pe,
                sparse,
                dense[:1],
                fused,
                multimask_output=multimask_output,
                hq_token_only=hq == "only",
                chunk=chunk,
            )
        )
    hq_slot = hq_decoder.num_mask_tokens - 1  # SAM's 1 + 3 mask tokens, then the HQ token
    parts = []
    for start in range(0, n, chunk):
        masks, iou = hq_decoder.predict_masks(
            image_embeddings=embedding,
            image_pe=image_pe,
            sparse_prompt_embeddings=sparse[start : start + chunk],
            dense_prompt_embeddings=dense[start : start + chunk],
            hq_features=fused,
        )
        parts.append(
            select_hq(masks, iou, hq_slot=hq_slot, multimask_output=multimask_output, hq=hq)[0]
        )
    return HqLogits(*(torch.cat(column) for column in zip(*parts, strict=True)))
