"""SAM 2's prompt encoder and mask decoder (transformers' modules), as :class:`SamDecoder` uses.

The computation is transformers' ``Sam2Model.forward`` after its image encoder (the same as
Meta's ``SAM2ImagePredictor``): the prompt encoder's sparse and dense embeddings, then the
mask decoder on the chip's embedding with SAM 2's high-resolution features
(:attr:`ChipFeatures.high_res`) and the image-wide positional encoding. As there:

* points are padded with a "not a point" token when no box is given; without points or box
  (mask prompts only, or no prompt at all: one row) an empty point labelled -1 stands in;
* ``multimask`` gives the three ambiguity masks; without it the single mask, replaced by the
  best ambiguity mask when its stability is low (SAM 2's ``dynamic_multimask_via_stability``);
* the object score head's logits are not used (the image predictor does not use them either).

``N`` prompts on one chip are one image with ``N`` prompt rows (transformers' "point batch");
with mask prompts, whose dense embedding differs per prompt, each prompt is its own image row
(the embedding expanded, not copied). Prompts go through the decoder in chunks: the decoder
holds per prompt a copy of the embedding and of the upscaled maps (about 30 MiB for a
1024-pixel input).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from rs_sam.models.decoding.features import ChipFeatures

__all__ = ["DEFAULT_SAM2_CHUNK", "Sam2Heads"]

#: Prompts decoded together by default at inference.
DEFAULT_SAM2_CHUNK = 16


class Sam2Heads:
    """SAM 2's prompt encoder and mask decoder of one :class:`Sam2Parts` model.

    Args:
        sam: The encoder's ``sam`` module (``prompt_encoder``, ``mask_decoder``,
            ``dense_pe()``).
    """

    def __init__(self, sam: Any) -> None:
        self.sam = sam

    @property
    def input_size(self) -> int:
        """Side of the model input: the frame of prompt coordinates."""
        return int(self.sam.prompt_encoder.input_image_size)

    @property
    def mask_input_size(self) -> int:
        """Side of the prompt encoder's mask input."""
        return int(self.sam.prompt_encoder.mask_input_size[0])

    def decode(
        self,
        features: ChipFeatures,
        *,
        points: Tensor | None,
        labels: Tensor | None,
        boxes: Tensor | None,
        masks: Tensor | None,
        multimask: bool,
        chunk: int | None,
    ) -> tuple[Tensor, Tensor]:
        """Logits ``(N, M, 4E, 4E)`` and predicted IoU ``(N, M)`` of ``N`` prompts on one chip.

        Autograd follows the caller's mode (the prompt encoder's only if it trains). ``chunk``:
        prompts through the decoder together (None: all).

        Raises:
            ValueError: Features without SAM 2's high-resolution maps, or of several chips.
        """
        embedding, high_res = features.embedding, features.high_res
        if high_res is None or len(high_res) != 2:
            raise ValueError(
                "SAM 2 decoding needs the chip's high-resolution features "
                "(ChipFeatures.high_res): pass SamDecoder.for_encoder(encoder).features(chip)"
            )
        if embedding.ndim != 4 or embedding.shape[0] != 1:
            raise ValueError(f"embedding must be (1, C, E, E), got {tuple(embedding.shape)}")
        given = [p for p in (points, boxes, masks) if p is not None]
        count = int(given[0].shape[0]) if given else 1  # no prompt: one empty point
        side = 4 * embedding.shape[-1]
        if count == 0:
            empty = embedding.new_empty((0, 3 if multimask else 1, side, side))
            return empty, embedding.new_empty((0, empty.shape[1]))
        if points is not None and labels is None:
            labels = torch.ones(points.shape[:2], dtype=torch.int64, device=points.device)
        if points is None and boxes is None:  # mask prompts only, or none: an empty point
            points = embedding.new_zeros((count, 1, 2))
            labels = torch.full((count, 1), -1, dtype=torch.int64, device=embedding.device)
        with torch.no_grad():
            image_pe = self.sam.dense_pe()
        step = max(1, count if chunk is None else chunk)
        parts = []
        for start in range(0, count, step):
            rows = slice(start, start + step)
            parts.append(
                self._forward(
                    embedding,
                    high_res,
                    image_pe,
                    None if points is None else points[rows],
                    None if labels is None else labels[rows],
                    None if boxes is None else boxes[rows],
                    None if masks is None else masks[rows],
                    multimask,
                )
            )
        logits, iou = (torch.cat(column) for column in zip(*parts, strict=True))
        return logits, iou

    def _forward(
        self,
        embedding: Tensor,
        high_res: tuple[Tensor, ...],
        image_pe: Tensor,
        points: Tensor | None,
        labels: Tensor | None,
        boxes: Tensor | None,
        masks: Tensor | None,
        multimask: bool,
    ) -> tuple[Tensor, Tensor]:
        prompt_encoder = self.sam.prompt_encoder
        # Without mask prompts: one image, n prompt rows. With them: n images of one row each.
        per_image = masks is not None
        n = next(int(p.shape[0]) for p in (points, boxes, masks) if p is not None)
        lead = (n, 1) if per_image else (1, n)
        trains = any(p.requires_grad for p in prompt_encoder.parameters())
        with torch.set_grad_enabled(torch.is_grad_enabled() and trains):
            sparse, dense = prompt_encoder(
                input_points=None if points is None else points.reshape(*lead, *points.shape[1:]),
                input_labels=None if labels is None else labels.reshape(*lead, *labels.shape[1:]),
                input_boxes=None if boxes is None else boxes.reshape(*lead, 4),
                input_masks=masks,
            )
        images = lead[0]
        logits, iou, _, _ = self.sam.mask_decoder(
            image_embeddings=embedding.expand(images, -1, -1, -1),
            image_positional_embeddings=image_pe.expand(images, -1, -1, -1),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
            high_resolution_features=[h.expand(images, -1, -1, -1) for h in high_res],
        )
        # (images, rows, M, 4E, 4E) -> (n, M, 4E, 4E)
        return logits.flatten(0, 1), iou.flatten(0, 1)
