"""Benchmark ``detect_change`` on synthetic pairs of several sizes (reported, never asserted).

Each size runs in a fresh subprocess so that its peak RSS is its own. The full-size
encoder runs with random weights (speed does not depend on the weights). Printed per
size: wall time, megapixels per second, time in the image encoder, in mask decoding and
in everything else (reading, normalisation, mosaic, polygons, writing), each also as a
ratio to the encoder time (these machines' speed drifts, ratios less so), and peak RSS.

    python benchmarks/detect_change.py --sizes 2048 8192 --points-per-side 2
    python benchmarks/detect_change.py --sizes 4096 --points-per-side 4 --encoder-runtime openvino

With ``--encoder-runtime openvino`` the seeded random weights are treated as official ones so
that the converted encoder is cached (in a temporary ``RS_SAM_HOME``), and a first run at the
smallest size converts it (its time is printed apart), as a user's first run does once.
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


def write_pair(folder: Path, size: int) -> tuple[Path, Path]:
    """A uint8 RGB pair of size x size pixels, written block by block (bounded memory)."""
    import rasterio
    from affine import Affine
    from rasterio.windows import Window

    profile = {
        "driver": "GTiff", "width": size, "height": size, "count": 3, "dtype": "uint8",
        "crs": "EPSG:32633", "transform": Affine(1.0, 0, 500_000, 0, -1.0, 5_000_000),
        "tiled": True, "blockxsize": 512, "blockysize": 512,
    }  # fmt: skip
    paths = folder / "a.tif", folder / "b.tif"
    block = 1024
    with rasterio.open(paths[0], "w", **profile) as a, rasterio.open(paths[1], "w", **profile) as b:
        for row in range(0, size, block):
            for col in range(0, size, block):
                h, w = min(block, size - row), min(block, size - col)
                ys, xs = np.mgrid[row : row + h, col : col + w].astype(np.float32)
                field = np.stack([np.sin(xs / 37 + k) * np.cos(ys / 53 - k) for k in range(3)])
                image = ((field + 1) * 100 + 20).astype(np.uint8)
                a.write(image, window=Window(col, row, w, h))
                image[:, h // 3 : h // 2, w // 3 : w // 2] = 240  # one new object per block
                b.write(image, window=Window(col, row, w, h))
    return paths


def run_one(size: int, args: argparse.Namespace) -> dict[str, float]:
    """Run one size in this process and return its figures."""
    import torch

    from rs_sam.change import ChangeSettings, detect
    from rs_sam.models import mask_proposals, recipe

    torch.set_num_threads(args.threads)
    timers = {"encoder": 0.0, "decoder": 0.0}

    def timed(name: str, func):
        def wrapper(*a, **k):
            start = time.perf_counter()
            try:
                return func(*a, **k)
            finally:
                timers[name] += time.perf_counter() - start

        return wrapper

    real_load = recipe.load_encoder  # the one encoder loader (behind every chip job's model)

    def load_timed(*a, **k):
        torch.manual_seed(0)
        encoder = real_load(*a, **k)
        if args.encoder_runtime == "openvino":
            encoder.random_weights = False  # cached like official weights (see the docstring)
        encoder.embed = timed("encoder", encoder.embed)
        if encoder.has_high_res:  # SAM 2: one encoder pass gives embedding and high-res maps
            encoder.embed_high_res = timed("encoder", encoder.embed_high_res)
        return encoder

    recipe.load_encoder = load_timed
    mask_proposals_fn = mask_proposals.propose_masks
    import rs_sam.change.anychange as anychange

    anychange.propose_masks = timed("decoder", mask_proposals_fn)
    settings = ChangeSettings(
        encoder=args.encoder,
        weights="random",
        device="cpu",
        chip_size=args.chip_size,
        overlap=args.overlap,
        points_per_side=args.points_per_side,
        batch_size=args.batch_size,
        encoder_runtime=args.encoder_runtime,
    )
    with tempfile.TemporaryDirectory() as tmp:
        a, b = write_pair(Path(tmp), size)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = detect.detect_change(
                a, b, Path(tmp) / "out.gpkg", settings=settings, show_progress=False
            )
    other = result.seconds - timers["encoder"] - timers["decoder"]
    return {
        "size": size,
        "chips": result.chips,
        "seconds": result.seconds,
        "mp_per_s": result.megapixels / result.seconds,
        "encoder_s": timers["encoder"],
        "decoder_s": timers["decoder"],
        "other_s": other,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2048, 8192])
    parser.add_argument("--encoder", default="mobile_sam")
    parser.add_argument("--chip-size", type=int, default=1024)
    parser.add_argument("--overlap", type=int, default=128)
    parser.add_argument("--points-per-side", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--encoder-runtime", choices=("torch", "openvino"), default="torch")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_one(args.child, args)))
        return
    passthrough = sys.argv[1:]
    print(
        f"encoder={args.encoder} chip={args.chip_size} overlap={args.overlap} "
        f"points/side={args.points_per_side} threads={args.threads} (random weights), "
        f"encoder runtime {args.encoder_runtime}"
    )
    if args.encoder_runtime == "openvino":
        os.environ["RS_SAM_HOME"] = tempfile.mkdtemp(prefix="rs-sam-bench-")
        first = child(min(args.sizes), passthrough)
        print(f"first use (converts the encoder): {first['seconds']:.1f} s at {min(args.sizes)}")
    columns = ["size", "chips", "wall s", "MP/s", "enc s", "dec s", "other s", "outside enc",
               "dec/enc", "other/enc", "RSS MB"]  # fmt: skip
    print(" ".join(f"{c:>{max(len(c), 6)}}" for c in columns))
    rows = []
    for size in args.sizes:
        row = child(size, passthrough)
        rows.append(row)
        enc = row["encoder_s"]
        print(
            f"{size:>6} {row['chips']:>6} {row['seconds']:>6.1f} {row['mp_per_s']:>6.3f} "
            f"{enc:>6.1f} {row['decoder_s']:>6.1f} {row['other_s']:>7.1f} "
            f"{1 - enc / row['seconds']:>11.0%} {row['decoder_s'] / enc:>7.2f} "
            f"{row['other_s'] / enc:>9.2f} {row['peak_rss_mb']:>6.0f}"
        )
    if len(rows) > 1:
        ratio = rows[-1]["peak_rss_mb"] / rows[0]["peak_rss_mb"]
        print(f"peak RSS ratio largest/smallest: {ratio:.2f}")


def child(size: int, passthrough: list[str]) -> dict[str, float]:
    """One size in a fresh process (this script with --child): its figures."""
    out = subprocess.run(
        [sys.executable, __file__, *passthrough, "--child", str(size)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
