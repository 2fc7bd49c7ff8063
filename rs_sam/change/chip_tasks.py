"""detect-change's per-chip tasks: zero-shot AnyChange scores, or a trained SAM-CD head.

Each task is a small picklable value; the engine builds its model once per process from the
run's :class:`~rs_sam.models.recipe.ModelRecipe` (:meth:`build_model`) and calls
:meth:`compute` for every chip (see :mod:`rs_sam.inference.jobs`).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

from rs_sam.change.anychange import ChipScore, Proposer, sam_proposer, score_chip
from rs_sam.data.normalize import JointStretch
from rs_sam.data.pair import ChipPair
from rs_sam.models.encoders import FrozenEncoder
from rs_sam.models.mask_proposals import ProposalSettings
from rs_sam.models.recipe import ModelRecipe, build_encoder
from rs_sam.models.trained import TrainedChangeModel, build_change_model


@dataclass(frozen=True)
class ZeroShotChangeTask:
    """AnyChange latent matching of a chip pair with the recipe's SAM encoder."""

    proposals: ProposalSettings

    @property
    def model_key(self) -> Hashable:
        return self.proposals

    def build_model(self, recipe: ModelRecipe) -> tuple[FrozenEncoder, Proposer]:
        encoder = build_encoder(recipe)
        return encoder, sam_proposer(encoder, self.proposals)

    def compute(
        self, model: tuple[FrozenEncoder, Proposer], chip: ChipPair, stretch: JointStretch
    ) -> ChipScore:
        encoder, proposer = model
        image_a, image_b = stretch.apply(chip.image_a), stretch.apply(chip.image_b)
        return score_chip(chip, image_a, image_b, encoder, proposer)


@dataclass(frozen=True)
class TrainedChangeTask:
    """Change probability (and with ``semantic`` latent classes) from the recipe's SAM-CD head."""

    semantic: bool = False

    @property
    def model_key(self) -> Hashable:
        return None

    def build_model(self, recipe: ModelRecipe) -> TrainedChangeModel:
        return build_change_model(recipe)

    def compute(
        self, model: TrainedChangeModel, chip: ChipPair, stretch: JointStretch
    ) -> ChipScore:
        """A pure function of the chip's pixels and the model."""
        probability, latent_a, latent_b = model.predict(
            stretch.apply(chip.image_a), stretch.apply(chip.image_b), semantic=self.semantic
        )
        probability[~chip.valid] = 0.0
        if not self.semantic:
            return ChipScore(probability, chip.valid, proposals=0)
        return ChipScore(
            probability, chip.valid, proposals=0, latent_a=latent_a, latent_b=latent_b
        )
