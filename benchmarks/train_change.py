"""Benchmark SAM-CD training and inference on CPU (reported, never asserted).

1. Training steps per second with the frozen encoder run every step versus read from the
   feature cache (after the first epoch filled it).
2. Inference megapixels per second of ``detect-change --model`` (trained head) versus the
   zero-shot path, on the same synthetic pair.

    python benchmarks/train_change.py --encoder mobile_sam --chip-size 256 --steps 10

Random weights (speed does not depend on them). ``--tiny`` uses the reduced test encoder.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.helpers.synthetic


def write_folder(root: Path, count: int, size: int) -> Path:
    """A LEVIR-style A/ B/ label/ folder of synthetic pairs."""
    rng = np.random.default_rng(0)
    for folder in ("A", "B", "label"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        base = rng.integers(30, 200, size=(size, size, 3), dtype=np.uint8)
        later, label = base.copy(), np.zeros((size, size), np.uint8)
        r, c = rng.integers(0, size // 2, size=2)
        later[r : r + size // 4, c : c + size // 4] = 240
        label[r : r + size // 4, c : c + size // 4] = 255
        Image.fromarray(base).save(root / "A" / f"{i}.png")
        Image.fromarray(later).save(root / "B" / f"{i}.png")
        Image.fromarray(label).save(root / "label" / f"{i}.png")
    return root


def time_training(args: argparse.Namespace, root: Path, cache: bool, workdir: Path) -> float:
    """Steps per second of a Lightning fit after a warm-up epoch."""
    import lightning

    from rs_sam.training.change_data import ChangeDataModule
    from rs_sam.training.change_task import ChangeTask

    task = ChangeTask(
        encoder=args.encoder, weights="random", tiny_encoder=args.tiny, chip_size=args.chip_size
    )
    data = ChangeDataModule(
        train=[{"layout": "folder", "root": str(root)}],
        chip_size=args.chip_size,
        batch_size=args.batch_size,
        cache_features=cache,
        cache_dir=str(workdir / "cache"),
    )
    data.attach_encoder(task.model.encoder, encoder_sha256=None)
    kwargs = dict(
        accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
    )  # fmt: skip
    # Warm-up epoch (fills the cache when enabled), then a timed epoch.
    lightning.Trainer(max_epochs=1, **kwargs).fit(task, datamodule=data)
    trainer = lightning.Trainer(max_epochs=1, **kwargs)
    start = time.perf_counter()
    trainer.fit(task, datamodule=data)
    return trainer.global_step / (time.perf_counter() - start)


def time_inference(args: argparse.Namespace, root: Path, workdir: Path) -> tuple[float, float]:
    """MP/s of the trained head and of zero-shot detection on one synthetic pair."""
    import lightning

    from rs_sam.change import ChangeSettings, detect
    from rs_sam.models import recipe
    from rs_sam.models.encoders import load_encoder
    from rs_sam.training.change_data import ChangeDataModule
    from rs_sam.training.change_task import ChangeTask
    from tests.helpers.synthetic import paint_change, texture, write_raster

    task = ChangeTask(
        encoder=args.encoder, weights="random", tiny_encoder=args.tiny, chip_size=args.chip_size
    )
    data = ChangeDataModule(train=[{"layout": "folder", "root": str(root)}],
                            chip_size=args.chip_size, batch_size=args.batch_size)  # fmt: skip
    trainer = lightning.Trainer(
        max_steps=1, accelerator="cpu", logger=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=workdir, limit_val_batches=0,
    )  # fmt: skip
    trainer.fit(task, datamodule=data)
    ckpt = workdir / "head.ckpt"
    trainer.save_checkpoint(ckpt, weights_only=True)
    image = (texture(args.raster_size, args.raster_size, seed=3) * 200 + 20).astype(np.uint8)
    a = write_raster(workdir / "a.tif", image)
    b = write_raster(workdir / "b.tif", paint_change(image, slice(50, 150), slice(50, 150), 250))
    supervised = detect.detect_change(
        a, b, workdir / "s.gpkg", settings=ChangeSettings(model=ckpt), show_progress=False
    )
    if args.tiny:
        recipe.load_encoder = lambda name, **k: load_encoder(name, **{**k, "tiny": True})
    zero_shot = detect.detect_change(
        a, b, workdir / "z.gpkg", show_progress=False,
        settings=ChangeSettings(encoder=args.encoder, weights="random",
                                chip_size=args.chip_size, points_per_side=args.points_per_side),
    )  # fmt: skip
    return (
        supervised.megapixels / supervised.seconds,
        zero_shot.megapixels / zero_shot.seconds,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="mobile_sam")
    parser.add_argument("--tiny", action="store_true", help="the reduced test encoder")
    parser.add_argument("--chip-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--raster-size", type=int, default=1024)
    parser.add_argument("--points-per-side", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    tiny = " (tiny)" if args.tiny else ""
    print(f"encoder={args.encoder}{tiny} chip={args.chip_size} batch={args.batch_size} "
          f"pairs={args.pairs} threads={args.threads} (random weights)")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        root = write_folder(workdir / "data", args.pairs, args.chip_size)
        plain = time_training(args, root, cache=False, workdir=workdir)
        cached = time_training(args, root, cache=True, workdir=workdir)
        print(f"training steps/s: encoder every step {plain:.3f}, feature cache {cached:.3f} "
              f"({cached / plain:.1f}x)")  # fmt: skip
        head_mps, zero_mps = time_inference(args, root, workdir)
        print(f"inference MP/s on a {args.raster_size}^2 pair: trained head {head_mps:.3f}, "
              f"zero-shot ({args.points_per_side} points/side) {zero_mps:.3f} "
              f"({head_mps / zero_mps:.1f}x)")  # fmt: skip


if __name__ == "__main__":
    main()
