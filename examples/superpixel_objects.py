"""Superpixel object and boundary maps: stand-ins for SAM objects in the SSRS losses.

Without pretrained SAM weights (as on the development machines), ``rs-sam sam-objects``
gives meaningless objects. SLIC superpixels are a real, image-driven over-segmentation, so
they exercise the object-consistency and boundary losses on real data; with SAM weights,
use ``rs-sam sam-objects`` instead. Output layout matches what the segmentation datasets
look up: ``OUT/objects/<sample name>.tif`` and ``OUT/boundaries/<sample name>.tif``.

    pip install 'rs-sam[experiments]'
    python examples/superpixel_objects.py $RS_SAM_DATA_DIR/segmentation/dubai_aerial runs/dubai-sp
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import rasterio

from rs_sam.data.image_files import read_image
from rs_sam.data.segment_datasets import find_pairs
from rs_sam.segmentation.sam_objects import boundaries


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="dataset root with */images and */masks")
    parser.add_argument("out", type=Path, help="output folder (objects/ and boundaries/)")
    parser.add_argument("--image-dir", default="images")
    parser.add_argument("--label-dir", default="masks")
    parser.add_argument("--pixels", type=int, default=1600, help="mean superpixel area (px)")
    parser.add_argument("--compactness", type=float, default=10.0)
    args = parser.parse_args()
    try:
        from skimage.segmentation import slic
    except ImportError:
        print("needs scikit-image: pip install 'rs-sam[experiments]'", file=sys.stderr)
        return 1
    pairs = find_pairs(args.root, image_dir=args.image_dir, label_dir=args.label_dir)
    for pair in pairs:
        image = read_image(pair.image)[:3].transpose(1, 2, 0)
        segments = max(1, image.shape[0] * image.shape[1] // args.pixels)
        ids = slic(image, n_segments=segments, compactness=args.compactness, start_label=1)
        for kind, data in (("objects", ids.astype(np.uint32)), ("boundaries", boundaries(ids))):
            path = args.out / kind / f"{pair.name}.tif"
            path.parent.mkdir(parents=True, exist_ok=True)
            profile = {"driver": "GTiff", "width": ids.shape[1], "height": ids.shape[0],
                       "count": 1, "dtype": "uint32" if kind == "objects" else "uint8",
                       "compress": "deflate"}  # fmt: skip
            with rasterio.open(path, "w", **profile) as dst:
                dst.write(data.astype(profile["dtype"]), 1)
        print(f"{pair.name}: {ids.max()} superpixels")
    return 0


if __name__ == "__main__":
    sys.exit(main())
