"""SAM 3 (transformers' ``Sam3Model``) as a :class:`ConceptSegmenter`.

Per chip, what ``Sam3Processor`` + ``Sam3Model`` + ``post_process_instance_segmentation`` do,
with torch on the chip's array (no PIL round trip):

* the chip is resized (bilinear, antialiased) to the model's square input (1008 px for the
  official model), scaled to 0..1 and normalised with mean = std = 0.5;
* the image features are computed once and shared by every query of the chip;
* a text is tokenised to 32 tokens (padded with the end token); a query of boxes alone gets
  the text ``"visual"``, as the processor does; text encodings are cached across chips;
* example boxes are normalised by the chip's size and given as ``(cx, cy, w, h)`` with
  labels 1 (positive) / 0 (negative);
* an instance's score is ``sigmoid(logit) * sigmoid(presence logit)``; its mask is the
  sigmoid of the mask logits resized (bilinear) to the chip and thresholded at 0.5.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from rs_sam.models.concepts.base import ConceptInstance, ConceptQuery
from rs_sam.models.concepts.sam3_config import TEXT_LENGTH

if TYPE_CHECKING:
    from transformers import CLIPTokenizer, Sam3Model

#: The text the processor gives a query of boxes alone.
VISUAL_TEXT = "visual"
#: ``post_process_instance_segmentation``'s default detection threshold.
DEFAULT_SCORE_THRESHOLD = 0.3
MASK_THRESHOLD = 0.5
_MEAN = _STD = 0.5  # IMAGENET_STANDARD_MEAN / _STD
_TEXT_CACHE = 64  # text encodings kept (one per distinct prompt)


class Sam3ConceptSegmenter:
    """Instances of text / example-box concepts in one chip, with a ``Sam3Model``.

    Args:
        model: The model (evaluation mode is set here).
        tokenizer: Its CLIP tokenizer.
        device: Where the model runs.
        score_threshold: Instances scoring at or below it are left out (0.3, as the
            processor's post-processing).
    """

    def __init__(
        self,
        model: Sam3Model,
        tokenizer: CLIPTokenizer,
        *,
        device: str | torch.device = "cpu",
        score_threshold: float = DEFAULT_SCORE_THRESHOLD,
    ) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.score_threshold = float(score_threshold)
        self.image_size = int(model.config.vision_config.backbone_config.image_size)
        self._texts: dict[str, Any] = {}

    def __call__(
        self, image: np.ndarray, queries: Sequence[ConceptQuery]
    ) -> list[list[ConceptInstance]]:
        """Instances of each query in ``image`` ((3, S, S) float RGB 0..255), best first."""
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"a chip must be (3, S, S) RGB, got shape {tuple(image.shape)}")
        if not queries:
            return []
        size = (int(image.shape[1]), int(image.shape[2]))
        with torch.inference_mode():
            vision = self.model.get_vision_features(pixel_values=self.preprocess(image))
            return [self._query(vision, query, size) for query in queries]

    def preprocess(self, image: np.ndarray) -> Tensor:
        """The chip as the model's input: (1, 3, size, size), resized and normalised."""
        pixels = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None]
        pixels = pixels.to(self.device)
        if tuple(pixels.shape[-2:]) != (self.image_size, self.image_size):
            pixels = F.interpolate(
                pixels,
                size=(self.image_size, self.image_size),
                mode="bilinear",
                align_corners=False,
                antialias=True,
            )
        return (pixels / 255.0 - _MEAN) / _STD

    def _text(self, text: str) -> tuple[Any, Tensor]:
        """The text encoder's output and attention mask for ``text`` (cached)."""
        cached = self._texts.get(text)
        if cached is None:
            tokens = self.tokenizer(
                [text],
                padding="max_length",
                max_length=TEXT_LENGTH,
                truncation=True,
                return_tensors="pt",
            )
            input_ids = tokens["input_ids"].to(self.device)
            mask = tokens["attention_mask"].to(self.device)
            embeds = self.model.get_text_features(
                input_ids=input_ids, attention_mask=mask, return_dict=True
            )
            if len(self._texts) >= _TEXT_CACHE:
                self._texts.pop(next(iter(self._texts)))
            cached = self._texts[text] = (embeds, mask)
        return cached

    def _boxes(self, query: ConceptQuery, size: tuple[int, int]) -> dict[str, Tensor]:
        """``input_boxes`` (normalised cx, cy, w, h) and ``input_boxes_labels`` of a query."""
        if not query.boxes:
            return {}
        height, width = size
        xyxy = torch.tensor(query.boxes, dtype=torch.float32, device=self.device)
        xyxy = xyxy / torch.tensor([width, height, width, height], device=self.device)
        x0, y0, x1, y1 = xyxy.unbind(-1)
        cxcywh = torch.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], dim=-1)
        labels = torch.tensor([[int(p) for p in query.positive]], device=self.device)
        return {"input_boxes": cxcywh[None], "input_boxes_labels": labels}

    def _query(
        self, vision: Any, query: ConceptQuery, size: tuple[int, int]
    ) -> list[ConceptInstance]:
        text_embeds, mask = self._text(query.text if query.text is not None else VISUAL_TEXT)
        outputs = self.model(
            vision_embeds=vision,
            text_embeds=text_embeds,
            attention_mask=mask,
            **self._boxes(query, size),
        )
        return self.postprocess(outputs, size)

    def postprocess(self, outputs: Any, size: tuple[int, int]) -> list[ConceptInstance]:
        """Instances above the threshold, best first: masks at the chip's size, scores 0..1."""
        scores = outputs.pred_logits[0].sigmoid()
        if outputs.presence_logits is not None:
            scores = scores * outputs.presence_logits[0].sigmoid()
        keep = torch.nonzero(scores > self.score_threshold).flatten()
        if keep.numel() == 0:
            return []
        keep = keep[torch.argsort(scores[keep], descending=True)]
        probs = outputs.pred_masks[0, keep].sigmoid()[None]
        probs = F.interpolate(probs, size=size, mode="bilinear", align_corners=False)[0]
        masks = (probs > MASK_THRESHOLD).cpu().numpy()
        values = scores[keep].float().cpu().tolist()
        return [
            ConceptInstance(mask=mask, score=float(score))
            for mask, score in zip(masks, values, strict=True)
        ]
