"""rs-sam's side of the peer comparison on the shared NAIP pair (reported, never asserted).

Each task/encoder/filter case runs in a fresh subprocess so that its peak RSS is its own.
Printed per case: wall time, time inside the image encoder, time in mask proposals
(decoding, filters, NMS), everything else, the wall time as a ratio to the encoder time
(these machines drift; ratios less so) and peak RSS. The peers' ratios were measured by
an earlier session with the same settings (REFERENCES.md, "Speed and memory"): points
per side 16, IoU and stability filters 0, random weights, 2 threads.

    RS_SAM_DATA_DIR=../shared/data python benchmarks/peers_ratio.py
    python benchmarks/peers_ratio.py --encoders mobile_sam --tasks segment --filters default
    python benchmarks/peers_ratio.py --encoders mobile_sam --decoder-precision bfloat16
    python benchmarks/peers_ratio.py --encoders mobile_sam --encoder-runtime openvino

With ``--encoder-runtime openvino`` the random weights are seeded and treated as official
ones, so that the converted encoder is cached as it is for a real checkpoint (in a temporary
``RS_SAM_HOME``): each case first runs once to convert and cache it ("first use", printed),
then the reported runs read the cache, as every run after a user's first does.
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

#: The peers' figures (REFERENCES.md), by (task, encoder): wall / encoder time, peak RSS.
PEERS = {
    ("change", "sam_vit_b"): "geoai AnyChange 8.7x, 5.2 GB",
    ("segment", "sam_vit_b"): "segment-geospatial 7.1-7.6x, 3.7 GB",
    ("segment", "sam_hq_vit_tiny"): "segment-geospatial HQ-tiny 40-47x",
}


def naip_pair() -> tuple[Path, Path]:
    root = os.environ.get("RS_SAM_DATA_DIR")
    if not root:
        sys.exit("needs RS_SAM_DATA_DIR (the shared real-data folder with rasters/naip)")
    earlier, later = sorted((Path(root) / "rasters" / "naip").glob("*.tif"))[:2]
    return earlier, later


def run_case(task: str, encoder: str, filters: str, args: argparse.Namespace) -> dict:
    """One case in this process: its figures."""
    import torch

    import rs_sam.change.anychange as anychange
    import rs_sam.segmentation.objects as objects
    from rs_sam.change import ChangeSettings, detect
    from rs_sam.models import mask_proposals, recipe
    from rs_sam.segmentation.anything import segment_anything
    from rs_sam.segmentation.settings import SegmentSettings

    torch.set_num_threads(args.threads)
    timers = {"encoder": 0.0, "proposals": 0.0}

    def timed(name: str, func):
        def wrapper(*a, **k):
            start = time.perf_counter()
            try:
                return func(*a, **k)
            finally:
                timers[name] += time.perf_counter() - start

        return wrapper

    real_load = recipe.load_encoder  # behind every chip job's model

    def load_timed(*a, **k):
        torch.manual_seed(0)
        model = real_load(*a, **k)
        if args.encoder_runtime == "openvino":
            model.random_weights = False  # cached like official weights (see the docstring)
        model.embed = timed("encoder", model.embed)
        model.embed_hq = timed("encoder", model.embed_hq)
        model.embed_high_res = timed("encoder", model.embed_high_res)
        return model

    recipe.load_encoder = load_timed
    anychange.propose_masks = timed("proposals", mask_proposals.propose_masks)
    objects.propose_masks = anychange.propose_masks
    common = {
        "encoder": encoder,
        "weights": "random",
        "device": "cpu",
        "points_per_side": args.points_per_side,
        "skip_covered": args.skip_covered,
        "decoder_precision": args.decoder_precision,
        "encoder_runtime": args.encoder_runtime,
    }
    if filters == "zero":
        common |= {"pred_iou_thresh": 0.0, "stability_thresh": 0.0}
    a, b = naip_pair()
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = Path(tmp) / "out.gpkg"
        if task == "change":
            result = detect.detect_change(
                a, b, out, settings=ChangeSettings(**common), show_progress=False
            )
        else:
            result = segment_anything(
                a, out, settings=SegmentSettings(**common), show_progress=False
            )
    return {
        "seconds": result.seconds,
        "encoder_s": timers["encoder"],
        "proposals_s": timers["proposals"],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["change", "segment"])
    parser.add_argument("--encoders", nargs="+", default=["mobile_sam", "sam_vit_b"])
    parser.add_argument("--filters", nargs="+", default=["zero", "default"])
    parser.add_argument("--points-per-side", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--skip-covered", type=float, help="approximate: skip_covered's confidence (default: off)"
    )
    parser.add_argument(
        "--decoder-precision", choices=("float32", "bfloat16"), default="float32",
        help="bfloat16: approximate decoding",
    )  # fmt: skip
    parser.add_argument("--encoder-runtime", choices=("torch", "openvino"), default="torch")
    parser.add_argument(
        "--repeats", type=int, default=1,
        help="fresh runs per case; the run of median wall/enc is shown, with the range",
    )  # fmt: skip
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_case(*args.child, args)))
        return
    a, b = naip_pair()
    print(
        f"NAIP {a.name} / {b.name}, random weights, points/side={args.points_per_side}, "
        f"threads={args.threads}; filters 'zero': IoU and stability 0, 'default': rs-sam's; "
        + f"decoder {args.decoder_precision}, skip_covered {args.skip_covered}, "
        + f"encoder runtime {args.encoder_runtime}"
    )
    if args.encoder_runtime == "openvino":
        os.environ["RS_SAM_HOME"] = tempfile.mkdtemp(prefix="rs-sam-bench-")
    columns = ["task", "encoder", "filters", "wall s", "enc s", "prop s", "other s",
               "wall/enc", "RSS MB"]  # fmt: skip
    print(
        f"{columns[0]:>7} {columns[1]:>16} {columns[2]:>8}"
        + "".join(f"{c:>9}" for c in columns[3:])
    )
    for task in args.tasks:
        for encoder in args.encoders:
            for filters in args.filters:
                if args.encoder_runtime == "openvino" and filters == args.filters[0]:
                    first = child(task, encoder, filters)
                    print(f"{task:>7} {encoder:>16} first use (converts): {first['seconds']:.1f} s"
                          f", peak RSS {first['peak_rss_mb']:.0f} MB", flush=True)  # fmt: skip
                rows = sorted(
                    (child(task, encoder, filters) for _ in range(args.repeats)),
                    key=lambda r: r["seconds"] / r["encoder_s"],
                )
                row = rows[len(rows) // 2]
                wall, enc, prop = row["seconds"], row["encoder_s"], row["proposals_s"]
                peer = PEERS.get((task, encoder), "") if filters == "zero" else ""
                spread = [r["seconds"] / r["encoder_s"] for r in (rows[0], rows[-1])]
                print(
                    f"{task:>7} {encoder:>16} {filters:>8}{wall:>9.1f}{enc:>9.1f}{prop:>9.1f}"
                    f"{wall - enc - prop:>9.1f}{wall / enc:>9.2f}{row['peak_rss_mb']:>9.0f}"
                    + (f"   range {spread[0]:.2f}-{spread[1]:.2f}" if len(rows) > 1 else "")
                    + (f"   peer: {peer}" if peer else ""),
                    flush=True,
                )


def child(task: str, encoder: str, filters: str) -> dict:
    """One case in a fresh process (this script with --child): its figures."""
    out = subprocess.run(
        [sys.executable, __file__, *sys.argv[1:], "--child", task, encoder, filters],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
