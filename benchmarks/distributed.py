"""Benchmark detect-change on the local engine and on local dask clusters (reported only).

For each engine (``local``, or N worker processes) one fresh client process runs
``detect_change`` on a synthetic pair and reports: chips/s (steady state: first to last
chip), the client's time per chip in the sink (blending into the mosaic: what bounds
scaling when compute moves to many GPUs), the compute time per chip (local engine: chip
time less sink time), the time after the last chip (mosaic finalisation, polygons,
writing), and the client's peak RSS (workers are other processes). ``--tiny`` uses the
tiny random encoder configuration (fast; for memory and sink figures), else the
full-size encoder with random weights (speed does not depend on weights).

    python benchmarks/distributed.py --size 4096 --engines local 1 2 --points-per-side 8
    python benchmarks/distributed.py --tiny --size 2048 8192 --engines 2
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
# This file's name would shadow the `distributed` package: take its folder off the path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(HERE.parent))  # tests.helpers for --tiny
_spec = importlib.util.spec_from_file_location("bench_detect_change", HERE / "detect_change.py")
_module = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
_spec.loader.exec_module(_module)  # type: ignore[union-attr]
write_pair = _module.write_pair  # this folder's pair writer


def run_one(args: argparse.Namespace) -> dict[str, float]:
    """One engine on one pair in this process: its figures."""
    import dask
    import torch

    from rs_sam.change import ChangeSettings, detect
    from rs_sam.inference import mosaic

    torch.set_num_threads(args.threads)
    if args.tiny:
        from tests.helpers.tiny_models import use_tiny_encoders

        use_tiny_encoders()
        dask.config.set({"distributed.worker.preload": ["tests.helpers.tiny_worker"]})
    sink = {"seconds": 0.0}
    real_add = mosaic.ProbabilityMosaic.add

    def timed_add(self, *a, **k):
        start = time.perf_counter()
        try:
            return real_add(self, *a, **k)
        finally:
            sink["seconds"] += time.perf_counter() - start

    mosaic.ProbabilityMosaic.add = timed_add
    stamps: list[float] = []
    engine = {} if args.child_engine == "local" else {"workers": int(args.child_engine)}
    settings = ChangeSettings(
        encoder=args.encoder, weights="random", device="cpu", chip_size=args.chip_size,
        overlap=args.overlap, points_per_side=args.points_per_side, **engine,
    )  # fmt: skip
    a, b = Path(args.pair[0]), Path(args.pair[1])
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        started = time.perf_counter()
        result = detect.detect_change(
            a, b, Path(tmp) / "out.gpkg", settings=settings, show_progress=False,
            on_progress=lambda done, total: stamps.append(time.perf_counter()),
        )  # fmt: skip
        ended = time.perf_counter()
    chips = result.chips
    steady = (chips - 1) / (stamps[-1] - stamps[0]) if chips > 1 else float("nan")
    compute = (stamps[-1] - stamps[0] - sink["seconds"]) / max(chips - 1, 1)
    return {
        "chips": chips,
        "wall_s": ended - started,
        "first_chip_s": stamps[0] - started,
        "chips_per_s": steady,
        "sink_ms_per_chip": 1000 * sink["seconds"] / chips,
        "compute_s_per_chip": compute,
        "after_last_chip_s": ended - stamps[-1],
        "client_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs="+", default=[4096])
    parser.add_argument("--engines", nargs="+", default=["local", "1", "2"])
    parser.add_argument("--encoder", default="mobile_sam")
    parser.add_argument("--tiny", action="store_true", help="tiny random encoders")
    parser.add_argument("--chip-size", type=int, default=1024)
    parser.add_argument("--overlap", type=int, default=128)
    parser.add_argument("--points-per-side", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the client")
    parser.add_argument("--child-engine", help=argparse.SUPPRESS)
    parser.add_argument("--pair", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_engine:
        print(json.dumps(run_one(args)))
        return
    print(
        f"encoder={args.encoder}{' (tiny)' if args.tiny else ''} chip={args.chip_size} "
        f"overlap={args.overlap} points/side={args.points_per_side} (random weights)"
    )
    columns = ["size", "engine", "chips", "wall s", "1st chip s", "chips/s", "sink ms/chip",
               "compute s/chip", "after s", "client RSS MB"]  # fmt: skip
    print(" | ".join(columns))
    passthrough = [a for a in sys.argv[1:]]
    for size in args.size:
        with tempfile.TemporaryDirectory() as tmp:
            pair = write_pair(Path(tmp), size)
            for engine in args.engines:
                out = subprocess.run(
                    [sys.executable, __file__, *passthrough, "--child-engine", engine,
                     "--pair", *map(str, pair)],
                    check=True, capture_output=True, text=True,
                )  # fmt: skip
                row = json.loads(out.stdout.strip().splitlines()[-1])
                label = "local" if engine == "local" else f"{engine} workers"
                print(
                    f"{size} | {label} | {row['chips']} | {row['wall_s']:.1f} | "
                    f"{row['first_chip_s']:.1f} | {row['chips_per_s']:.3f} | "
                    f"{row['sink_ms_per_chip']:.1f} | {row['compute_s_per_chip']:.2f} | "
                    f"{row['after_last_chip_s']:.1f} | {row['client_peak_rss_mb']:.0f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
