"""GPU checks and timings of the model code (reported, never asserted by the test suite).

Needs only torch, segment-anything(-hq) and segmentation-models-pytorch, so it runs on a
machine without the geospatial stack. Random weights throughout (speed and numerical
agreement do not depend on them). Checks, on CUDA:

1. ``decode_points`` (which runs the official decoder on a GPU, where the CPU-oriented
   reorganisation does not pay) against the official decoder in float32 on the CPU,
   next to the official decoder's own CUDA-vs-CPU error;
2. SAM-CD and UNetFormer (+ SSRS losses) training steps: finite losses, gradients only
   where they belong;
and times (CUDA events, median of repeats): image encoders at 1024, 256-prompt decoding
official vs fast, SAM-CD and UNetFormer steps.

    python benchmarks/gpu.py [--encoders mobile_sam sam_vit_b] [--json out.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import warnings

import torch


def cuda_time(fn, repeats: int = 10, warmup: int = 3) -> float:
    """Median milliseconds of ``fn()`` on the current CUDA device."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    out, ref = out.double().cpu(), ref.double().cpu()
    return float((out - ref).norm() / ref.norm().clamp(min=1e-30))


def check_decoder(encoder, report: dict) -> None:
    from rs_sam.models.fast_decoder import decode_points
    from rs_sam.models.mask_proposals import point_grid

    pe, md = encoder.prompt_encoder, encoder.mask_decoder
    gen = torch.Generator(device="cpu").manual_seed(1)
    embedding = torch.randn(1, 256, 64, 64, generator=gen).cuda()
    points = point_grid(16, encoder.input_size).cuda()[:, None, :]
    labels = torch.ones(points.shape[:2], dtype=torch.int64, device="cuda")

    def official(emb, pts, lab, pe_, md_):
        sparse, dense = pe_(points=(pts, lab), boxes=None, masks=None)
        return md_(image_embeddings=emb, image_pe=pe_.get_dense_pe(),
                   sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                   multimask_output=True)  # fmt: skip

    with torch.inference_mode():
        fast_logits, fast_iou = decode_points(pe, md, embedding, points, labels)
        off_logits, _ = official(embedding, points, labels, pe, md)
        # reference: the official decoder in float32 on the CPU (segment_anything casts
        # prompt coordinates to float32, so it cannot run in float64)
        pe_cpu, md_cpu = copy.deepcopy(pe).cpu(), copy.deepcopy(md).cpu()
        ref_logits, ref_iou = official(embedding.cpu(), points.cpu(), labels.cpu(),
                                       pe_cpu, md_cpu)  # fmt: skip
        report["decoder_rel_err_fast_cuda_vs_official_cpu"] = rel_err(fast_logits, ref_logits)
        report["decoder_rel_err_official_cuda_vs_official_cpu"] = rel_err(off_logits, ref_logits)
        report["iou_rel_err_fast_cuda_vs_official_cpu"] = rel_err(fast_iou, ref_iou)
        report["decoder_ms_official_256_prompts"] = cuda_time(
            lambda: official(embedding, points, labels, pe, md)
        )
        report["decoder_ms_fast_256_prompts"] = cuda_time(
            lambda: decode_points(pe, md, embedding, points, labels)
        )


def time_encoder(name: str, report: dict) -> object:
    from rs_sam.models.recipe import ModelRecipe, build_encoder

    encoder = build_encoder(ModelRecipe(name, weights="random", device="cuda"))
    images = torch.rand(1, 3, 1024, 1024, device="cuda") * 255
    with torch.inference_mode():
        report[f"{name}_encoder_ms_fp32"] = cuda_time(lambda: encoder.embed(images), repeats=5)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            report[f"{name}_encoder_ms_bf16_autocast"] = cuda_time(
                lambda: encoder.embed(images), repeats=5
            )
    return encoder


def train_steps(report: dict) -> None:
    from rs_sam.losses.segment import SegmentationLoss
    from rs_sam.models.recipe import ModelRecipe, build_encoder
    from rs_sam.models.samcd import SamCD
    from rs_sam.models.unetformer import UNetFormer

    encoder = build_encoder(ModelRecipe("mobile_sam", weights="random", device="cuda"))
    # SAM-CD: BCE on change (the full ChangeLoss lives beside the CLI stack)
    samcd = SamCD(encoder, residual_blocks=6).cuda().train()
    opt = torch.optim.AdamW([p for p in samcd.parameters() if p.requires_grad], lr=1e-3)
    a = torch.rand(4, 3, 256, 256, device="cuda") * 255
    b = torch.rand(4, 3, 256, 256, device="cuda") * 255
    target = (torch.rand(4, 1, 256, 256, device="cuda") > 0.8).float()

    def samcd_step() -> float:
        out = samcd(a, b)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(out.change, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return float(loss)

    loss = samcd_step()
    frozen_grads = sum(p.grad is not None for p in samcd.encoder.parameters())
    report["samcd_loss_finite"] = bool(torch.isfinite(torch.tensor(loss)))
    report["samcd_frozen_encoder_params_with_grad"] = int(frozen_grads)
    report["samcd_step_ms_batch4_chip256"] = cuda_time(samcd_step, repeats=5)

    net = UNetFormer(encoder, num_classes=6, aux_head=True).cuda().train()
    criterion = SegmentationLoss()
    opt2 = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-3)
    images = torch.rand(4, 3, 512, 512, device="cuda") * 255
    labels = torch.randint(0, 6, (4, 512, 512), device="cuda")
    objects = torch.randint(0, 50, (4, 512, 512), device="cuda")
    boundary = (torch.rand(4, 512, 512, device="cuda") > 0.9).float()

    def unetformer_step() -> dict:
        logits, aux = net(images)
        losses = criterion(logits, labels, objects=objects, boundary=boundary, aux_logits=aux)
        opt2.zero_grad()
        losses["loss"].backward()
        opt2.step()
        return {k: float(v) for k, v in losses.items()}

    losses = unetformer_step()
    report["unetformer_losses"] = losses
    report["unetformer_losses_finite"] = all(
        torch.isfinite(torch.tensor(v)) for v in losses.values()
    )
    report["unetformer_step_ms_batch4_chip512"] = cuda_time(unetformer_step, repeats=5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoders", nargs="+", default=["mobile_sam", "sam_vit_b"])
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device")
    warnings.simplefilter("ignore")
    torch.manual_seed(0)
    report: dict = {"device": torch.cuda.get_device_name(), "torch": torch.__version__}
    for name in args.encoders:
        encoder = time_encoder(name, report)
        check_decoder(encoder, report)
        for key in list(report):
            if key.startswith("decoder_") or key.startswith("iou_"):
                report[f"{name}_{key}"] = report.pop(key)
        del encoder
        torch.cuda.empty_cache()
    train_steps(report)
    report["peak_gpu_memory_mb"] = torch.cuda.max_memory_allocated() / 2**20
    text = json.dumps(report, indent=2)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text)
    print(text)


if __name__ == "__main__":
    main()
