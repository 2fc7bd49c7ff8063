"""Benchmark HQ-SAM decoding and LoRA fine-tuning on CPU (reported, never asserted).

Random weights (speed does not depend on them), one 1024 x 1024 chip, 2 threads:

* HQ vs plain automatic mask decoding per chip with the same HQ-SAM model (HQ-SAM reports
  about 96 % of SAM's speed), the image embedding computed once and excluded;
* LoRA (rank 2 on q/v of the image encoder's attention) training steps per second
  (encoder forward and backward, no-prompt decoding, Dice over the 3 masks);
* image-encoder inference with the adapter beside the weights vs merged into them.

    python benchmarks/hq_lora.py [--hq-encoder sam_hq_vit_tiny] [--lora-encoder mobile_sam]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch


def timed(fn, repeats: int) -> float:
    """Median seconds of ``fn()`` after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def hq_vs_plain(name: str, points_per_side: int, repeats: int) -> None:
    from rs_sam.models.encoders import load_encoder
    from rs_sam.models.mask_proposals import ProposalSettings, propose_masks

    encoder = load_encoder(name, weights="random")
    image = torch.rand(1, 3, 1024, 1024) * 255
    with torch.inference_mode():
        hq = encoder.embed_hq(image)
    settings = ProposalSettings(points_per_side=points_per_side, pred_iou_thresh=0.0,
                                stability_thresh=0.0)  # fmt: skip

    def decode(mode: str):
        decoder = encoder.hq_decoder if mode != "off" else encoder.mask_decoder
        with torch.inference_mode():
            return propose_masks(hq.embedding, encoder.prompt_encoder, decoder,
                                 input_size=encoder.input_size, settings=settings, hq=mode,
                                 interm=hq.interm if mode != "off" else None)  # fmt: skip

    plain = timed(lambda: decode("off"), repeats)
    with_hq = timed(lambda: decode("add"), repeats)
    print(f"{name}: {points_per_side**2} prompts per chip, decoding only (embedding excluded)")
    print(f"  plain SAM decoding  {plain:8.2f} s/chip")
    print(f"  HQ decoding (add)   {with_hq:8.2f} s/chip   speed {plain / with_hq:.0%} of plain")


def lora(name: str, repeats: int) -> None:
    from rs_sam.models.encoders import load_encoder
    from rs_sam.models.lora import LoraSettings, apply_lora, embed_trainable, merge_lora

    encoder = load_encoder(name, weights="random")
    info = apply_lora(encoder, LoraSettings(rank=2))
    params = [p for p in encoder.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=5e-3)
    image = torch.rand(1, 3, 1024, 1024) * 255
    target = (torch.rand(1, 1, 256, 256) > 0.5).float()
    sparse, dense = encoder.prompt_encoder(points=None, boxes=None, masks=None)

    def step() -> None:
        embedding = embed_trainable(encoder, image)
        logits, _ = encoder.mask_decoder(
            image_embeddings=embedding, image_pe=encoder.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
            multimask_output=True,
        )  # fmt: skip
        prob = torch.sigmoid(logits)
        dice = 1 - (2 * (prob * target).sum((-1, -2)) + 1) / (
            prob.sum((-1, -2)) + target.sum((-1, -2)) + 1
        )
        loss = dice.mean()  # SamLP: Dice averaged over the 3 multimask outputs
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    seconds = timed(step, repeats)
    print(f"{name} + LoRA rank 2 on q/v: {info.trainable:,} trainable parameters")
    print(f"  training            {1 / seconds:8.3f} steps/s ({seconds:.2f} s/step, batch 1)")
    with torch.inference_mode():
        unmerged = timed(lambda: encoder.embed(image), repeats)
        merge_lora(encoder)
        merged = timed(lambda: encoder.embed(image), repeats)
    print(f"  inference unmerged  {unmerged:8.2f} s/chip (image encoder)")
    print(f"  inference merged    {merged:8.2f} s/chip   ({unmerged / merged:.2f}x faster merged)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hq-encoder", default="sam_hq_vit_tiny")
    parser.add_argument("--lora-encoder", default="mobile_sam")
    parser.add_argument("--points-per-side", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    warnings.simplefilter("ignore")
    hq_vs_plain(args.hq_encoder, args.points_per_side, args.repeats)
    lora(args.lora_encoder, args.repeats)


if __name__ == "__main__":
    main()
