"""Benchmark ``segment`` on CPU: SAM automatic objects and semantic inference (reported only).

Each case runs in a fresh subprocess so that its peak RSS is its own. Models have random
weights (speed does not depend on them). Printed per case: chips, wall time, chips per
second, megapixels per second, time in the image encoder and the rest (mask decoding,
upsampling, polygons, merging, writing), the rest as a ratio to the encoder time (these
machines' speed drifts, ratios less so), and peak RSS.

    python benchmarks/segment.py                       # synthetic 2048 x 2048, mobile_sam
    python benchmarks/segment.py --naip --encoder sam_vit_b --pred-iou-thresh 0 \\
        --stability-thresh 0                          # the peers' NAIP setting (REFERENCES.md)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np


def write_scene(folder: Path, size: int) -> Path:
    """A uint8 RGB raster of size x size pixels with object-like blobs, written by blocks."""
    import rasterio
    from affine import Affine
    from rasterio.windows import Window

    profile = {
        "driver": "GTiff", "width": size, "height": size, "count": 3, "dtype": "uint8",
        "crs": "EPSG:32633", "transform": Affine(1.0, 0, 500_000, 0, -1.0, 5_000_000),
        "tiled": True, "blockxsize": 512, "blockysize": 512,
    }  # fmt: skip
    path = folder / "scene.tif"
    block = 1024
    with rasterio.open(path, "w", **profile) as dst:
        for row in range(0, size, block):
            for col in range(0, size, block):
                h, w = min(block, size - row), min(block, size - col)
                ys, xs = np.mgrid[row : row + h, col : col + w].astype(np.float32)
                field = np.stack([np.sin(xs / 37 + k) * np.cos(ys / 53 - k) for k in range(3)])
                image = ((field + 1) * 100 + 20).astype(np.uint8)
                for r in range(0, h, 128):  # a grid of bright "buildings"
                    image[:, r + 40 : r + 80, 30 : w - 30 : 2] = 240
                dst.write(image, window=Window(col, row, w, h))
    return path


def naip_path() -> Path:
    root = os.environ.get("RS_SAM_DATA_DIR")
    if not root:
        sys.exit("--naip needs RS_SAM_DATA_DIR (the shared real-data folder)")
    return sorted((Path(root) / "rasters" / "naip").glob("*2009*.tif"))[0]


def semantic_checkpoint(folder: Path, encoder: str, chip: int) -> Path:
    """An untrained UNetFormer checkpoint in rs-sam's format (random weights)."""
    import torch

    from rs_sam.models.head_file import CHECKPOINT_KEY
    from rs_sam.training.segment_task import SegmentTask

    classes = {"classes": [{"name": f"class_{i}", "id": i} for i in range(6)]}
    task = SegmentTask(classes=classes, encoder=encoder, weights="random", chip_size=chip)
    path = folder / "model.ckpt"
    torch.save(
        {
            "state_dict": task.state_dict(),
            "hyper_parameters": dict(task.hparams),
            CHECKPOINT_KEY: task.metadata().to_dict(),
        },
        path,
    )
    return path


def run_case(case: str, args: argparse.Namespace) -> dict[str, float]:
    """Run one case in this process and return its figures."""
    import torch

    from rs_sam.models.encoders.base import FrozenEncoder
    from rs_sam.segmentation.anything import segment_anything
    from rs_sam.segmentation.semantic import segment_semantic
    from rs_sam.segmentation.settings import SegmentSettings

    torch.set_num_threads(args.threads)
    encoder_s = 0.0
    real_forward = FrozenEncoder.forward
    real_embed = FrozenEncoder.embed

    def timed(func):
        def wrapper(*a, **k):
            nonlocal encoder_s
            start = time.perf_counter()
            try:
                return func(*a, **k)
            finally:
                encoder_s += time.perf_counter() - start

        return wrapper

    FrozenEncoder.forward = timed(real_forward)  # type: ignore[method-assign]
    FrozenEncoder.embed = timed(real_embed)  # type: ignore[method-assign]
    # SAM 2: one encoder pass gives the embedding and the high-resolution maps
    FrozenEncoder.embed_high_res = timed(FrozenEncoder.embed_high_res)  # type: ignore[method-assign]
    settings = SegmentSettings(
        encoder=args.encoder,
        weights="random",
        device="cpu",
        chip_size=args.chip_size,
        points_per_side=args.points_per_side,
        batch_size=args.batch_size,
        pred_iou_thresh=args.pred_iou_thresh,
        stability_thresh=args.stability_thresh,
    )
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        folder = Path(tmp)
        raster = naip_path() if args.naip else write_scene(folder, args.size)
        out = folder / "out.gpkg"
        if case == "anything":
            result = segment_anything(raster, out, settings=settings, show_progress=False)
        else:
            model = semantic_checkpoint(folder, args.encoder, args.chip_size)
            result = segment_semantic(raster, model, out, settings=settings, show_progress=False)
    return {
        "chips": result.chips,
        "objects": result.objects,
        "seconds": result.seconds,
        "megapixels": result.megapixels,
        "encoder_s": encoder_s,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=["anything", "semantic"])
    parser.add_argument("--size", type=int, default=2048, help="synthetic raster side")
    parser.add_argument("--naip", action="store_true", help="use NAIP 2009 from RS_SAM_DATA_DIR")
    parser.add_argument("--encoder", default="mobile_sam")
    parser.add_argument("--chip-size", type=int, default=1024)
    parser.add_argument("--points-per-side", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--pred-iou-thresh", type=float, default=0.88)
    parser.add_argument("--stability-thresh", type=float, default=0.95)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_case(args.child, args)))
        return
    source = "NAIP 2009" if args.naip else f"synthetic {args.size}x{args.size}"
    print(
        f"{source}, encoder={args.encoder} (random weights), chip={args.chip_size}, "
        f"points/side={args.points_per_side}, pred-iou>={args.pred_iou_thresh}, "
        f"stability>={args.stability_thresh}, threads={args.threads}"
    )
    columns = ["case", "chips", "objects", "wall s", "chips/s", "MP/s", "enc s", "rest s",
               "rest/enc", "RSS MB"]  # fmt: skip
    print(" ".join(f"{c:>9}" for c in columns))
    for case in args.cases:
        out = subprocess.run(
            [sys.executable, __file__, *sys.argv[1:], "--child", case],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        row = json.loads(out.stdout.strip().splitlines()[-1])
        enc, wall = row["encoder_s"], row["seconds"]
        print(
            f"{case:>9} {row['chips']:>9} {row['objects']:>9} {wall:>9.1f} "
            f"{row['chips'] / wall:>9.3f} {row['megapixels'] / wall:>9.3f} {enc:>9.1f} "
            f"{wall - enc:>9.1f} {(wall - enc) / enc:>9.2f} {row['peak_rss_mb']:>9.0f}"
        )


if __name__ == "__main__":
    main()
