"""Benchmark the image encoders on CPU: work, speed against the machine's peak, memory, hot ops.

Printed first: the fp32 matmul peak of this machine (a large ``torch.mm``). Then per encoder
(random weights: speed does not depend on them), each in a fresh subprocess so that its peak
RSS is its own: GFLOP per chip (``FlopCounterMode``), warm encoder time (median of
``--repeats``), achieved GFLOP/s and its share of the matmul peak, RSS after building and at
the peak, and the ops with the most self CPU time (``torch.profiler``), with the share of
time in matmul-like ops (the rest is memory-bound: norms, GELU, copies, depthwise convs...).
``--dates`` adds the peak RSS of encoding two dates batched vs one at a time (AnyChange's
choice, :func:`rs_sam.models.decoding.features.images_per_pass`). ``--variants`` tries
``channels_last`` and ``torch.compile`` on MobileSAM (not used by the CLI; reported only).

    python benchmarks/encoders.py           # mobile_sam, sam_vit_b, sam2_hiera_tiny
    python benchmarks/encoders.py --encoders mobile_sam --variants
    python benchmarks/encoders.py --encoders sam_vit_b mobile_sam --dates
    python benchmarks/encoders.py --encoders mobile_sam sam2_hiera_tiny --runtime openvino

With ``--runtime openvino`` the encoders run through OpenVINO (``--encoder-runtime``); the
GFLOP are counted on the torch graph, the first call (conversion, the check against torch,
compilation: random weights are never cached) is printed apart, and no ops are listed.

The timings of a shared machine drift; compare ratios (GFLOP/s over the peak) rather than
seconds across runs.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
import warnings
from typing import Any

# Ops doing dense arithmetic (compute-bound when large); everything else is counted memory-bound.
_MATMUL_OPS = ("mm", "addmm", "bmm", "matmul", "linear", "conv", "scaled_dot_product", "einsum")


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def matmul_peak(threads: int, side: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of a square fp32 ``torch.mm`` (the best of ``repeats``)."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(side, side), torch.randn(side, side)
    torch.mm(a, b)
    best = min(_seconds(lambda: torch.mm(a, b)) for _ in range(repeats))
    return 2 * side**3 / best / 1e9


def _seconds(func: Any) -> float:
    start = time.perf_counter()
    func()
    return time.perf_counter() - start


def _flops(run: Any) -> float:
    """GFLOP of ``run()``; CPU's fused attention kernel is counted like the others'."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

    def cpu_sdpa(q: Any, k: Any, v: Any, *args: Any, out_shape: Any = None, **kw: Any) -> int:
        return sdpa_flop_count(q, k, v)

    mapping = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: cpu_sdpa}
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        run()
    return counter.get_total_flops() / 1e9


def _top_ops(run: Any, count: int) -> tuple[list[tuple[str, float, float]], float]:
    """The ``count`` ops with most self CPU time (name, ms, share) and the matmul-like share."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run()
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    top = [(e.key, e.self_cpu_time_total / 1e3, e.self_cpu_time_total / total) for e in events]
    matmul = sum(e.self_cpu_time_total for e in events if any(op in e.key for op in _MATMUL_OPS))
    return top[:count], matmul / total


def run_encoder(args: argparse.Namespace, name: str, variant: str) -> dict[str, Any]:
    """Figures of one encoder in this process (``variant``: eager, channels_last, compile)."""
    import torch

    from rs_sam.models.decoding.features import encoder_features
    from rs_sam.models.encoders import load_encoder

    torch.set_num_threads(args.threads)
    encoder = load_encoder(name, weights="random")
    side = encoder.input_size
    images = torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(0)) * 255
    built_mb = rss_mb()
    openvino = args.runtime == "openvino"
    gflop = _flops(lambda: encoder_features(encoder, images)) if variant == "eager" else 0.0
    if openvino:
        from rs_sam.models.encoders.openvino_runtime import use_runtime

        use_runtime(encoder, "openvino")
    if variant == "channels_last":
        encoder = encoder.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    if variant == "compile":  # the whole pass after normalisation (embed() calls _embed)
        encoder._embed = torch.compile(encoder._embed)  # type: ignore[method-assign]

    def run() -> None:
        with torch.inference_mode():
            encoder_features(encoder, images)

    start = time.perf_counter()
    run()  # warm-up (compiles with torch.compile)
    first_s = time.perf_counter() - start
    times = [_seconds(run) for _ in range(args.repeats)]
    profiled = variant == "eager" and not openvino
    top, matmul_share = _top_ops(run, args.top) if profiled else ([], 0.0)
    return {
        "encoder": name, "variant": variant, "side": side, "gflop": gflop,
        "first_s": first_s, "seconds": statistics.median(times), "best_s": min(times),
        "built_mb": built_mb,
        "peak_mb": rss_mb(), "top": top, "matmul_share": matmul_share,
    }  # fmt: skip


def run_dates(args: argparse.Namespace, name: str, per_pass: int) -> dict[str, Any]:
    """Peak RSS of encoding two dates ``per_pass`` at a time (one pass each, no warm-up)."""
    import torch

    from rs_sam.models.decoding.features import encoder_features, images_per_pass
    from rs_sam.models.encoders import load_encoder

    torch.set_num_threads(args.threads)
    encoder = load_encoder(name, weights="random")
    side = encoder.input_size
    images = torch.rand(2, 3, side, side, generator=torch.Generator().manual_seed(0)) * 255
    built_mb = rss_mb()
    seconds = _seconds(lambda: encoder_features(encoder, images, per_pass=per_pass))
    return {
        "encoder": name, "per_pass": per_pass, "rule": images_per_pass(encoder, 2),
        "built_mb": built_mb, "peak_mb": rss_mb(), "seconds": seconds,
    }  # fmt: skip


def _child(args: argparse.Namespace, *case: str) -> dict[str, Any] | None:
    """Run one case in a fresh interpreter; None (and the error) if it failed."""
    out = subprocess.run(
        [sys.executable, __file__, *sys.argv[1:], "--child", *case],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if out.returncode != 0:
        print(f"  {' '.join(case)} failed: {out.stderr.strip().splitlines()[-1:]}")
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def _report(row: dict[str, Any], peak: float) -> None:
    rate = row["gflop"] / row["seconds"]
    print(
        f"{row['encoder']:>16} {row['gflop']:>8.1f} {row['seconds']:>8.2f} {rate:>8.1f} "
        f"{100 * rate / peak:>6.1f}% {row['built_mb']:>8.0f} {row['peak_mb']:>8.0f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--encoders", nargs="+", default=["mobile_sam", "sam_vit_b", "sam2_hiera_tiny"]
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--top", type=int, default=8, help="ops listed per encoder")
    parser.add_argument("--variants", action="store_true", help="channels_last, torch.compile")
    parser.add_argument("--dates", action="store_true", help="two dates batched vs one by one")
    parser.add_argument("--runtime", choices=("torch", "openvino"), default="torch")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    if args.child:
        kind, name, option = args.child
        if kind == "dates":
            row = run_dates(args, name, int(option))
        else:
            row = run_encoder(args, name, option)
        print(json.dumps(row))
        return
    peak = matmul_peak(args.threads)
    print(f"fp32 matmul peak (torch.mm 2048^2, {args.threads} threads): {peak:.1f} GFLOP/s")
    columns = ["encoder", "GFLOP", "enc s", "GFLOP/s", "%peak", "built MB", "peak MB"]
    print(" ".join(f"{c:>8}" for c in columns).replace(" encoder", " " * 8 + " encoder"))
    rows = [row for name in args.encoders if (row := _child(args, "encoder", name, "eager"))]
    for row in rows:
        _report(row, peak)
    if args.runtime == "openvino":
        for row in rows:
            first = row["first_s"]
            print(f"{row['encoder']}: first call {first:.1f} s (conversion, check, compile)")
    for row in (row for row in rows if row["top"]):
        print(f"\n{row['encoder']}: {100 * row['matmul_share']:.0f}% of self CPU time in "
              "matmul-like ops; top ops by self CPU time:")  # fmt: skip
        for key, ms, share in row["top"]:
            print(f"  {key:<48} {ms:>9.1f} ms {100 * share:>5.1f}%")
    if args.variants:
        print("\nmobile_sam variants (warm median s; first call includes compilation):")
        for variant in ("eager", "channels_last", "compile"):
            row = _child(args, "encoder", "mobile_sam", variant)
            if row:
                print(f"  {variant:<14} {row['seconds']:>7.2f} s (best {row['best_s']:.2f}) "
                      f"first {row['first_s']:>6.1f} s peak {row['peak_mb']:>6.0f} MB")  # fmt: skip
    if args.dates:
        print("\ntwo dates: peak RSS batched (2) vs one at a time (1); rule = images_per_pass")
        for name in args.encoders:
            for per_pass in (2, 1):
                row = _child(args, "dates", name, str(per_pass))
                if row:
                    print(f"  {name:>16} per_pass={per_pass} rule={row['rule']} "
                          f"built {row['built_mb']:>6.0f} MB peak {row['peak_mb']:>6.0f} MB "
                          f"{row['seconds']:>6.1f} s")  # fmt: skip


if __name__ == "__main__":
    main()
