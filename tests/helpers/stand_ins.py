"""Stand-ins for SAM in tests: transparent encoders, mask generators, decoder weights."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import rasterio.features
import torch
import torch.nn.functional as F
from torch import nn

from rs_sam.change import chip_tasks
from rs_sam.models import recipe
from rs_sam.models.concepts import ConceptInstance, ConceptQuery
from rs_sam.models.mask_proposals import MaskProposals
from rs_sam.segmentation.objects import ChipMask

BRIGHT = 200


class ColourEncoder(nn.Module):
    """A transparent stand-in for SAM: the embedding is the local mean colour, centred."""

    input_size = 64

    def __init__(self) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1), requires_grad=False)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        small = F.interpolate(images, size=(16, 16), mode="area")  # (B, 3, 16, 16)
        return small - 128.0


def block_proposer(encoder: object, settings: object) -> Callable[[torch.Tensor], MaskProposals]:
    """A stand-in for SAM's mask proposals: a fixed 8 x 8 grid of square masks."""

    def propose(embedding: torch.Tensor) -> MaskProposals:
        side, blocks = 64, 8
        cell = side // blocks
        masks = torch.zeros(blocks * blocks, side, side, dtype=torch.bool)
        for i in range(blocks):
            for j in range(blocks):
                masks[i * blocks + j, i * cell : (i + 1) * cell, j * cell : (j + 1) * cell] = True
        ones = torch.ones(len(masks))
        return MaskProposals(masks, ones, ones)

    return propose


def use_transparent_model(setattr: Callable[..., None]) -> None:
    """Make detect-change run ColourEncoder and block_proposer (pass monkeypatch.setattr): its
    polygons then lie where the colour changed, within one 12 px block of a 96 px chip."""
    setattr(recipe, "load_encoder", lambda name, **kwargs: ColourEncoder())
    setattr(chip_tasks, "sam_proposer", block_proposer)


def blobs(image: np.ndarray) -> Iterator[ChipMask]:
    """One mask per 4-connected bright blob of the chip (a stand-in for SAM)."""
    bright = image[0] > BRIGHT
    for geometry, _ in rasterio.features.shapes(bright.view(np.uint8), mask=bright, connectivity=4):
        mask = rasterio.features.rasterize([geometry], out_shape=bright.shape).astype(bool)
        yield ChipMask(mask=mask, score=0.9, stability=0.95)


def blob_scene(height: int = 150, width: int = 170) -> np.ndarray:
    """Dark texture with bright rectangles: small ones, ones across chip borders, a big one."""
    rng = np.random.default_rng(0)
    image = rng.integers(20, 120, (3, height, width)).astype(np.uint8)
    for r0, r1, c0, c1 in [
        (5, 15, 5, 20),  # inside the first chip
        (40, 60, 55, 75),  # across the first vertical chip border (chip 64, overlap 16)
        (44, 54, 100, 110),  # inside the overlap of two chips
        (90, 140, 20, 150),  # larger than the overlap: cut in every chip that sees it
        (140, 150, 160, 170),  # at the raster's corner
    ]:
        image[:, r0:r1, c0:c1] = 250
    return image


@torch.no_grad()
def randomise_weights(module: nn.Module) -> None:
    """Weights larger than the default init, so that attention is far from uniform and
    LayerNorm affine terms, biases and embeddings all matter."""
    for sub in module.modules():
        for name, p in sub.named_parameters(recurse=False):
            if isinstance(sub, nn.Embedding):
                p.normal_()
            elif name == "bias":
                p.normal_(0.0, 0.5)
            elif p.ndim == 1:  # LayerNorm / LayerNorm2d weights
                p.normal_(1.0, 0.3)
            else:
                fan_in = p.shape[0] if isinstance(sub, nn.ConvTranspose2d) else p[0].numel()
                p.normal_(0.0, 1.5 / math.sqrt(fan_in))


def ragged_at_chip_edges(masks: Iterator[ChipMask], width: int = 2) -> Iterator[ChipMask]:
    """The masks, each widened by ``width`` pixels along every chip edge it touches.

    A stand-in for how SAM's view of an object cut by the chip edge differs from the view of
    a chip that sees it whole: the cut view is wrong exactly where the chip ends.
    """
    for item in masks:
        mask = item.mask.copy()
        for turn in range(4):  # each chip edge in turn as the top row (rot90 views write through)
            seen, ragged = np.rot90(item.mask, turn), np.rot90(mask, turn)
            if seen[0].any():
                cols = np.flatnonzero(seen[:width].any(axis=0))
                ragged[:width, max(cols[0] - width, 0) : cols[-1] + width + 1] = True
        yield ChipMask(mask=mask, score=item.score, stability=item.stability)


def grown_regions(image: np.ndarray) -> Iterator[ChipMask]:
    """One mask per bright value's 4-connected region, grown by one pixel (a stand-in for
    SAM that tells touching objects apart by colour; neighbours' masks overlap by 2 px)."""
    band = image[0]
    for value in np.unique(band[band > BRIGHT]):
        region = band == value
        for geometry, _ in rasterio.features.shapes(
            region.view(np.uint8), mask=region, connectivity=4
        ):
            mask = rasterio.features.rasterize([geometry], out_shape=region.shape).astype(bool)
            grown = mask.copy()
            grown[1:] |= mask[:-1]
            grown[:-1] |= mask[1:]
            grown[:, 1:] |= mask[:, :-1]
            grown[:, :-1] |= mask[:, 1:]
            yield ChipMask(mask=grown, score=0.9, stability=0.95)


class BlobConcepts:
    """Every bright blob is an instance of every query; records the queries it was asked."""

    def __init__(self, score: float = 0.9) -> None:
        self.score = score
        self.asked: list[ConceptQuery] = []

    def __call__(
        self, image: np.ndarray, queries: Sequence[ConceptQuery]
    ) -> list[list[ConceptInstance]]:
        self.asked.extend(queries)
        found = [ConceptInstance(m.mask, self.score) for m in blobs(image)]
        return [list(found) for _ in queries]
