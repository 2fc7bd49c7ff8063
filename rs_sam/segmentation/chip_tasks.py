"""segment's per-chip tasks: SAM objects, prompts of one chip, semantic classes.

Each task is a small picklable value (a test may give it a live stand-in model instead);
the engine builds its model once per process from the run's
:class:`~rs_sam.models.recipe.ModelRecipe` (:meth:`build_model`) and calls :meth:`compute`
for every chip (see :mod:`rs_sam.inference.jobs`).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

import numpy as np
import torch

from rs_sam.data.grid import ChipWindow, RasterGrid
from rs_sam.data.normalize import JointStretch
from rs_sam.data.scene import ChipImage
from rs_sam.devices import resolve_device
from rs_sam.models.concepts import ConceptQuery, ConceptSegmenter
from rs_sam.models.decoding import HqMode, SamDecoder, hq_encoder_error
from rs_sam.models.encoders import FrozenEncoder
from rs_sam.models.mask_proposals import ProposalSettings
from rs_sam.models.recipe import ModelRecipe, build_encoder
from rs_sam.models.trained import TrainedSegmentModel, build_segment_model
from rs_sam.segmentation.exemplars import Exemplar
from rs_sam.segmentation.objects import (
    ChipMask,
    ChipObject,
    MaskGenerator,
    SamMaskGenerator,
    chip_objects,
    mask_polygon,
)
from rs_sam.segmentation.prompted import Multimask, decode_prompts, shift_prompt
from rs_sam.segmentation.prompts import Prompt

#: One prompt chip's result: output rows, and the ids of prompts whose masks were empty.
PromptRows = tuple[list[dict[str, object]], list[object]]


@dataclass(frozen=True)
class SamObjectsTask:
    """SAM automatic mask generation of a chip, as objects in map coordinates.

    ``generator`` replaces SAM (tests, experiments); by default it is built from the recipe.
    """

    grid: RasterGrid
    proposals: ProposalSettings
    hq: HqMode = "off"
    generator: MaskGenerator | None = None

    @property
    def model_key(self) -> Hashable:
        return (self.proposals, self.hq, _identity(self.generator))

    def build_model(self, recipe: ModelRecipe) -> MaskGenerator:
        if self.generator is not None:
            return self.generator
        return SamMaskGenerator(build_encoder(recipe), self.proposals, hq=self.hq)

    def compute(
        self, model: MaskGenerator, chip: ChipImage, stretch: JointStretch
    ) -> list[ChipObject]:
        if not chip.valid.any():
            return []
        masks = model(stretch.apply(chip.image))
        return chip_objects(masks, chip.window, chip.valid, self.grid)


@dataclass(frozen=True)
class PromptTask:
    """SAM masks of the prompts of one chip (in raster pixels), one row per kept mask.

    ``encoder`` is an already loaded SAM encoder (default: built from the recipe).
    """

    grid: RasterGrid
    prompts: tuple[Prompt, ...]
    multimask: Multimask = "best"
    hq: HqMode = "off"
    encoder: FrozenEncoder | None = None

    @property
    def model_key(self) -> Hashable:
        return (self.hq, _identity(self.encoder))

    def build_model(self, recipe: ModelRecipe) -> FrozenEncoder:
        encoder = self.encoder if self.encoder is not None else build_encoder(recipe)
        if self.hq != "off" and encoder.hq_decoder is None:
            raise hq_encoder_error(encoder.spec.name)
        return encoder

    def compute(self, model: FrozenEncoder, chip: ChipImage, stretch: JointStretch) -> PromptRows:
        window = chip.window
        image = torch.from_numpy(stretch.apply(chip.image))[None]
        with torch.inference_mode():
            features = SamDecoder.for_encoder(model, self.hq).features(image)
        decoded = decode_prompts(
            model,
            features,
            [shift_prompt(p, window) for p in self.prompts],
            window.size,
            self.multimask,
            hq=self.hq,
        )
        transform = self.grid.window_transform(window)
        rows: list[dict[str, object]] = []
        empty: list[object] = []
        for prompt, masks in zip(self.prompts, decoded, strict=True):
            for item in masks:
                mask = item.mask & chip.valid
                if not mask.any():
                    empty.append(prompt.id)
                    continue
                rows.append(
                    {
                        "prompt_id": prompt.id,
                        "mask_index": item.index,
                        "score": item.score,
                        "geometry": mask_polygon(mask, transform),
                    }
                )
        return rows, empty


@dataclass(frozen=True)
class SemanticTask:
    """Per-class probabilities of a chip from the recipe's trained UNetFormer."""

    @property
    def model_key(self) -> Hashable:
        return None

    def build_model(self, recipe: ModelRecipe) -> TrainedSegmentModel:
        return build_segment_model(recipe)

    def compute(
        self, model: TrainedSegmentModel, chip: ChipImage, stretch: JointStretch
    ) -> tuple[np.ndarray, np.ndarray]:
        return model.probabilities(stretch.apply(chip.image)), chip.valid


def _identity(value: object) -> Hashable:
    """A live stand-in is one model: keyed by identity (it need not be hashable)."""
    return None if value is None else ("id", id(value))


@dataclass(frozen=True)
class ConceptTask:
    """Instances of each concept (text, example boxes) in a chip, as objects per prompt label.

    Every text is one query (with the example boxes inside the chip, if any); boxes alone are
    one query labelled ``exemplar``, asked only of chips that hold an example box.
    ``segmenter`` replaces SAM 3 (tests); by default it is built from the recipe.
    """

    grid: RasterGrid
    texts: tuple[str, ...]
    exemplars: tuple[Exemplar, ...] = ()
    score_thresh: float = 0.5
    segmenter: ConceptSegmenter | None = None

    @property
    def model_key(self) -> Hashable:
        return (_identity(self.segmenter), self.score_thresh)

    def build_model(self, recipe: ModelRecipe) -> ConceptSegmenter:
        if self.segmenter is not None:
            return self.segmenter
        from rs_sam.models import concepts

        return concepts.load_concept_segmenter(
            recipe.encoder,
            weights=recipe.weights,
            checkpoint=recipe.checkpoint,
            device=resolve_device(recipe.device),
            tiny=recipe.tiny,
            score_threshold=self.score_thresh,  # the model drops less confident ones itself
        )

    def queries(self, window: ChipWindow) -> list[ConceptQuery]:
        """This chip's queries: one per text, or the example boxes alone."""
        boxes, positive = [], []
        for exemplar in self.exemplars:
            box = exemplar.in_chip(window)
            if box is not None:
                boxes.append(box)
                positive.append(exemplar.positive)
        shared = {"boxes": tuple(boxes), "positive": tuple(positive)}
        if self.texts:
            return [ConceptQuery(label=text, text=text, **shared) for text in self.texts]
        return [ConceptQuery(label="exemplar", **shared)] if any(positive) else []

    def compute(
        self, model: ConceptSegmenter, chip: ChipImage, stretch: JointStretch
    ) -> dict[str, list[ChipObject]]:
        queries = self.queries(chip.window)
        if not queries or not chip.valid.any():
            return {}
        found = model(stretch.apply(chip.image), queries)
        return {
            query.label: chip_objects(
                (ChipMask(i.mask, i.score, 1.0) for i in instances if i.score >= self.score_thresh),
                chip.window,
                chip.valid,
                self.grid,
            )
            for query, instances in zip(queries, found, strict=True)
        }
