"""Benchmark HQ-SAM decoding and LoRA fine-tuning on CPU (reported, never asserted).

Random weights (speed does not depend on them), one 1024 x 1024 chip:

* ``hq``: HQ vs plain automatic mask decoding per chip with the same HQ-SAM model, both
  through the fast CPU decoder, the image embedding timed apart (HQ-SAM reports about 96 %
  of SAM's speed for the whole model, image encoder included);
* ``lora``: LoRA (rank 2 on q/v of the image encoder's attention) training steps per second
  (encoder forward and backward, no-prompt decoding, Dice over the 3 masks), then
  image-encoder inference with the adapter beside the weights vs merged into them, and the
  largest difference between the two embeddings.

    python benchmarks/hq_lora.py [--part hq|lora] [--hq-encoder sam_hq_vit_tiny]
        [--lora-encoder mobile_sam] [--points-per-side 16] [--repeats 2]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable
from typing import TypeVar

import torch

T = TypeVar("T")


def timed(fn: Callable[[], T], repeats: int) -> tuple[float, T]:
    """Median seconds of ``fn()`` after one warm-up call, and the last call's result."""
    result = fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def hq_vs_plain(name: str, points_per_side: int, repeats: int) -> None:
    from rs_sam.models.decoding import ChipFeatures, SamDecoder
    from rs_sam.models.encoders import load_encoder
    from rs_sam.models.fast_decoder import is_hq_supported, is_supported
    from rs_sam.models.mask_proposals import ProposalSettings, propose_masks

    encoder = load_encoder(name, weights="random")
    image = torch.rand(1, 3, 1024, 1024) * 255
    with torch.inference_mode():
        embedding, hq = timed(lambda: encoder.embed_hq(image), repeats)
    settings = ProposalSettings(points_per_side=points_per_side, pred_iou_thresh=0.0,
                                stability_thresh=0.0)  # fmt: skip

    def decode(mode: str):
        decoder = SamDecoder.for_encoder(encoder, mode)
        features = ChipFeatures(hq.embedding, hq.interm if mode != "off" else None)
        with torch.inference_mode():
            return propose_masks(decoder, features, settings=settings)

    plain, _ = timed(lambda: decode("off"), repeats)
    with_hq, _ = timed(lambda: decode("add"), repeats)
    fast = is_supported(encoder.prompt_encoder, encoder.mask_decoder) and is_hq_supported(
        encoder.hq_decoder
    )
    whole = (embedding + plain) / (embedding + with_hq)
    print(f"{name}: {points_per_side**2} prompts per chip, fast CPU decoder for both: {fast}")
    print(f"  image embedding     {embedding:8.2f} s/chip (the same for both)")
    print(f"  plain SAM decoding  {plain:8.2f} s/chip")
    print(f"  HQ decoding (add)   {with_hq:8.2f} s/chip   speed {plain / with_hq:.0%} of plain")
    print(f"  whole chip                          speed {whole:.0%} of plain (with embedding)")


def lora(name: str, repeats: int) -> None:
    from rs_sam.models.decoding import ChipFeatures, SamDecoder
    from rs_sam.models.encoders import load_encoder
    from rs_sam.models.lora import LoraSettings, apply_lora, embed_trainable, merge_lora

    encoder = load_encoder(name, weights="random")
    info = apply_lora(encoder, LoraSettings(rank=2))
    params = [p for p in encoder.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=5e-3)
    image = torch.rand(1, 3, 1024, 1024) * 255
    target = (torch.rand(1, 1, 256, 256) > 0.5).float()
    decoder = SamDecoder.for_encoder(encoder)
    with torch.inference_mode():
        base = encoder.embed(image)  # LoRA's B starts at zero: the base model's embedding

    def step() -> None:
        embedding = embed_trainable(encoder, image)
        logits = decoder.decode_train(ChipFeatures(embedding), multimask=True).logits  # no prompt
        prob = torch.sigmoid(logits)
        dice = 1 - (2 * (prob * target).sum((-1, -2)) + 1) / (
            prob.sum((-1, -2)) + target.sum((-1, -2)) + 1
        )
        loss = dice.mean()  # SamLP: Dice averaged over the 3 multimask outputs
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    seconds, _ = timed(step, repeats)
    print(f"{name} + LoRA rank 2 on q/v: {info.trainable:,} trainable parameters")
    print(f"  training            {1 / seconds:8.3f} steps/s ({seconds:.2f} s/step, batch 1)")
    with torch.inference_mode():
        unmerged_s, unmerged = timed(lambda: encoder.embed(image), repeats)
        layers = merge_lora(encoder)
        merged_s, merged = timed(lambda: encoder.embed(image), repeats)
    speedup = unmerged_s / merged_s
    print(f"  inference unmerged  {unmerged_s:8.2f} s/chip (image encoder)")
    print(f"  inference merged    {merged_s:8.2f} s/chip   ({speedup:.2f}x faster merged)")
    print(
        f"  max |merged - unmerged|  {(merged - unmerged).abs().max():.2e} "
        f"({layers} layers merged; embedding values up to {unmerged.abs().max():.2f})"
    )
    changed = (unmerged - base).abs().max()
    print(f"  max |unmerged - base|    {changed:.2e} (what the trained adapter changes)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("all", "hq", "lora"), default="all",
                        help="run one part only (default: both)")  # fmt: skip
    parser.add_argument("--hq-encoder", default="sam_hq_vit_tiny")
    parser.add_argument("--lora-encoder", default="mobile_sam")
    parser.add_argument("--points-per-side", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2, help="timed runs after one warm-up")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    warnings.simplefilter("ignore")
    if args.part in ("all", "hq"):
        hq_vs_plain(args.hq_encoder, args.points_per_side, args.repeats)
    if args.part in ("all", "lora"):
        lora(args.lora_encoder, args.repeats)


if __name__ == "__main__":
    main()
