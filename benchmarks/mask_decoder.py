"""Point-prompt decoding speed: official SAM prompt encoder + mask decoder vs decode_points.

Real decoder sizes (transformer_dim 256, 8 heads, 64x64 embedding, 1024 input), random
weights, one foreground point per prompt as in automatic mask generation. Prints ms per
prompt (best and median of the repeats, wall clock) and the largest differences between
the two outputs.

    .venv/bin/python benchmarks/mask_decoder.py                  # batches 64 and 128, 2 threads
    .venv/bin/python benchmarks/mask_decoder.py --batches 16 --repeats 2 --threads 1

On a shared machine other processes inflate single runs by large factors: compare the best
times, and rerun when the spread between best and median is large.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time

import torch
from segment_anything.modeling import MaskDecoder, PromptEncoder, TwoWayTransformer

from rs_sam.models.fast_decoder import DEFAULT_CHUNK, DEFAULT_TILE_PIXELS, decode_points


def build(seed: int = 0) -> tuple[PromptEncoder, MaskDecoder]:
    torch.manual_seed(seed)
    prompt_encoder = PromptEncoder(
        embed_dim=256,
        image_embedding_size=(64, 64),
        input_image_size=(1024, 1024),
        mask_in_chans=16,
    )
    mask_decoder = MaskDecoder(
        num_multimask_outputs=3,
        transformer=TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8),
        transformer_dim=256,
        iou_head_depth=3,
        iou_head_hidden_dim=256,
    )
    return prompt_encoder.eval(), mask_decoder.eval()


@torch.inference_mode()
def official(prompt_encoder, mask_decoder, embedding, points, labels):
    sparse, dense = prompt_encoder(points=(points, labels), boxes=None, masks=None)
    return mask_decoder(
        image_embeddings=embedding,
        image_pe=prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=True,
    )


def timed(fn) -> tuple[float, tuple[torch.Tensor, torch.Tensor]]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--chunk", type=int, default=DEFAULT_CHUNK)
    parser.add_argument("--tile-pixels", type=int, default=DEFAULT_TILE_PIXELS)
    parser.add_argument("--skip-official", action="store_true", help="time decode_points only")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    prompt_encoder, mask_decoder = build()
    embedding = torch.randn(1, 256, 64, 64, generator=torch.Generator().manual_seed(1))
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"chunk {args.chunk}, tile {args.tile_pixels} px"
    )
    print(
        f"{'batch':>5} {'official ms/prompt':>22} {'fast ms/prompt':>18} {'speedup':>8} "
        f"{'max|dlogit|':>12} {'max|logit|':>10} {'max|dIoU|':>10}"
    )
    for batch in args.batches:
        g = torch.Generator().manual_seed(batch)
        points = torch.rand(batch, 1, 2, generator=g) * 1024
        labels = torch.ones(batch, 1, dtype=torch.int64)

        fast = functools.partial(
            decode_points,
            prompt_encoder,
            mask_decoder,
            embedding,
            points,
            labels,
            chunk=args.chunk,
            tile_pixels=args.tile_pixels,
        )
        reference = functools.partial(
            official, prompt_encoder, mask_decoder, embedding, points, labels
        )

        fast()  # warm-up
        t_off, t_fast = [], []
        diff_logits = diff_iou = scale = float("nan")
        for _ in range(args.repeats):  # interleaved, so that load changes hit both
            if not args.skip_official:
                dt, expected = timed(reference)
                t_off.append(dt / batch * 1e3)
            dt, actual = timed(fast)
            t_fast.append(dt / batch * 1e3)
            if not args.skip_official:
                diff_logits = (actual[0] - expected[0]).abs().max().item()
                diff_iou = (actual[1] - expected[1]).abs().max().item()
                scale = expected[0].abs().max().item()
        fast_s = f"{min(t_fast):7.1f} ({statistics.median(t_fast):6.1f})"
        if t_off:
            off_s = f"{min(t_off):7.1f} ({statistics.median(t_off):6.1f})"
            speedup = f"{min(t_off) / min(t_fast):7.1f}x"
        else:
            off_s, speedup = "-", "-"
        print(
            f"{batch:>5} {off_s:>22} {fast_s:>18} {speedup:>8} "
            f"{diff_logits:12.2e} {scale:10.2e} {diff_iou:10.2e}"
        )
    print("times: best (median) over the repeats")


if __name__ == "__main__":
    main()
