"""Stand-ins for SAM in tests: transparent encoders, mask generators, decoder weights."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import rasterio.features
import torch
import torch.nn.functional as F
from torch import nn

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
