"""The approximate proposal modes against exact decoding: prompts, time, masks changed.

For each image (the NAIP pair's two dates, one 1024² chip each; or a synthetic scene) the
chip is encoded once, then SAM's automatic mask proposals are made exactly (every grid
point, float32), with ``decoder_precision="bfloat16"``, and with ``skip_covered`` at each
threshold given. Printed per run: point prompts decoded, proposal time (decoding, filters,
NMS) and its ratio to the encoder time, masks kept after the filters and NMS, and how they
differ from the exact ones: an exact mask is "kept" when a mask of the run overlaps it with
IoU >= --match-iou, else "lost"; a run's mask without such a match is "new". For bfloat16,
every grid point's masks are also compared one to one with float32's (before any filter):
the smallest and mean IoU, the share of mask pixels that flip, the largest change of
predicted IoU. Reported, never asserted.

With random weights (the only weights on these machines) the masks are not a real model's:
the figures measure the mechanism, not what a trained SAM loses.

    RS_SAM_DATA_DIR=../shared/data python benchmarks/approximate.py
    python benchmarks/approximate.py --synthetic --thresholds 0.95 0.9 --filters default
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from rs_sam.models.decoding import SamDecoder
from rs_sam.models.mask_proposals import (
    MaskProposals,
    ProposalSettings,
    point_grid,
    propose_masks,
)
from rs_sam.models.recipe import ModelRecipe, build_encoder


def naip_chips(size: int) -> list[tuple[str, np.ndarray]]:
    """The NAIP pair's first three bands, top-left chip of ``size`` (zero-padded)."""
    import rasterio

    root = os.environ.get("RS_SAM_DATA_DIR")
    if not root:
        sys.exit("needs RS_SAM_DATA_DIR (the shared real-data folder), or --synthetic")
    chips = []
    for path in sorted((Path(root) / "rasters" / "naip").glob("*.tif"))[:2]:
        with rasterio.open(path) as src:
            data = src.read((1, 2, 3), window=((0, size), (0, size))).astype(np.float32)
        chip = np.zeros((3, size, size), np.float32)
        chip[:, : data.shape[1], : data.shape[2]] = data
        chips.append((path.name, chip))
    return chips


def synthetic_chip(size: int) -> list[tuple[str, np.ndarray]]:
    """A scene of rectangles on a textured background (as benchmarks/segment.py draws)."""
    rng = np.random.default_rng(0)
    chip = rng.normal(110.0, 12.0, (3, size, size)).astype(np.float32)
    for _ in range(40):
        y, x = rng.integers(0, size - 64, 2)
        h, w = rng.integers(16, 160, 2)
        chip[:, y : y + h, x : x + w] = rng.uniform(0.0, 255.0, (3, 1, 1))
    return [("synthetic", chip.clip(0, 255))]


def mask_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(A, B) IoU between two stacks of boolean masks."""
    fa, fb = a.flatten(1).float(), b.flatten(1).float()
    inter = fa @ fb.t()
    union = fa.sum(1)[:, None] + fb.sum(1)[None, :] - inter
    return inter / union.clamp(min=1)


def compare(exact: MaskProposals, run: MaskProposals, match_iou: float) -> tuple[int, int, int]:
    """(exact masks kept, lost, new masks)."""
    if len(exact) == 0 or len(run) == 0:
        return 0, len(exact), len(run)
    iou = mask_iou(exact.masks, run.masks)
    kept = int((iou.amax(1) >= match_iou).sum())
    new = int((iou.amax(0) < match_iou).sum())
    return kept, len(exact) - kept, new


def per_prompt(decoder: SamDecoder, features, settings: ProposalSettings) -> str:
    """bfloat16 against float32, mask by mask over the whole grid (no filter)."""
    points = point_grid(settings.points_per_side, decoder.input_size)[:, None, :]
    exact = decoder.decode(features, points=points)
    low = decoder.decode(features, points=points, dtype=torch.bfloat16)
    a, b = exact.logits > 0, low.logits > 0
    inter = (a & b).flatten(2).sum(-1).float()
    union = (a | b).flatten(2).sum(-1).float()
    iou = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))
    return (
        f"bfloat16 vs float32, {iou.numel()} masks: IoU min {iou.min():.4f} mean "
        f"{iou.mean():.4f}; pixels flipped {(a != b).float().mean() * 100:.3f} %; predicted "
        f"IoU max change {(exact.iou - low.iou).abs().max():.4f}; logits max change "
        f"{(exact.logits - low.logits).abs().max():.4f} (largest |logit| "
        f"{exact.logits.abs().max():.3f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="mobile_sam")
    parser.add_argument("--synthetic", action="store_true", help="a synthetic scene, no data")
    parser.add_argument("--points-per-side", type=int, default=16)
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.95, 0.9, 0.8])
    parser.add_argument("--filters", choices=("zero", "default"), default="zero")
    parser.add_argument("--match-iou", type=float, default=0.9)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    encoder = build_encoder(ModelRecipe(args.encoder, weights="random", device="cpu"))
    decoder = SamDecoder.for_encoder(encoder)
    size = decoder.input_size
    base = ProposalSettings(points_per_side=args.points_per_side)
    if args.filters == "zero":
        base = dataclasses.replace(base, pred_iou_thresh=0.0, stability_thresh=0.0)
    print(
        f"{args.encoder} (random weights), points/side={args.points_per_side}, filters "
        f"{args.filters} (IoU >= {base.pred_iou_thresh}, stability >= {base.stability_thresh}), "
        f"match IoU {args.match_iou}, threads={args.threads}"
    )
    print(f"{'image':>28} {'mode':>10} {'prompts':>8} {'prop s':>8} {'prop/enc':>9} "
          f"{'masks':>6} {'kept':>5} {'lost':>5} {'new':>5}")  # fmt: skip
    chips = synthetic_chip(size) if args.synthetic else naip_chips(size)
    for name, chip in chips:
        start = time.perf_counter()
        features = decoder.features(torch.from_numpy(chip)[None])
        enc = time.perf_counter() - start
        exact = None
        modes = [
            ("exact", base),
            ("bfloat16", dataclasses.replace(base, decoder_precision="bfloat16")),
        ]
        modes += [
            (f"skip {t:g}", dataclasses.replace(base, skip_covered=t)) for t in args.thresholds
        ]
        for mode, settings in modes:
            start = time.perf_counter()
            proposals = propose_masks(decoder, features, settings=settings)
            seconds = time.perf_counter() - start
            exact = proposals if exact is None else exact
            kept, lost, new = compare(exact, proposals, args.match_iou)
            print(
                f"{name[-28:]:>28} {mode:>10} {proposals.decoded:>8} {seconds:>8.2f} "
                f"{seconds / enc:>9.2f} {len(proposals):>6} {kept:>5} {lost:>5} {new:>5}",
                flush=True,
            )
        print(f"{name[-28:]:>28} {per_prompt(decoder, features, base)}", flush=True)


if __name__ == "__main__":
    main()
