"""Objects of one chip: SAM automatic masks at chip resolution, as map-coordinate polygons.

A chip's masks come from a :class:`MaskGenerator` (SAM's automatic mask generation by
default; tests plug in deterministic ones). Each mask is kept on the raster's pixel grid
(:class:`~rs_sam.segmentation.pixel_masks.PixelMask`), flagged ``cut`` when it touches a
chip edge that lies inside the raster: the object probably continues in the neighbouring
chip, and :mod:`rs_sam.segmentation.merge` joins it with its other parts before it is
drawn as a polygon, once.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import rasterio.features
import shapely
import torch
import torch.nn.functional as F
from affine import Affine
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

from rs_sam.data.grid import ChipWindow, RasterGrid
from rs_sam.errors import ConfigError
from rs_sam.models.decoding import HQ_MODES, HqMode, SamDecoder, hq_encoder_error
from rs_sam.models.encoders import FrozenEncoder
from rs_sam.models.mask_proposals import ProposalSettings, propose_masks
from rs_sam.segmentation.pixel_masks import PixelMask


@dataclass(frozen=True)
class ChipMask:
    """One mask of a chip, at the chip's resolution."""

    mask: np.ndarray  # (S, S) bool
    score: float  # predicted IoU
    stability: float


class MaskGenerator(Protocol):
    """Masks of one normalised chip ``(3, S, S)`` float32 0..255, best first."""

    def __call__(self, image: np.ndarray) -> Iterator[ChipMask]: ...


class SamMaskGenerator:
    """SAM automatic mask generation (grid of point prompts, IoU/stability filters, box NMS).

    The chip's embedding is computed once; prompts are decoded in batches; the kept masks'
    logits are upsampled to the chip size one at a time (memory does not grow with the
    number of masks).

    Args:
        encoder: a SAM-family encoder.
        settings: grid, batch and filter settings.
        hq: ``"off"``: SAM's decoder; ``"add"``/``"only"``: HQ-SAM decoding (SAM's logits plus
            the HQ token's, or the HQ token's alone; one mask per point), which needs an
            HQ-SAM encoder (``sam_hq_*``).

    Raises:
        ValueError: the encoder has no SAM mask decoder.
        ConfigError: ``hq`` unknown, or on with an encoder that is not HQ-SAM.
    """

    def __init__(
        self, encoder: FrozenEncoder, settings: ProposalSettings, *, hq: HqMode = "off"
    ) -> None:
        if encoder.prompt_encoder is None or encoder.mask_decoder is None:
            raise ValueError(f"encoder '{encoder.spec.name}' has no SAM mask decoder")
        if hq not in HQ_MODES:
            raise ConfigError(f"hq {hq!r} is unknown; use one of {', '.join(HQ_MODES)}")
        if hq != "off" and encoder.hq_decoder is None:
            raise hq_encoder_error(encoder.spec.name)
        self.encoder = encoder
        self.settings = settings
        self.hq = hq
        self.decoder = SamDecoder.for_encoder(encoder, hq)

    @torch.inference_mode()
    def __call__(self, image: np.ndarray) -> Iterator[ChipMask]:
        size = image.shape[-1]
        tensor = torch.from_numpy(np.ascontiguousarray(image))[None]
        proposals = propose_masks(
            self.decoder, self.decoder.features(tensor), settings=self.settings, keep_logits=True
        )
        assert proposals.logits is not None  # asked for above
        for logits, score, stability in zip(
            proposals.logits, proposals.scores, proposals.stability, strict=True
        ):
            # The chip was resized (square to square) to the model input: the low-res
            # logits cover the whole chip, so one bilinear resize maps them onto its pixels.
            full = F.interpolate(
                logits[None, None].float(), size=(size, size), mode="bilinear", align_corners=False
            )[0, 0]
            yield ChipMask(
                mask=(full > 0).cpu().numpy(), score=float(score), stability=float(stability)
            )


@dataclass(frozen=True)
class ChipObject:
    """One object found in one chip, on the raster's pixel grid."""

    mask: PixelMask
    score: float
    stability: float
    pixels: int  # mask pixels inside the chip's valid area
    cut: bool  # touches a chip edge inside the raster: the object may continue there


def chip_objects(
    masks: Iterator[ChipMask],
    window: ChipWindow,
    valid: np.ndarray,
    grid: RasterGrid,
    *,
    min_pixels: int = 1,
) -> list[ChipObject]:
    """A chip's masks (restricted to its valid pixels) on the raster's grid, flagged when cut."""
    edges = _interior_edges(window, grid)
    objects = []
    for item in masks:
        mask = item.mask & valid
        pixels = int(mask.sum())
        if pixels == 0 or pixels < min_pixels:
            continue
        pixel_mask = PixelMask.from_array(mask, window.row_off, window.col_off)
        assert pixel_mask is not None  # the mask has pixels
        cut = bool(
            (edges[0] and mask[0].any())
            or (edges[1] and mask[-1].any())
            or (edges[2] and mask[:, 0].any())
            or (edges[3] and mask[:, -1].any())
        )
        objects.append(ChipObject(pixel_mask, item.score, item.stability, pixels, cut))
    return objects


def mask_polygon(mask: np.ndarray, transform: Affine) -> BaseGeometry:
    """The (multi)polygon of a non-empty boolean mask's pixels, through ``transform``."""
    parts = [
        shape(geometry)
        for geometry, _ in rasterio.features.shapes(
            mask.view(np.uint8), mask=mask, connectivity=4, transform=transform
        )
    ]
    return parts[0] if len(parts) == 1 else shapely.union_all(parts)


def _interior_edges(window: ChipWindow, grid: RasterGrid) -> tuple[bool, bool, bool, bool]:
    """Which of the chip's top, bottom, left, right edges lie inside the raster.

    An edge that lies past the raster's edge is padding; its valid pixels end at the
    raster's edge, which is a real border of the image, not a cut.
    """
    return (
        window.row_off > 0,
        window.row_off + window.size < grid.height,
        window.col_off > 0,
        window.col_off + window.size < grid.width,
    )
