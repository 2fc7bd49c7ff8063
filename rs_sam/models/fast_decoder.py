"""Fast decoding of many point prompts against one image embedding.

``decode_points`` returns what the official ``segment_anything`` prompt encoder and mask
decoder return for a batch of point prompts, but reorganises the computation so that the
per-prompt cost over the 4096 image tokens is a few large matrix products instead of the
official projections, head transposes and repeated copies of the image embedding. The
results equal the official forward up to float rounding; every rewrite below is an exact
algebraic identity:

* Without a mask prompt the dense prompt embedding is ``no_mask_embed`` for every prompt,
  so the image side entering the first transformer block is one tensor shared by all
  prompts. Its projections (keys and values of the token-to-image attention, queries of
  the image-to-token attention) are computed once per call, never per prompt, and the
  embedding is never ``repeat_interleave``-d.
* Attention of the few tokens (iou + mask + point tokens, T = 5 + P + 1) against the image
  tokens is folded onto the token side. With ``k = x W_k^T + b_k`` the scores of a query
  ``q`` are ``x . (W_k^T q) + q . b_k``; the second term is constant along the softmax
  axis and drops out. Values pass through the softmax: ``attn @ (x W_v^T + b_v) =
  (attn @ x) W_v^T + b_v`` because attention rows sum to one.
* In the image-to-token attention the image-side query projection is folded into the token
  keys, ``(x W_q^T + b_q) . k = x . (W_q^T k) + b_q . k``, so the scores of all heads come
  from one product over the channels, laid out as (prompt, pixel, head, token). In the
  first block the image queries are shared and projected once; a product with the
  block-diagonal (over heads) token keys of all prompts gives (pixel, prompt, head, token).
  The value and output projections are folded into per-token rows ``U = v_h W_o,h^T +
  b_o / h`` (the bias is split over the heads, each of whose attention rows sums to one),
  so the (prompt, pixel, channel) update is a single ``baddbmm`` that also adds the
  residual. The token axis is padded to a multiple of 8 with slots whose score is ``-inf``
  (weight exactly 0, value row 0), and scores are laid out (prompt, head, slot, pixel): the
  softmax over the few slots then runs along a long contiguous pixel axis, an order of
  magnitude faster on CPU than over rows of 8.
* The following LayerNorm needs no mean in the first block: the shared residual and the
  rows ``U`` are centred over channels beforehand, so their sum is centred by construction.
  LayerNorms over image tokens run in place (the CPU kernel is several times slower).
* Image tokens are processed in tiles of whole embedding rows. The token-to-image attention
  that follows each image-to-token update runs on the same tile while it is in cache, with
  an online softmax (running maximum and normaliser, flash-attention style), so the
  per-prompt image tokens are written once and read back once per block.
* The output upscaling (two stride-2, kernel-2 transposed convolutions) is a per-pixel
  linear map, computed as matrix products in channels-last layout, prompt by prompt and
  tile by tile so that the 16x larger upscaled tensors stay in cache. The weights of the
  first one are centred over its output channels per sub-pixel, which makes its output
  already centred for the following LayerNorm2d. One block copy puts the upscaled pixels
  in output order, and the hypernetwork product writes the masks in place.
* Prompts run in chunks through work buffers allocated once per call: on CPU, fresh large
  tensors cost more in page faults than the arithmetic that fills them.

HQ-SAM's ``MaskDecoderHQ`` (``decode_hq_tokens``) is the same decoder with one more output
token (the HQ token, through the same transformer) and one more mask: the HQ token's MLP
applied to ``embedding_maskfeature(upscaled) + hq_features``. Its first 3x3 convolution runs
as the official module (channels last), with the weights centred over output channels, so
that its output needs no mean for the LayerNorm2d that follows. The last convolution and the
HQ token's product are folded into one: ``h . conv(z) = conv(z, sum_o h_o W_o) + h . b``, a
single-output 3x3 convolution per prompt (nine per-pixel products summed with shifts).

Prompts are points only for ``decode_points`` (no boxes, no mask inputs). The fast path needs
the official classes of ``segment_anything`` (``MaskDecoder`` with a ``TwoWayTransformer``,
see ``is_supported``; ``segment_anything_hq``'s identical copies of the transformer and
LayerNorm2d classes are accepted too); anything else (a subclass, another transformer, a
batch of several embeddings) goes through the official forward unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from segment_anything.modeling import MaskDecoder, PromptEncoder, TwoWayTransformer
from segment_anything.modeling.common import LayerNorm2d
from segment_anything.modeling.transformer import Attention, TwoWayAttentionBlock
from torch import Tensor, nn

from rs_sam.models.low_precision import low_precision_copy

__all__ = ["decode_hq_tokens", "decode_points", "is_hq_supported", "is_supported"]

#: Prompts decoded together: the image tokens of a chunk stay in memory (4 MiB per prompt
#: for 256 channels on a 64x64 embedding). 4 to 16 perform alike on a 2-core CPU.
DEFAULT_CHUNK = 8
#: Image tokens per tile of the per-pixel steps (rounded down to whole embedding rows).
DEFAULT_TILE_PIXELS = 512

_aten = torch.ops.aten


def is_supported(prompt_encoder: nn.Module, mask_decoder: nn.Module) -> bool:
    """Whether ``decode_points`` takes the fast path for these modules (else: official)."""
    if not isinstance(prompt_encoder, PromptEncoder) or not isinstance(mask_decoder, MaskDecoder):
        return False
    if type(mask_decoder).forward is not MaskDecoder.forward:
        return False
    if type(mask_decoder).predict_masks is not MaskDecoder.predict_masks:
        return False
    return _sam_part_supported(mask_decoder)


def is_hq_supported(hq_decoder: nn.Module) -> bool:
    """Whether ``decode_hq_tokens`` can decode with ``hq_decoder``.

    It must be ``segment_anything_hq``'s own ``MaskDecoderHQ`` class (not a subclass) with
    the official transformer, upscaling and HQ feature layers.
    """
    cls = type(hq_decoder)
    if (cls.__module__, cls.__qualname__) != _HQ_DECODER or not _sam_part_supported(hq_decoder):
        return False
    feature = hq_decoder.embedding_maskfeature
    if not isinstance(feature, nn.Sequential) or len(feature) != 4:
        return False
    conv1, norm, act, conv2 = feature
    return (
        all(type(conv) is nn.Conv2d and _is_same_3x3_conv(conv) for conv in (conv1, conv2))
        and _is_official(norm, LayerNorm2d)
        and _activation(act) is not None
    )


@torch.inference_mode()
def decode_points(
    prompt_encoder: PromptEncoder,
    mask_decoder: MaskDecoder,
    embedding: Tensor,
    points: Tensor,
    labels: Tensor | None = None,
    *,
    multimask_output: bool = True,
    chunk: int = DEFAULT_CHUNK,
    tile_pixels: int = DEFAULT_TILE_PIXELS,
    dtype: torch.dtype | None = None,
) -> tuple[Tensor, Tensor]:
    """Decode point prompts against one image embedding.

    Equivalent (up to float rounding) to the official::

        sparse, dense = prompt_encoder(points=(points, labels), boxes=None, masks=None)
        mask_decoder(image_embeddings=embedding, image_pe=prompt_encoder.get_dense_pe(),
                     sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                     multimask_output=multimask_output)

    Args:
        prompt_encoder, mask_decoder: official ``segment_anything`` modules (eval mode).
        embedding: (1, C, E, E) image embedding.
        points: (N, P, 2) x/y prompt coordinates in input pixels.
        labels: (N, P) point labels (1 foreground, 0 background, -1 ignored); all 1 when
            omitted.
        multimask_output: return the 3 ambiguity masks (True) or the single mask (False).
        chunk: prompts decoded together (memory vs. per-operation overhead).
        tile_pixels: image tokens per tile of the per-pixel steps (whole embedding rows).
        dtype: the decoding's dtype (None: the embedding's). A lower one (bfloat16) is
            approximate: the fast path runs a converted copy of the decoder on converted
            inputs, the official forward runs under autocast; the prompt encoder runs as is.

    Returns:
        Low-resolution mask logits (N, M, 4E, 4E) and predicted IoU (N, M), with M = 3 or 1,
        in the embedding's dtype.
    """
    if points.ndim != 3 or points.shape[-1] != 2:
        raise ValueError(f"points must be (N, P, 2), got {tuple(points.shape)}")
    if labels is None:
        labels = torch.ones(points.shape[:2], dtype=torch.int64, device=points.device)
    if labels.shape != points.shape[:2]:
        raise ValueError(f"labels must be {tuple(points.shape[:2])}, got {tuple(labels.shape)}")
    if chunk < 1 or tile_pixels < 1:
        raise ValueError(f"chunk and tile_pixels must be >= 1, got {chunk}, {tile_pixels}")
    sparse, dense = prompt_encoder(points=(points, labels), boxes=None, masks=None)
    image_pe = prompt_encoder.get_dense_pe()
    shared_dense = dense.shape[0] == 1 or dense.stride(0) == 0
    # On a GPU the reorganisation does not pay: its chunks and tiles become many small
    # kernel launches (H100, 256 prompts, benchmarks/gpu.py: 505 ms with the CPU defaults,
    # 61-93 ms at best, the official decoder 71 ms), so the official decoder runs there.
    compute = embedding.dtype if dtype is None else dtype
    if (
        (embedding.device.type != "cpu" and points.shape[0] > 0)
        or embedding.ndim != 4
        or embedding.shape[0] != 1
        or not shared_dense
        or not is_supported(prompt_encoder, mask_decoder)
    ):
        with torch.autocast(embedding.device.type, compute, enabled=compute != embedding.dtype):
            logits, iou = mask_decoder(
                image_embeddings=embedding,
                image_pe=image_pe,
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=multimask_output,
            )
        return logits.to(embedding.dtype), iou.to(embedding.dtype)
    if points.shape[0] == 0:  # the official decoder fails on an empty batch
        dense = prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1).expand_as(embedding)
    decoder = (
        mask_decoder if compute == embedding.dtype else low_precision_copy(mask_decoder, compute)
    )
    logits, iou = _FastDecoder(
        decoder, embedding.to(compute), image_pe.to(compute), dense[:1].to(compute)
    ).run(
        sparse.to(compute), multimask_output=multimask_output, chunk=chunk, tile_pixels=tile_pixels
    )
    return logits.to(embedding.dtype), iou.to(embedding.dtype)


@torch.inference_mode()
def decode_hq_tokens(
    hq_decoder: nn.Module,
    embedding: Tensor,
    image_pe: Tensor,
    sparse: Tensor,
    dense: Tensor,
    hq_features: Tensor,
    *,
    multimask_output: bool,
    hq_token_only: bool,
    chunk: int = DEFAULT_CHUNK,
    tile_pixels: int = DEFAULT_TILE_PIXELS,
) -> tuple[Tensor, Tensor, Tensor]:
    """HQ-SAM's mask of each prompt, from the prompt encoder's output.

    Equivalent (up to float rounding) to the official ``MaskDecoderHQ.forward`` given
    ``hq_features`` (which it computes from the early-layer features on every call): SAM's
    single mask, or with ``multimask_output`` its ambiguity mask of highest predicted IoU,
    plus the HQ token's mask (``hq_token_only``: the HQ token's mask alone).

    Args:
        hq_decoder: ``segment_anything_hq``'s ``MaskDecoderHQ`` (eval mode) for which
            ``is_hq_supported`` holds.
        embedding: (1, C, E, E) image embedding.
        image_pe: (1, C, E, E) ``prompt_encoder.get_dense_pe()``.
        sparse: (N, T, C) sparse prompt embeddings (points and/or boxes).
        dense: (1, C, E, E) dense prompt embedding shared by all prompts (no mask input).
        hq_features: (1, C/8, 4E, 4E) ``embedding_encoder(embedding) +
            compress_vit_feat(interm)``.
        chunk: prompts through the transformer together.
        tile_pixels: image tokens per tile of the per-pixel steps (whole embedding rows).

    Returns:
        Mask logits (N, 1, 4E, 4E); the predicted IoU (N, 1) of the SAM mask used and its
        index (N,) int64 (among the ambiguity masks with ``multimask_output``, else 0).

    Raises:
        ValueError: Bad ``chunk``/``tile_pixels`` or shapes.
    """
    if chunk < 1 or tile_pixels < 1:
        raise ValueError(f"chunk and tile_pixels must be >= 1, got {chunk}, {tile_pixels}")
    if embedding.ndim != 4 or embedding.shape[0] != 1 or dense.shape != embedding.shape:
        raise ValueError(
            f"embedding and dense must be (1, C, E, E), got {tuple(embedding.shape)} and "
            f"{tuple(dense.shape)}"
        )
    side = tuple(4 * e for e in embedding.shape[-2:])
    if hq_features.ndim != 4 or hq_features.shape[0] != 1 or hq_features.shape[-2:] != side:
        raise ValueError(
            f"hq_features must be (1, C/8, {side[0]}, {side[1]}), got {tuple(hq_features.shape)}"
        )
    return _FastDecoder(hq_decoder, embedding, image_pe, dense).run_hq(
        sparse,
        hq_features,
        multimask_output=multimask_output,
        hq_token_only=hq_token_only,
        chunk=chunk,
        tile_pixels=tile_pixels,
    )


# --------------------------------------------------------------------------------------
# helpers

#: ``segment_anything_hq``'s HQ decoder class, by module and name (importing the package
#: only to compare would print timm's deprecation warnings).
_HQ_DECODER = ("segment_anything_hq.modeling.mask_decoder_hq", "MaskDecoderHQ")


def _is_official(module: nn.Module, cls: type) -> bool:
    """``module`` is exactly ``cls`` of ``segment_anything`` or its ``segment_anything_hq`` copy.

    ``segment_anything_hq`` ships the transformer and LayerNorm2d classes unchanged.
    """
    kind = type(module)
    if kind is cls:
        return True
    hq_module = "segment_anything_hq" + cls.__module__.removeprefix("segment_anything")
    return (kind.__module__, kind.__qualname__) == (hq_module, cls.__qualname__)


def _plain_modules(root: nn.Module) -> bool:
    """Only ``torch.nn`` and official SAM classes below ``root``.

    The fast path reads the layers' weights directly; a wrapper such as peft's unmerged LoRA
    ``Linear`` changes what its layer computes and must take the official forward.
    """
    return all(
        type(m).__module__.startswith(("torch.nn.", "segment_anything")) for m in root.modules()
    )


def _sam_part_supported(decoder: Any) -> bool:
    """Whether a ``MaskDecoder``'s or ``MaskDecoderHQ``'s SAM part is what the fast path computes.

    That is the transformer and output upscaling; the hypernetwork and IoU MLPs may be anything.
    """
    tr = decoder.transformer
    if not _is_official(tr, TwoWayTransformer) or not _is_official(
        tr.final_attn_token_to_image, Attention
    ):
        return False
    if not _plain_modules(tr):
        return False
    if len(tr.layers) == 0:
        return False
    for layer in tr.layers:
        if not _is_official(layer, TwoWayAttentionBlock):
            return False
        for attn in (layer.cross_attn_token_to_image, layer.cross_attn_image_to_token):
            if not _is_official(attn, Attention):
                return False
        if type(layer.norm4) is not nn.LayerNorm or len(layer.norm4.normalized_shape) != 1:
            return False
    up = decoder.output_upscaling
    if not isinstance(up, nn.Sequential) or len(up) != 5:
        return False
    conv1, norm, act1, conv2, act2 = up
    for conv in (conv1, conv2):
        if type(conv) is not nn.ConvTranspose2d or not _is_pixel_shuffle_conv(conv):
            return False
    if not _is_official(norm, LayerNorm2d):
        return False
    return _activation(act1) is not None and _activation(act2) is not None


def _is_same_3x3_conv(conv: nn.Conv2d) -> bool:
    """A 3x3 convolution, stride 1, zero padding 1: the output keeps the input's size."""
    return (
        tuple(conv.kernel_size) == (3, 3)
        and tuple(conv.stride) == (1, 1)
        and tuple(conv.padding) == (1, 1)
        and tuple(conv.dilation) == (1, 1)
        and conv.groups == 1
        and conv.padding_mode == "zeros"
    )


def _is_pixel_shuffle_conv(conv: nn.ConvTranspose2d) -> bool:
    """A transposed convolution that maps each input pixel to its own 2x2 output block."""
    return (
        tuple(conv.kernel_size) == (2, 2)
        and tuple(conv.stride) == (2, 2)
        and tuple(conv.padding) == (0, 0)
        and tuple(conv.output_padding) == (0, 0)
        and tuple(conv.dilation) == (1, 1)
        and conv.groups == 1
        and conv.padding_mode == "zeros"
    )


def _activation(module: nn.Module):
    """An in-place element-wise function equal to ``module``, or None if unknown."""
    if type(module) is nn.GELU:
        approximate = module.approximate
        return lambda x: _aten.gelu_(x, approximate=approximate)
    if type(module) is nn.ReLU:
        return torch.relu_
    if type(module) is nn.Identity:
        return lambda x: x
    return None


def _layer_norm_(x: Tensor, weight: Tensor | None, bias: Tensor | None, eps: float) -> Tensor:
    """LayerNorm over the last dimension, in place (the CPU kernel is several times slower)."""
    x.sub_(x.mean(-1, keepdim=True))
    _scale_to_unit_variance_(x, eps)
    return _affine_(x, weight, bias)


def _affine_(x: Tensor, weight: Tensor | None, bias: Tensor | None) -> Tensor:
    """x * weight + bias over the last dimension, in place."""
    if weight is not None and bias is not None:
        return torch.addcmul(bias, x, weight, out=x)
    if weight is not None:
        x.mul_(weight)
    if bias is not None:
        x.add_(bias)
    return x


def _scale_to_unit_variance_(x: Tensor, eps: float) -> Tensor:
    """Divide centred rows of ``x`` (last dimension) by sqrt(mean square + eps), in place."""
    rstd = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
    rstd.square_().div_(x.shape[-1]).add_(eps).rsqrt_()
    return x.mul_(rstd)


def _softmax_(x: Tensor) -> Tensor:
    """Softmax over the last dimension, in place on CPU (no new large tensor)."""
    if x.device.type == "cpu":
        return _aten._softmax.out(x, -1, False, out=x)
    return x.copy_(torch.softmax(x, -1))


def _softmax_slots_(x: Tensor) -> Tensor:
    """Softmax over dimension 1 of (rows, slots, pixels), in place on CPU."""
    if x.device.type == "cpu":
        return _aten._softmax.out(x, 1, False, out=x)
    return x.copy_(torch.softmax(x, 1))


def _pad_tokens(t: int) -> int:
    """Token slots per head in the image-to-token attention: a multiple of 8."""
    return -(-t // 8) * 8


@dataclass(frozen=True)
class _TokenSide:
    """Token-side factors of an image-to-token attention (see _image_to_token_tokens)."""

    u: Tensor  # (n, heads * slots, C): output rows per head and token slot
    keys: Tensor  # shared: (n * heads * slots, Di) block-diagonal; else (n, heads * slots, C)
    gamma: Tensor  # (..., heads * slots, 1) score offsets, -inf on the padding slots
    heads: int
    slots: int


class _OnlineAttention:
    """Softmax attention of a few queries over image tiles, one tile at a time.

    Keeps the running maximum and normaliser of each query's scores and the weighted sum
    of the image tokens seen so far, rescaled whenever the maximum grows, so that the
    result equals ``softmax(scores) @ keys`` over all tiles.
    """

    def __init__(self, g: Tensor) -> None:
        self.max = g.new_full(g.shape[:2], -math.inf)
        self.norm = g.new_zeros(g.shape[:2])
        self.sum = g.new_zeros(g.shape)

    def update(self, scores: Tensor, keys: Tensor) -> None:
        """scores (n, Q, B) of this tile (overwritten) against keys (n, B, C)."""
        new_max = torch.maximum(self.max, scores.amax(-1))
        scores.sub_(new_max.unsqueeze(-1)).exp_()
        rescale = torch.exp(self.max - new_max)
        self.max = new_max
        self.norm.mul_(rescale).add_(scores.sum(-1))
        self.sum.mul_(rescale.unsqueeze(-1)).baddbmm_(scores, keys)

    def result(self) -> Tensor:
        return self.sum / self.norm.unsqueeze(-1)


class _FastDecoder:
    """One call of ``decode_points``: image-only precomputation, then chunks of prompts.

    The image tokens of a chunk live in tiles of whole embedding rows, ``keys[i]`` being
    (n, rows * E, C): per-pixel steps (image-to-token attention, LayerNorm, upscaling) run
    tile by tile on cache-sized pieces, and only the token-to-image softmax spans all tiles.
    """

    def __init__(
        self, decoder: MaskDecoder, embedding: Tensor, image_pe: Tensor, dense: Tensor
    ) -> None:
        self.decoder = decoder
        self.transformer = decoder.transformer
        _, c, eh, ew = embedding.shape
        self.c, self.eh, self.ew, self.hw = c, eh, ew, eh * ew
        self.dtype, self.device = embedding.dtype, embedding.device
        # (1, HW, C) channels-last image tokens, as the official src / pos_src
        self.src = (embedding + dense).flatten(2).transpose(1, 2).contiguous()
        self.pe = image_pe.flatten(2).transpose(1, 2).contiguous()
        # the first block's image side is the same for every prompt: project it once
        layer = self.transformer.layers[0]
        kpe = self.src[0] + self.pe[0]
        t2i, i2t = layer.cross_attn_token_to_image, layer.cross_attn_image_to_token
        self.t2i_k0 = F.linear(kpe, t2i.k_proj.weight, t2i.k_proj.bias)  # (HW, Di)
        self.t2i_v0 = F.linear(self.src[0], t2i.v_proj.weight, t2i.v_proj.bias)
        self.i2t_q0 = F.linear(kpe, i2t.q_proj.weight, i2t.q_proj.bias)
        self.src_centred = self.src - self.src.mean(-1, keepdim=True)
        self._prepare_upscaling()
        self.buffers: dict[str, Tensor] = {}

    def _prepare_upscaling(self) -> None:
        """Both transposed convolutions as per-pixel matrices, (a, b, channel) columns."""
        conv1, _, act1, conv2, act2 = self.decoder.output_upscaling
        c1, c2 = conv1.out_channels, conv2.out_channels
        w1 = conv1.weight.permute(0, 2, 3, 1)  # (C, 2, 2, C1)
        b1 = conv1.bias if conv1.bias is not None else w1.new_zeros(c1)
        # centred over C1 per sub-pixel: the output is already centred for LayerNorm2d
        self.w1 = (w1 - w1.mean(-1, keepdim=True)).reshape(self.c, 4 * c1)
        self.b1 = (b1 - b1.mean()).repeat(4)
        self.w2 = conv2.weight.permute(0, 2, 3, 1).reshape(c1, 4 * c2)
        b2 = conv2.bias if conv2.bias is not None else self.w2.new_zeros(c2)
        self.b2 = b2.repeat(4)
        self.c1, self.c2 = c1, c2
        self.act1, self.act2 = _activation(act1), _activation(act2)

    # ------------------------------------------------------------------------ driver

    def run(
        self, sparse: Tensor, *, multimask_output: bool, chunk: int, tile_pixels: int
    ) -> tuple[Tensor, Tensor]:
        dec = self.decoder
        mask_ids = list(range(1, dec.num_mask_tokens)) if multimask_output else [0]
        masks = torch.empty(
            (sparse.shape[0], len(mask_ids), 4 * self.eh, 4 * self.ew),
            dtype=self.dtype,
            device=self.device,
        )
        ious = [masks.new_empty((0, len(mask_ids)))]  # no prompts: empty results
        for start, stop, queries, keys in self._chunks(sparse, (), chunk, tile_pixels):
            ious.append(dec.iou_prediction_head(queries[:, 0, :])[:, mask_ids])
            hyper = torch.stack(
                [dec.output_hypernetworks_mlps[i](queries[:, 1 + i, :]) for i in mask_ids], dim=1
            )
            for (r0, r1), keys_t in zip(self.tiles, keys, strict=True):
                out = masks[start:stop, :, 4 * r0 : 4 * r1]
                self._masks_tile(keys_t, hyper, r1 - r0, out=out)
        return masks, torch.cat(ious)

    def run_hq(
        self,
        sparse: Tensor,
        hq_features: Tensor,
        *,
        multimask_output: bool,
        hq_token_only: bool,
        chunk: int,
        tile_pixels: int,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``decode_hq_tokens``: one mask per prompt, prompt by prompt after the transformer."""
        dec = self.decoder
        n_total = sparse.shape[0]
        hq_slot = dec.num_mask_tokens - 1  # SAM's 1 + 3 mask tokens, then the HQ token
        height, width = 4 * self.eh, 4 * self.ew
        logits = torch.empty((n_total, 1, height, width), dtype=self.dtype, device=self.device)
        ious = logits.new_empty((n_total, 1))
        indices = torch.zeros(n_total, dtype=torch.int64, device=self.device)
        self._prepare_hq(hq_features)
        for start, stop, queries, keys in self._chunks(sparse, (dec.hf_token,), chunk, tile_pixels):
            iou = dec.iou_prediction_head(queries[:, 0, :])
            if multimask_output:
                ious[start:stop, 0], indices[start:stop] = iou[:, 1:hq_slot].max(dim=1)
                slots = indices[start:stop] + 1  # output 0 is the single mask
            else:
                ious[start:stop, 0] = iou[:, 0]
                slots = indices[start:stop]
            hyper_hq = dec.hf_mlp(queries[:, 1 + hq_slot, :])
            hyper_sam: Tensor | None = None
            if not hq_token_only:  # the hypernetwork of each prompt's SAM mask
                mlps = dec.output_hypernetworks_mlps
                hyper_sam = torch.stack(
                    [mlps[i](queries[:, 1 + i, :]) for i in range(hq_slot)], dim=1
                )[torch.arange(stop - start, device=self.device), slots]
            upscaled = self._buffer("hq_upscaled", (height, width, self.c2))
            for i in range(stop - start):
                for (r0, r1), keys_t in zip(self.tiles, keys, strict=True):
                    self._upscale(keys_t[i], r1 - r0, out=upscaled[4 * r0 : 4 * r1])
                sam = None if hyper_sam is None else hyper_sam[i]
                self._hq_mask(upscaled, hyper_hq[i], sam, out=logits[start + i, 0])
        return logits, ious, indices

    def _chunks(
        self, sparse: Tensor, extra_tokens: tuple[nn.Embedding, ...], chunk: int, tile_pixels: int
    ) -> Iterator[tuple[int, int, Tensor, list[Tensor]]]:
        """Transformer outputs (start, stop, queries, keys' tiles) of each chunk of prompts.

        The output tokens are the IoU and mask tokens, then ``extra_tokens``' (HQ-SAM's).
        """
        dec = self.decoder
        output_tokens = torch.cat(
            [dec.iou_token.weight, dec.mask_tokens.weight, *(e.weight for e in extra_tokens)]
        )
        n_total = sparse.shape[0]
        tokens = torch.cat((output_tokens.unsqueeze(0).expand(n_total, -1, -1), sparse), dim=1)
        rows = max(1, min(self.eh, tile_pixels // self.ew))
        self.tiles = [(r, min(r + rows, self.eh)) for r in range(0, self.eh, rows)]
        try:
            for start in range(0, n_total, chunk):
                stop = min(start + chunk, n_total)
                yield start, stop, *self._transformer(tokens[start:stop])
        finally:
            self.buffers = {}

    def _buffer(self, name: str, shape: tuple[int, ...]) -> Tensor:
        """A work tensor reused across tiles and chunks (fresh memory costs page faults)."""
        numel = math.prod(shape)
        buf = self.buffers.get(name)
        if buf is None or buf.numel() < numel:
            buf = torch.empty(numel, dtype=self.dtype, device=self.device)
            self.buffers[name] = buf
        return buf[:numel].view(shape)

    # ------------------------------------------------------------------- transformer

    def _transformer(self, tokens: Tensor) -> tuple[Tensor, list[Tensor]]:
        """TwoWayTransformer on a chunk: queries (n, T, C) and the keys' tiles."""
        tr = self.transformer
        layers = list(tr.layers)
        n, _, c = tokens.shape
        ew = self.ew
        flat = self._buffer("keys", (n * self.hw * c,))
        keys, offset = [], 0
        for r0, r1 in self.tiles:
            size = n * (r1 - r0) * ew * c
            keys.append(flat[offset : offset + size].view(n, (r1 - r0) * ew, c))
            offset += size
        query_pe = tokens

        # first block up to its image-to-token attention: image side shared by all prompts
        first = layers[0]
        queries = self._self_attention(first, tokens, query_pe)
        attn_out = self._token_to_image_shared(first.cross_attn_token_to_image, queries + query_pe)
        queries = first.norm2(queries + attn_out)
        queries = first.norm3(queries + first.mlp(queries))

        for index, layer in enumerate(layers):
            shared = index == 0
            i2t = self._image_to_token_tokens(
                layer.cross_attn_image_to_token, queries + query_pe, queries, shared=shared
            )
            # the next token-to-image attention's queries depend on tokens only: it runs
            # tile by tile right after the keys it attends to (online softmax)
            following = layers[index + 1] if index + 1 < len(layers) else None
            if following is not None:
                queries = self._self_attention(following, queries, query_pe)
                t2i = following.cross_attn_token_to_image
            else:
                t2i = tr.final_attn_token_to_image
            g = self._token_to_image_queries(t2i, queries + query_pe)  # (n, hT, C)
            online = _OnlineAttention(g)
            norm = layer.norm4
            for (r0, r1), keys_t in zip(self.tiles, keys, strict=True):
                l0, l1 = r0 * ew, r1 * ew
                self._image_to_token_tile(i2t, l0, l1, keys_t, shared=shared)
                if shared:  # the sum is centred already (see _image_to_token_tokens)
                    _scale_to_unit_variance_(keys_t, norm.eps)
                    _affine_(keys_t, norm.weight, norm.bias)
                else:
                    _layer_norm_(keys_t, norm.weight, norm.bias, norm.eps)
                kpe = torch.add(keys_t, self.pe[:, l0:l1], out=self._buffer("kpe", keys_t.shape))
                scores = torch.bmm(
                    g, kpe.transpose(1, 2), out=self._buffer("t2i_tile", (n, g.shape[1], l1 - l0))
                )
                online.update(scores, keys_t)
            attn_out = self._token_to_image_output(t2i, online.result())
            if following is not None:
                queries = following.norm2(queries + attn_out)
                queries = following.norm3(queries + following.mlp(queries))
            else:
                queries = tr.norm_final_attn(queries + attn_out)
        return queries, keys

    @staticmethod
    def _self_attention(layer: TwoWayAttentionBlock, queries: Tensor, query_pe: Tensor) -> Tensor:
        if layer.skip_first_layer_pe:
            queries = layer.self_attn(q=queries, k=queries, v=queries)
        else:
            q = queries + query_pe
            queries = queries + layer.self_attn(q=q, k=q, v=queries)
        return layer.norm1(queries)

    def _token_to_image_shared(self, attn: Attention, q: Tensor) -> Tensor:
        """Token-to-image attention against the first block's shared image side."""
        n, t, _ = q.shape
        h, di = attn.num_heads, attn.internal_dim
        dh = di // h
        qh = F.linear(q, attn.q_proj.weight, attn.q_proj.bias)  # (n, T, Di)
        qh = qh.view(n * t, h, dh).transpose(0, 1).mul(1.0 / math.sqrt(dh))  # (h, nT, dh)
        k = self.t2i_k0.view(self.hw, h, dh).permute(1, 2, 0)  # (h, dh, HW)
        v = self.t2i_v0.view(self.hw, h, dh).transpose(0, 1)  # (h, HW, dh)
        scores = torch.bmm(qh, k, out=self._buffer("t2i_scores", (h, n * t, self.hw)))
        _softmax_(scores)
        o = torch.bmm(scores, v)  # (h, nT, dh)
        return attn.out_proj(o.transpose(0, 1).reshape(n, t, di))

    @staticmethod
    def _token_to_image_queries(attn: Attention, q: Tensor) -> Tensor:
        """Token queries folded through the key projection: scores = (keys + pe) @ g^T.

        The term q . b_k is constant along the softmax axis and drops out.
        """
        n, t, c = q.shape
        h, dh = attn.num_heads, attn.internal_dim // attn.num_heads
        qh = F.linear(q, attn.q_proj.weight, attn.q_proj.bias).view(n, t, h, dh)
        qh = qh * (1.0 / math.sqrt(dh))
        g = torch.einsum("nthd,hdc->nhtc", qh, attn.k_proj.weight.view(h, dh, c))
        return g.reshape(n, h * t, c)

    @staticmethod
    def _token_to_image_output(attn: Attention, weighted: Tensor) -> Tensor:
        """Value and output projections of attention-weighted image tokens (n, hT, C)."""
        n, ht, c = weighted.shape
        h, di = attn.num_heads, attn.internal_dim
        dh, t = di // h, ht // h
        # softmax rows sum to one: attn @ (x W_v^T + b_v) = (attn @ x) W_v^T + b_v
        o = torch.einsum(
            "nhtc,hdc->nthd", weighted.view(n, h, t, c), attn.v_proj.weight.view(h, dh, c)
        )
        return attn.out_proj(o.reshape(n, t, di) + attn.v_proj.bias)

    def _image_to_token_tokens(
        self, attn: Attention, kt: Tensor, vt: Tensor, *, shared: bool
    ) -> _TokenSide:
        """Token-side factors of the image-to-token attention (image queries, token keys).

        Scores come out as (prompt, head, slot, pixel), the token axis padded to a multiple of
        8 slots whose score is -inf (weight exactly 0).
        """
        n, t, c = kt.shape
        h, di = attn.num_heads, attn.internal_dim
        dh = di // h
        tp = _pad_tokens(t)
        k_tok = F.linear(kt, attn.k_proj.weight, attn.k_proj.bias).view(n, t, h, dh)
        k_tok = k_tok * (1.0 / math.sqrt(dh))
        v_tok = F.linear(vt, attn.v_proj.weight, attn.v_proj.bias).view(n, t, h, dh)
        # per-token rows of the output projection, b_o split over the heads (each head's
        # attention row sums to one)
        u = kt.new_zeros((n, h, tp, c))
        u[:, :, :t] = torch.einsum("nthd,chd->nhtc", v_tok, attn.out_proj.weight.view(c, h, dh))
        u += attn.out_proj.bias / h
        gamma = kt.new_full((n, h, tp), -math.inf)
        if shared:
            # centred over channels, as is the shared residual: mean(res + A @ u) = 0 by
            # construction and the following LayerNorm needs no mean
            u -= u.mean(-1, keepdim=True)
            # scores = q_img . k with q_img = W_q x + b_q shared: one product of the
            # block-diagonal (over heads) token keys of all prompts with the image queries
            kbd = kt.new_zeros((n, h, tp, h, dh))
            heads = torch.arange(h, device=kt.device)
            kbd[:, heads, :t, heads, :] = k_tok.permute(2, 0, 1, 3)
            gamma[..., :t] = 0.0
            return _TokenSide(
                u.view(n, h * tp, c), kbd.view(n * h * tp, di), gamma.view(-1, 1), h, tp
            )
        # scores = (W_q x + b_q) . k = x . (W_q^T k) + b_q . k
        gq = kt.new_zeros((n, h, tp, c))
        gq[:, :, :t] = torch.einsum("nthd,hdc->nhtc", k_tok, attn.q_proj.weight.view(h, dh, c))
        gamma[..., :t] = torch.einsum("nthd,hd->nht", k_tok, attn.q_proj.bias.view(h, dh))
        return _TokenSide(
            u.view(n, h * tp, c), gq.view(n, h * tp, c), gamma.view(n, h * tp, 1), h, tp
        )

    def _image_to_token_tile(
        self, side: _TokenSide, l0: int, l1: int, keys_t: Tensor, *, shared: bool
    ) -> None:
        """keys_t += image-to-token attention (shared: keys_t = centred src + attention)."""
        n, b, _ = keys_t.shape
        h, tp = side.heads, side.slots
        scores = self._buffer("i2t_scores", (n, h * tp, b))  # (prompt, head, slot, pixel)
        if shared:
            torch.addmm(side.gamma, side.keys, self.i2t_q0[l0:l1].t(), out=scores.view(-1, b))
            _softmax_slots_(scores.view(n * h, tp, b))
            residual = self.src_centred[:, l0:l1].expand(n, -1, -1)
            torch.baddbmm(residual, scores.transpose(1, 2), side.u, out=keys_t)
        else:
            kpe = torch.add(keys_t, self.pe[:, l0:l1], out=self._buffer("kpe", keys_t.shape))
            torch.baddbmm(side.gamma, side.keys, kpe.transpose(1, 2), out=scores)
            _softmax_slots_(scores.view(n * h, tp, b))
            keys_t.baddbmm_(scores.transpose(1, 2), side.u)

    # -------------------------------------------------------------------- upscaling

    def _masks_tile(self, keys_t: Tensor, hyper: Tensor, rows: int, *, out: Tensor) -> None:
        """Upscaling and hypernetwork product of one tile into ``out`` (n, M, 4 rows, 4E).

        Prompt by prompt, so that the upscaled tensors (16x the pixels) stay in cache.
        """
        n, b, _ = keys_t.shape
        m = hyper.shape[1]
        upscaled = self._buffer("upscaled", (4 * rows, 4 * self.ew, self.c2))
        for i in range(n):
            self._upscale(keys_t[i], rows, out=upscaled)
            torch.mm(hyper[i], upscaled.view(b * 16, self.c2).t(), out=out[i].view(m, b * 16))

    def _upscale(self, keys: Tensor, rows: int, *, out: Tensor) -> None:
        """``output_upscaling`` of one prompt's tile (rows * E, C) into ``out`` (4 rows, 4E, C2)."""
        _, norm, _, _, _ = self.decoder.output_upscaling
        b = keys.shape[0]
        c1, c2, ew = self.c1, self.c2, self.ew
        y1 = self._buffer("up1", (b, 4 * c1))
        y2 = self._buffer("up2", (b * 4, 4 * c2))
        torch.addmm(self.b1, keys, self.w1, out=y1)
        y = y1.view(b * 4, c1)  # rows (i, j, a, b)
        _scale_to_unit_variance_(y, norm.eps)  # already centred (see _prepare_upscaling)
        _affine_(y, norm.weight, norm.bias)
        self.act1(y)
        torch.addmm(self.b2, y, self.w2, out=y2)  # columns (a2, b2, channel)
        self.act2(y2)
        # pixels to output order: rows 4i + 2a + a2, columns 4j + 2b + b2
        out.view(rows, 2, 2, ew, 2, 2, c2).copy_(
            y2.view(rows, ew, 2, 2, 2, 2, c2).permute(0, 2, 4, 1, 3, 5, 6)
        )

    # ------------------------------------------------------------------------ HQ mask

    def _prepare_hq(self, hq_features: Tensor) -> None:
        """``embedding_maskfeature``'s weights and the fused features, laid out for _hq_mask."""
        conv1, norm, act, conv2 = self.decoder.embedding_maskfeature
        w1 = conv1.weight
        b1 = conv1.bias if conv1.bias is not None else w1.new_zeros(w1.shape[0])
        # centred over output channels: the output is already centred for LayerNorm2d;
        # channels last, as the input, gives the fast CPU kernel and a channels-last output
        self.hq_w1 = (w1 - w1.mean(0, keepdim=True)).contiguous(memory_format=torch.channels_last)
        self.hq_b1 = b1 - b1.mean()
        self.hq_norm, self.hq_act = norm, _activation(act)
        self.hq_w2 = conv2.weight.flatten(1)  # (C2, C4 * 9), columns (channel, ky, kx)
        self.hq_b2 = conv2.bias if conv2.bias is not None else w1.new_zeros(conv2.out_channels)
        # channels last (4E * 4E, C2)
        self.hq_fused = hq_features[0].flatten(1).t().contiguous()

    def _hq_mask(
        self, upscaled: Tensor, hyper_hq: Tensor, hyper_sam: Tensor | None, *, out: Tensor
    ) -> None:
        """One prompt's HQ mask (plus SAM's with ``hyper_sam``) into ``out`` (4E, 4E).

        ``upscaled``: (4E, 4E, C2) SAM's upscaled features, channels last.
        """
        height, width, c2 = upscaled.shape
        pixels = height * width
        conv1 = self.hq_w1
        z = F.conv2d(upscaled.permute(2, 0, 1)[None], conv1, self.hq_b1, padding=1)
        z = z[0].permute(1, 2, 0).reshape(pixels, conv1.shape[0])  # no copy if channels last
        _scale_to_unit_variance_(z, self.hq_norm.eps)  # already centred (see _prepare_hq)
        _affine_(z, self.hq_norm.weight, self.hq_norm.bias)
        self.hq_act(z)
        # h . (conv2(z) + fused) = conv(z, sum_o h_o W2_o) + h . b2 + fused @ h: the folded
        # convolution as nine per-pixel products (taps), summed shifted by the kernel offsets
        folded = (hyper_hq @ self.hq_w2).view(conv1.shape[0], 9)
        taps = torch.mm(folded.t(), z.t(), out=self._buffer("hq_taps", (9, pixels)))
        flat = out.view(pixels)
        torch.mv(self.hq_fused, hyper_hq, out=flat).add_(hyper_hq @ self.hq_b2)
        if hyper_sam is not None:
            flat.addmv_(upscaled.view(pixels, c2), hyper_sam)
        taps = taps.view(3, 3, height, width)
        for ky in range(3):
            dy = ky - 1
            for kx in range(3):
                dx = kx - 1
                out[max(0, -dy) : height - max(0, dy), max(0, -dx) : width - max(0, dx)] += taps[
                    ky, kx, max(0, dy) : height + min(0, dy), max(0, dx) : width + min(0, dx)
                ]
