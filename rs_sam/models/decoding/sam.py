"""SAM's prompt encoder and mask decoder behind one object: the only caller of either.

:class:`SamDecoder` is built once per model (:meth:`SamDecoder.for_encoder`) and decodes
prompts against what the encoder produced for a chip (:class:`ChipFeatures`):

* :meth:`SamDecoder.decode` (inference, no autograd): point-only prompts through
  :func:`~rs_sam.models.fast_decoder.decode_points` (the exact CPU reorganisation; it falls
  back to the official forward on a GPU, for modules it does not support such as peft's LoRA
  wrappers, and for several embeddings); boxes or mask prompts through the official forward;
  HQ-SAM through :func:`~rs_sam.models.decoding.hq.decode_hq` (fast on CPU, else official).
* :meth:`SamDecoder.decode_train` (autograd where parameters train): always the official
  forward, as the LoRA and HQ-SAM training tasks need.

Both return :class:`DecodedMasks`. Prompt coordinates are in model-input pixels, already
shifted by -0.5 as SAM's prompt encoder expects.

SAM 2 encoders (``encoder.has_high_res``) decode through
:class:`~rs_sam.models.decoding.sam2.Sam2Heads` (transformers' SAM 2 prompt encoder and mask
decoder, with the chip's high-resolution features) in both methods; same contract.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple, cast

import torch
from torch import Tensor, nn

from rs_sam.errors import ConfigError
from rs_sam.models.decoding.features import ChipFeatures, encoder_features
from rs_sam.models.decoding.hq import (
    DEFAULT_HQ_CHUNK,
    decode_hq,
    hq_features,
    is_hq_decoder,
    select_hq,
)
from rs_sam.models.decoding.modes import HQ_MODES, HqMode, hq_encoder_error
from rs_sam.models.decoding.sam2 import DEFAULT_SAM2_CHUNK, Sam2Heads
from rs_sam.models.fast_decoder import decode_points
from rs_sam.models.low_precision import warn_if_slow_bfloat16

if TYPE_CHECKING:
    from rs_sam.models.encoders.base import FrozenEncoder

__all__ = ["DecodedMasks", "SamDecoder"]


class DecodedMasks(NamedTuple):
    """Masks of ``N`` prompts.

    Attributes:
        logits: ``(N, M, 4E, 4E)`` low-resolution mask logits: ``M`` = 3 ambiguity masks
            (``multimask``) or 1; always 1 with HQ-SAM.
        iou: ``(N, M)`` SAM's predicted IoU.
        index: ``(N, M)`` int64: which SAM output each mask is (0..2 for the ambiguity masks,
            0 for the single mask; with HQ-SAM the SAM mask its HQ logits went with).
        sam_logits: HQ-SAM in :meth:`SamDecoder.decode_train` only: SAM's own logits
            ``(N, 1, 4E, 4E)`` of the mask used, without the HQ token; else None.
    """

    logits: Tensor
    iou: Tensor
    index: Tensor
    sam_logits: Tensor | None = None


class SamDecoder:
    """A SAM prompt encoder and mask decoder (plain or HQ-SAM) decoding prompts on chips.

    Args:
        prompt_encoder: SAM's ``PromptEncoder``.
        mask_decoder: SAM's ``MaskDecoder`` with ``hq="off"``, HQ-SAM's ``MaskDecoderHQ``
            with ``hq="add"``/``"only"``.
        hq: ``"off"``, or HQ-SAM decoding (see :mod:`rs_sam.models.decoding.hq`).
        encoder: The encoder the modules belong to (for :meth:`features`), or None.

    Raises:
        ValueError: ``hq`` unknown, or on with a decoder that is not ``MaskDecoderHQ``.
    """

    def __init__(
        self,
        prompt_encoder: nn.Module,
        mask_decoder: nn.Module,
        *,
        hq: HqMode = "off",
        encoder: FrozenEncoder | None = None,
    ) -> None:
        if hq not in HQ_MODES:
            raise ValueError(f"hq={hq!r} is not one of {', '.join(HQ_MODES)}")
        if hq != "off" and not is_hq_decoder(mask_decoder):
            raise ValueError(
                f"hq={hq!r} needs HQ-SAM's MaskDecoderHQ, not {type(mask_decoder).__name__}"
            )
        self.prompt_encoder: Any = prompt_encoder  # segment_anything ships no types
        self.mask_decoder: Any = mask_decoder
        self.hq = hq
        self.encoder = encoder
        # SAM 2: its own heads (and high-resolution features); None for SAM and HQ-SAM
        sam2 = encoder is not None and bool(getattr(encoder, "has_high_res", False))
        self._sam2 = Sam2Heads(cast(Any, encoder).sam) if sam2 else None

    @classmethod
    def for_encoder(cls, encoder: FrozenEncoder, hq: HqMode = "off") -> SamDecoder:
        """The decoder of a SAM-family encoder (its HQ decoder with ``hq`` on).

        Raises:
            ConfigError: The encoder has no SAM decoder, ``hq`` is unknown, or on with an
                encoder that is not HQ-SAM.
        """
        if encoder.prompt_encoder is None or encoder.mask_decoder is None:
            raise ConfigError(
                f"encoder '{encoder.spec.name}' has no SAM prompt encoder and mask decoder; "
                "use a SAM encoder such as 'mobile_sam' or 'sam_vit_b'"
            )
        if hq not in HQ_MODES:
            raise ConfigError(f"hq={hq!r} is invalid; use one of {', '.join(HQ_MODES)}")
        decoder = encoder.mask_decoder if hq == "off" else encoder.hq_decoder
        if decoder is None:
            raise hq_encoder_error(encoder.spec.name)
        return cls(encoder.prompt_encoder, decoder, hq=hq, encoder=encoder)

    # ------------------------------------------------------------------ description
    @property
    def input_size(self) -> int:
        """Side of the model input: the frame of prompt coordinates."""
        if self._sam2 is not None:
            return self._sam2.input_size
        return int(self.prompt_encoder.input_image_size[0])

    @property
    def mask_input_size(self) -> int:
        """Side of the prompt encoder's mask input (mask prompts)."""
        return int(self.prompt_encoder.mask_input_size[0])

    # ------------------------------------------------------------------ image side
    def features(self, images: Tensor, *, trainable: bool = False) -> ChipFeatures:
        """What this decoder needs of RGB chips ``(B, 3, H, W)``, from its encoder.

        No autograd, unless ``trainable`` (plain decoding: gradients reach the image
        encoder's LoRA).
        """
        if self.encoder is None:
            raise ValueError("this SamDecoder was built without an encoder; use for_encoder")
        if self.hq == "off":
            return encoder_features(self.encoder, images, trainable=trainable)
        embedding, interm = self.encoder.embed_hq(images)
        return ChipFeatures(embedding, interm)

    def prepare(self, features: ChipFeatures) -> ChipFeatures:
        """``features`` with what this decoder computes once per chip (HQ-SAM's fusion).

        Call it once before decoding several batches of prompts on one chip; autograd
        follows the caller's mode (the fusion trains in HQ-SAM training).
        """
        if self.hq == "off" or features.hq_features is not None:
            return features
        if features.interm is None:
            raise ValueError("HQ-SAM decoding needs the early-layer features (ChipFeatures.interm)")
        return features.with_hq_features(
            hq_features(self.mask_decoder, features.embedding, features.interm)
        )

    # ------------------------------------------------------------------ inference
    @torch.inference_mode()
    def decode(
        self,
        features: ChipFeatures,
        *,
        points: Tensor | None = None,
        labels: Tensor | None = None,
        boxes: Tensor | None = None,
        masks: Tensor | None = None,
        multimask: bool = True,
        chunk: int | None = None,
        dtype: torch.dtype | None = None,
    ) -> DecodedMasks:
        """Masks of ``N`` prompts on one chip (features of one chip), without autograd.

        Args:
            features: The chip's features (:meth:`prepare`-d or not).
            points: ``(N, P, 2)`` x/y points, or None.
            labels: ``(N, P)`` point labels (1 foreground, 0 background); all 1 when omitted.
            boxes: ``(N, 4)`` x0, y0, x1, y1 boxes, or None.
            masks: ``(N, 1, m, m)`` mask-prompt logits at :attr:`mask_input_size`, or None.
            multimask: SAM's three ambiguity masks (with HQ-SAM: the best of them) instead of
                its single mask.
            chunk: Prompts decoded together (None: each path's default; SAM 2: 16).
            dtype: The decoding's dtype (None: the features'). A lower one (bfloat16) is
                approximate and faster where the hardware has it (see
                :mod:`rs_sam.models.low_precision`); outputs keep the features' dtype.
                Not with HQ-SAM.
        """
        exact = dtype is None or dtype == features.embedding.dtype
        if not exact and features.embedding.device.type == "cpu":
            warn_if_slow_bfloat16()
        if self.hq != "off":
            if not exact:
                raise ValueError(f"HQ-SAM decodes in the features' dtype, not {dtype}")
            if masks is not None:
                raise ValueError("HQ-SAM inference decodes points and boxes, not mask prompts")
            prepared = self.prepare(features)
            out = decode_hq(
                self.prompt_encoder,
                self.mask_decoder,
                prepared.embedding,
                prepared.interm,  # type: ignore[arg-type]  # checked by prepare
                points=points,
                labels=labels,
                boxes=boxes,
                multimask_output=multimask,
                hq=self.hq,  # type: ignore[arg-type]  # "add" or "only" here
                chunk=DEFAULT_HQ_CHUNK if chunk is None else chunk,
                features=prepared.hq_features,
            )
            return DecodedMasks(out.logits, out.iou, out.index[:, None])
        if points is not None and boxes is None and masks is None and self._sam2 is None:
            extra = {} if chunk is None else {"chunk": chunk}
            logits, iou = decode_points(
                self.prompt_encoder,
                self.mask_decoder,
                features.embedding,
                points,
                labels,
                multimask_output=multimask,
                dtype=dtype,
                **extra,
            )
            return DecodedMasks(logits, iou, _outputs(logits))
        device = features.embedding.device.type
        with torch.autocast(device, dtype, enabled=not exact):  # type: ignore[arg-type]
            if self._sam2 is not None:
                logits, iou = self._sam2.decode(
                    features,
                    points=points,
                    labels=labels,
                    boxes=boxes,
                    masks=masks,
                    multimask=multimask,
                    chunk=DEFAULT_SAM2_CHUNK if chunk is None else chunk,
                )
            else:
                logits, iou = self._official(
                    features.embedding, points, labels, boxes, masks, multimask
                )
        dtype_out = features.embedding.dtype
        return DecodedMasks(logits.to(dtype_out), iou.to(dtype_out), _outputs(logits))

    # ------------------------------------------------------------------ training
    def decode_train(
        self,
        features: ChipFeatures,
        *,
        points: Tensor | None = None,
        labels: Tensor | None = None,
        boxes: Tensor | None = None,
        masks: Tensor | None = None,
        multimask: bool = True,
        chunk: int | None = None,
    ) -> DecodedMasks:
        """As :meth:`decode`, through the official forward with autograd (training).

        Gradients reach the trainable parameters (LoRA, a trained prompt encoder, HQ-SAM's
        parameters) and the features. A frozen prompt encoder runs without autograd. With no
        prompt at all, one row decodes SAM's "no prompt" embedding. ``chunk`` (HQ-SAM,
        SAM 2): prompts through the decoder together (None: all).
        """
        if self._sam2 is not None:
            logits, iou = self._sam2.decode(
                features,
                points=points,
                labels=labels,
                boxes=boxes,
                masks=masks,
                multimask=multimask,
                chunk=chunk,
            )
            return DecodedMasks(logits, iou, _outputs(logits))
        if self.hq == "off":
            embedding = features.embedding
            logits, iou = self._official(embedding, points, labels, boxes, masks, multimask)
            return DecodedMasks(logits, iou, _outputs(logits))
        fused = self.prepare(features).hq_features
        image_pe = self.prompt_encoder.get_dense_pe()
        count = _count(points, boxes, masks)
        step = max(1, count if chunk is None else chunk)
        hq_slot = self.mask_decoder.num_mask_tokens - 1  # SAM's 1 + 3 mask tokens, then HQ
        parts = []
        for start in range(0, max(count, 1), step):
            part = slice(start, start + step)
            sparse, dense = self._prompts(
                None if points is None else points[part],
                None if labels is None else labels[part],
                None if boxes is None else boxes[part],
                None if masks is None else masks[part],
            )
            all_masks, all_iou = self.mask_decoder.predict_masks(
                image_embeddings=features.embedding,
                image_pe=image_pe,
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                hq_features=fused,
            )
            parts.append(
                select_hq(
                    all_masks, all_iou, hq_slot=hq_slot, multimask_output=multimask, hq=self.hq
                )
            )
        columns = zip(*(hq_part for hq_part, _ in parts), strict=True)
        logits, iou, index = (torch.cat(column) for column in columns)
        sam_logits = torch.cat([sam_part for _, sam_part in parts])
        return DecodedMasks(logits, iou, index[:, None], sam_logits)

    # ------------------------------------------------------------------ official forward
    def _official(
        self,
        embedding: Tensor,
        points: Tensor | None,
        labels: Tensor | None,
        boxes: Tensor | None,
        masks: Tensor | None,
        multimask: bool,
    ) -> tuple[Tensor, Tensor]:
        sparse, dense = self._prompts(points, labels, boxes, masks)
        logits, iou = self.mask_decoder(
            image_embeddings=embedding,
            image_pe=self.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
        )
        return logits, iou

    def _prompts(
        self,
        points: Tensor | None,
        labels: Tensor | None,
        boxes: Tensor | None,
        masks: Tensor | None,
    ) -> tuple[Tensor, Tensor]:
        """The prompt encoder's sparse and dense embeddings (autograd only if it trains)."""
        if points is not None and labels is None:
            labels = torch.ones(points.shape[:2], dtype=torch.int64, device=points.device)
        trains = any(p.requires_grad for p in self.prompt_encoder.parameters())
        with torch.set_grad_enabled(torch.is_grad_enabled() and trains):
            sparse, dense = self.prompt_encoder(
                points=None if points is None else (points, labels), boxes=boxes, masks=masks
            )
        return sparse, dense


def _outputs(logits: Tensor) -> Tensor:
    """``(N, M)`` decoder output index of each of ``N x M`` masks: 0..M-1 per row."""
    return torch.arange(logits.shape[1], device=logits.device).expand(logits.shape[0], -1)


def _count(*prompts: Tensor | None) -> int:
    """Rows of the first prompt tensor given (0 when none)."""
    return next((int(p.shape[0]) for p in prompts if p is not None), 0)
