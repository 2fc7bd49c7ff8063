"""MobileSAM's encoder with and without rs-sam's TinyViT inference changes, in one process.

Separate runs of ``benchmarks/encoders.py`` on these shared 2-core machines vary by 20 % and
more from run to run, which hides a change of 10 %. Here the variants run alternately in
one process on the same input, so drift hits them alike: the official modules (unfolded
``Conv2d_BN``, allocating GELUs, contiguous input), batch norms folded with channels-last
input, and folded plus in-place GELUs (what ``load_encoder`` builds). Printed: the best and
median seconds per 1024² chip over the rounds, GFLOP/s and the share of the matmul peak
measured in the same run, and the largest difference of the embedding from the official.

    python benchmarks/tinyvit_variants.py --rounds 9
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
import warnings

import torch
from torch import nn

from rs_sam.models.decoding.features import encoder_features
from rs_sam.models.encoders import load_encoder
from rs_sam.models.encoders.tinyvit_inference import InPlaceGELU, _classes

MOBILE_SAM_GFLOP = 77.5  # per 1024² chip (benchmarks/encoders.py counts it)


def without(encoder, *, folding: bool, gelu: bool):
    """A copy of ``encoder`` with the folding and/or the in-place GELUs undone."""
    official_conv, folded_conv = _classes()
    encoder = copy.deepcopy(encoder)
    for module in encoder.sam.image_encoder.modules():
        if folding and type(module) is folded_conv:
            module.__class__ = official_conv
        if gelu and type(module) is InPlaceGELU:
            module.__class__ = nn.GELU
    if folding:  # the official input layout too
        encoder._stages = _contiguous_stages(encoder)
    return encoder


def _contiguous_stages(encoder):
    stages = type(encoder)._stages

    def run(x):
        return stages(encoder, x.contiguous())

    return run


def matmul_peak(side: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(side, side), torch.randn(side, side)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * side**3 / best / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    built = load_encoder("mobile_sam", weights="random")
    variants = {
        "official": without(built, folding=True, gelu=True),
        "folded, channels last": without(built, folding=False, gelu=True),
        "+ GELU in place": built,
    }
    images = torch.rand(1, 3, 1024, 1024, generator=torch.Generator().manual_seed(0)) * 255
    times: dict[str, list[float]] = {name: [] for name in variants}
    with torch.inference_mode():
        reference = encoder_features(variants["official"], images).embedding
        errors = {
            name: (encoder_features(e, images).embedding - reference).abs().max().item()
            for name, e in variants.items()
        }
        for _ in range(args.rounds):
            for name, encoder in variants.items():
                start = time.perf_counter()
                encoder_features(encoder, images)
                times[name].append(time.perf_counter() - start)
    peak = matmul_peak()
    print(f"fp32 matmul peak {peak:.1f} GFLOP/s; {args.rounds} alternating rounds, 1024² chip")
    for name, seconds in times.items():
        best, median = min(seconds), statistics.median(seconds)
        rate = MOBILE_SAM_GFLOP / median
        print(
            f"{name:>22}: best {best:.3f} s, median {median:.3f} s, {rate:.1f} GFLOP/s "
            f"({100 * rate / peak:.0f} % of peak), max |diff| {errors[name]:.2e}"
        )


if __name__ == "__main__":
    main()
