"""Zero-shot change detection by bitemporal latent matching (AnyChange, Zheng et al. 2024).

For each chip, SAM proposes object masks on each date. A mask's embedding on a date is
the mean of that date's SAM image embedding inside the mask; its change score is the
angle between its embeddings on the two dates. Matching is bidirectional: masks proposed
on date a and on date b are both compared on both dates. A pixel's score is the largest
angle of any mask covering it, divided by 180, so that the degree threshold ``t`` becomes
the probability threshold ``t / 180``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from rs_sam.data.pair import ChipPair
from rs_sam.errors import ConfigError
from rs_sam.models.decoding import ChipFeatures, SamDecoder, encoder_features
from rs_sam.models.decoding.features import images_per_pass
from rs_sam.models.mask_proposals import MaskProposals, ProposalSettings, propose_masks

if TYPE_CHECKING:
    from rs_sam.models.encoders import FrozenEncoder

#: Angle (degrees) above which a mask counts as changed: the torchange library default
#: (the paper reports 155 degrees).
DEFAULT_THRESHOLD_DEG = 145.0

#: Maps one image's features (embedding (1, C, E, E), SAM 2's high-resolution maps) to its
#: mask proposals.
Proposer = Callable[[ChipFeatures], MaskProposals]


@dataclass(frozen=True)
class ChipScore:
    """Per-pixel change score of one chip, on the chip's pixels."""

    probability: np.ndarray  # (S, S) float32 in [0, 1]: largest mask angle / 180
    valid: np.ndarray  # (S, S) bool
    proposals: int  # masks compared (both dates)
    # SAM-CD with semantic output: (k, S, S) latent-class probabilities of each date
    latent_a: np.ndarray | None = None
    latent_b: np.ndarray | None = None


def mask_embeddings(masks: Tensor, embedding: Tensor, weights: Tensor | None = None) -> Tensor:
    """Mean embedding inside each mask.

    Args:
        masks: (N, h, w) bool at an integer multiple of the embedding's side.
        embedding: (C, E, E) image embedding of one date.
        weights: optional (h, w) pixel weights (e.g. validity) applied inside the masks.

    Returns:
        (N, C) mean embedding per mask (zero where a mask has no weight).
    """
    side = embedding.shape[-1]
    soft = masks.float()
    if weights is not None:
        soft = soft * weights
    # Fraction of each embedding cell covered by the mask: (N, E, E).
    cover = F.adaptive_avg_pool2d(soft[:, None], (side, side))[:, 0]
    flat = cover.flatten(1)  # (N, E*E)
    sums = flat @ embedding.flatten(1).T  # (N, C)
    return sums / flat.sum(1, keepdim=True).clamp(min=1e-6)


def change_angles(
    masks: Tensor, embed_a: Tensor, embed_b: Tensor, weights: Tensor | None
) -> Tensor:
    """Angle in degrees between each mask's mean embedding on the two dates, (N,)."""
    unit_a = F.normalize(mask_embeddings(masks, embed_a, weights), dim=1)
    unit_b = F.normalize(mask_embeddings(masks, embed_b, weights), dim=1)
    # 2 atan2(|a - b|, |a + b|) is exact near 0 and 180 degrees, where arccos(cos) is not.
    angle = 2.0 * torch.atan2((unit_a - unit_b).norm(dim=1), (unit_a + unit_b).norm(dim=1))
    return torch.rad2deg(angle)


def score_chip(
    chip: ChipPair,
    image_a: np.ndarray,
    image_b: np.ndarray,
    encoder: FrozenEncoder,
    proposer: Proposer,
) -> ChipScore:
    """Change score of one chip: a pure function of the chip's pixels and the model.

    Args:
        chip: raw chip (for its size and validity mask).
        image_a, image_b: (3, S, S) float32 0..255 normalised images of both dates.
        encoder: frozen SAM-family encoder (must have a SAM image embedding).
        proposer: turns one image's features into mask proposals.
    """
    size = chip.window.size
    device = next(encoder.parameters()).device
    images = torch.from_numpy(np.stack([image_a, image_b])).to(device)
    # both dates in one pass, or one at a time for encoders whose activations are large
    features = encoder_features(encoder, images, per_pass=images_per_pass(encoder, 2))
    embeddings = features.embedding  # (2, C, E, E)
    proposals = [proposer(features.row(i)) for i in range(2)]
    masks = torch.cat([p.masks for p in proposals])  # (N, h, w)
    if len(masks) == 0:
        return ChipScore(np.zeros((size, size), np.float32), chip.valid, 0)
    low_side = masks.shape[-1]
    valid = torch.from_numpy(chip.valid).to(device=device, dtype=torch.float32)
    valid_low = F.interpolate(valid[None, None], size=(low_side, low_side), mode="area")[0, 0]
    angles = change_angles(masks, embeddings[0], embeddings[1], valid_low)
    # Largest angle over the masks covering each pixel (bidirectional: both dates' masks).
    score_low = (masks.float() * angles[:, None, None]).amax(0) / 180.0
    score = F.interpolate(score_low[None, None], size=(size, size), mode="bilinear")[0, 0]
    probability = score.clamp(0.0, 1.0).cpu().numpy().astype(np.float32)
    probability[~chip.valid] = 0.0
    return ChipScore(probability, chip.valid, len(masks))


def sam_proposer(encoder: FrozenEncoder, settings: ProposalSettings) -> Proposer:
    """The default proposer: SAM's own prompt encoder and mask decoder on a point grid."""
    if encoder.prompt_encoder is None or encoder.mask_decoder is None:
        raise ConfigError(
            f"encoder '{encoder.spec.name}' has no SAM prompt encoder and mask decoder; "
            "use a SAM encoder such as mobile_sam"
        )
    decoder = SamDecoder.for_encoder(encoder)

    def propose(features: ChipFeatures) -> MaskProposals:
        return propose_masks(decoder, features, settings=settings)

    return propose
