"""Same inputs, two versions of rs-sam: are the README's example outputs identical?

Runs the README's example commands (detect-change, segment anything / prompt / HQ,
sam-objects) on the shared NAIP pair with ``--weights random`` and a fixed torch seed,
once with the code of a git revision (``--reference``, default ``HEAD``) and once with the
working tree, then compares every output: vector files row by row (same geometries as
WKB, same attributes) and rasters pixel by pixel. Used to show that a refactoring left
behaviour unchanged; prints one line per output and exits 1 on any difference.

    RS_SAM_DATA_DIR=../shared/data python benchmarks/compare_outputs.py --reference main~3

Each side runs in its own subprocess with only its own copy of ``rs_sam`` (and ``cli/``
as ``rs_sam.cli``) on ``sys.path``, the same thread count and the same seed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# One CLI run per case: (name, argv with {a}, {b}, {prompts}, {out} placeholders, outputs).
FAST = ["--weights", "random", "--points-per-side", "16", "--pred-iou-thresh", "0",
        "--stability-thresh", "0", "-q"]  # fmt: skip
CASES: list[tuple[str, list[str], list[str]]] = [
    ("detect-change",
     ["detect-change", "{a}", "{b}", "-o", "{out}/changes.gpkg",
      "--save-probability", "{out}/change_score.tif", *FAST],
     ["changes.gpkg", "change_score.tif"]),
    ("detect-change tiled",  # several chips: blending across overlaps, more polygons
     ["detect-change", "{a}", "{b}", "-o", "{out}/changes_tiled.gpkg", "--chip-size", "512",
      "--overlap", "64", "--threshold", "30", *FAST],
     ["changes_tiled.gpkg"]),
    ("segment anything",
     ["segment", "{b}", "-o", "{out}/objects.gpkg", "--chip-size", "384", "--overlap", "96",
      *FAST],
     ["objects.gpkg"]),
    ("segment prompt",
     ["segment", "{b}", "--mode", "prompt", "--prompts", "{prompts}", "-o", "{out}/masks.gpkg",
      "--multimask", "all", "--weights", "random", "-q"],
     ["masks.gpkg"]),
    ("segment --hq",
     ["segment", "{b}", "-o", "{out}/hq.gpkg", "--encoder", "sam_hq_vit_tiny", "--hq",
      "--chip-size", "512", "--overlap", "128", "--points-per-side", "8",
      "--pred-iou-thresh", "0", "--stability-thresh", "0", "--weights", "random", "-q"],
     ["hq.gpkg"]),
    ("sam-objects",
     ["sam-objects", "{b}", "-o", "{out}/sgo.tif", "--boundary", "{out}/sgb.tif",
      "--chip-size", "512", "--overlap", "128", "--points-per-side", "8",
      "--pred-iou-thresh", "0", "--stability-thresh", "0", "--min-area", "20px",
      "--weights", "random", "-q"],
     ["sgo.tif", "sgb.tif"]),
]  # fmt: skip

# Runs in the child: this side's rs_sam only, a fixed seed, then the CLI in-process.
RUNNER = """
import sys
sys.path.insert(0, sys.argv[1])
import torch, numpy as np
torch.set_num_threads(int(sys.argv[2]))
torch.manual_seed(0)
np.random.seed(0)
import rs_sam
assert rs_sam.__file__.startswith(sys.argv[1]), rs_sam.__file__
from rs_sam.cli.main import cli
cli.main(args=sys.argv[3:], prog_name="rs-sam", standalone_mode=True)
"""


def source_tree(revision: str | None, folder: Path) -> Path:
    """rs_sam/ with cli/ inside it as rs_sam/cli, from a revision or the working tree."""
    folder.mkdir(parents=True)
    if revision is None:
        shutil.copytree(ROOT / "rs_sam", folder / "rs_sam",
                        ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
        shutil.copytree(ROOT / "cli", folder / "rs_sam" / "cli",
                        ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
        return folder
    archive = folder / "src.tar"
    command = ["git", "-C", str(ROOT), "archive", "-o", str(archive), revision, "rs_sam", "cli"]
    subprocess.run(command, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(folder, filter="data")
    archive.unlink()
    (folder / "cli").rename(folder / "rs_sam" / "cli")
    return folder


def write_prompts(image: Path, path: Path) -> None:
    """Five positive points and one box (a polygon) inside the image, in its CRS."""
    import geopandas as gpd
    import rasterio
    from shapely.geometry import Point, box

    with rasterio.open(image) as src:
        left, bottom, right, top = src.bounds
        crs = src.crs
    w, h = right - left, top - bottom
    spots = [(0.2, 0.3), (0.5, 0.5), (0.7, 0.8), (0.35, 0.65), (0.8, 0.2)]
    points = [Point(left + fx * w, bottom + fy * h) for fx, fy in spots]
    shapes = [*points, box(left + 0.4 * w, bottom + 0.4 * h, left + 0.55 * w, bottom + 0.6 * h)]
    frame = gpd.GeoDataFrame({"label": [1] * 5 + [1]}, geometry=shapes, crs=crs)
    frame.to_file(path)


def run_side(tree: Path, argv: list[str], threads: int) -> float:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["RS_SAM_WEIGHTS"] = "random"
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", RUNNER, str(tree), str(threads), *argv],
                          env=env, capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"{tree}: rs-sam {' '.join(argv)} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - started


def compare_vectors(a: Path, b: Path) -> str | None:
    import geopandas as gpd

    fa, fb = gpd.read_file(a), gpd.read_file(b)
    if list(fa.columns) != list(fb.columns):
        return f"columns differ: {list(fa.columns)} vs {list(fb.columns)}"
    if len(fa) != len(fb):
        return f"{len(fa)} vs {len(fb)} features"
    if fa.crs != fb.crs:
        return f"CRS differs: {fa.crs} vs {fb.crs}"
    if list(fa.geometry.to_wkb()) != list(fb.geometry.to_wkb()):
        return "geometries differ"
    attributes = [c for c in fa.columns if c != "geometry"]
    if not fa[attributes].equals(fb[attributes]):
        return "attributes differ"
    return None


def compare_rasters(a: Path, b: Path) -> str | None:
    import numpy as np
    import rasterio

    with rasterio.open(a) as ra, rasterio.open(b) as rb:
        if ra.profile != rb.profile:
            return f"profiles differ: {ra.profile} vs {rb.profile}"
        da, db = ra.read(), rb.read()
    if not np.array_equal(da, db, equal_nan=True):
        return f"{int((da != db).sum())} pixels differ"
    return None


def describe(path: Path) -> str:
    if path.suffix == ".tif":
        import rasterio

        with rasterio.open(path) as src:
            return f"{src.count}x{src.height}x{src.width} {src.dtypes[0]}"
    import geopandas as gpd

    return f"{len(gpd.read_file(path))} features"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reference", default="HEAD", help="git revision to compare against")
    parser.add_argument("--data-dir", default=os.environ.get("RS_SAM_DATA_DIR"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--keep", type=Path, default=None, help="keep the outputs here")
    args = parser.parse_args()
    if not args.data_dir:
        parser.error("set RS_SAM_DATA_DIR or --data-dir (the shared data with rasters/naip)")
    naip = Path(args.data_dir) / "rasters" / "naip"
    a, b = naip / "m_4709963_se_14_1_20090818.tif", naip / "m_4709963_se_14_1_20200831.tif"
    work = Path(tempfile.mkdtemp(prefix="rs-sam-compare-"))
    try:
        sides = {"reference": source_tree(args.reference, work / "ref" / "src"),
                 "working tree": source_tree(None, work / "new" / "src")}  # fmt: skip
        prompts = work / "prompts.gpkg"
        write_prompts(b, prompts)
        differences = 0
        for name, argv, outputs in CASES:
            seconds = {}
            for side, tree in sides.items():
                out = tree.parent / "out"
                out.mkdir(exist_ok=True)
                filled = [x.format(a=a, b=b, prompts=prompts, out=out) for x in argv]
                seconds[side] = run_side(tree, filled, args.threads)
            for output in outputs:
                ref, new = (sides[s].parent / "out" / output for s in sides)
                check = compare_rasters if output.endswith(".tif") else compare_vectors
                problem = check(ref, new)
                differences += problem is not None
                verdict = "IDENTICAL" if problem is None else f"DIFFERENT: {problem}"
                print(f"{name:18} {output:18} {describe(ref):22} {verdict} "
                      f"({seconds['reference']:.1f} s / {seconds['working tree']:.1f} s)",
                      flush=True)  # fmt: skip
        print(f"{differences} of {sum(len(c[2]) for c in CASES)} outputs differ "
              f"(reference {args.reference} vs the working tree)")  # fmt: skip
        return 1 if differences else 0
    finally:
        if args.keep:
            shutil.copytree(work, args.keep, dirs_exist_ok=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
