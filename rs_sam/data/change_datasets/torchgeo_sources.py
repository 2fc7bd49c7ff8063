"""torchgeo's LEVIR-CD and OSCD datasets (data already on disk) as change samples."""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from rs_sam.data.change_datasets.pair_files import scale_pair
from rs_sam.data.change_datasets.samples import (
    ChangeDatasetError,
    ChangeDatasetNotFoundError,
    ChangeSample,
    SampleTransform,
)
from rs_sam.data.image_files import chip_index, chip_name, crop_chip, image_size
from rs_sam.data.labels import IGNORE
from rs_sam.data.normalize import PERCENTILES
from rs_sam.errors import ConfigError


class TorchgeoChangeDataset(Dataset[ChangeSample]):
    """A torchgeo change dataset (``{"image": (2, C, H, W), "mask": (1, H, W)}``) as samples.

    Built by :func:`torchgeo_change_dataset`. Whole pairs, or chips of them when
    ``chip_size`` is set (the chip grid of the folder datasets: top-left anchored, edge chips
    padded with image 0 and mask 255). Non-uint8 imagery (OSCD) gets the joint per-pair
    stretch of the folder datasets, computed on the whole pair. torchgeo clamps labels to 0/1.
    """

    def __init__(
        self,
        dataset: Any,
        names: Sequence[str],
        sizes: Sequence[tuple[int, int]],
        *,
        rgb: bool,
        chip_size: int | None = None,
        overlap: int = 0,
        percentiles: tuple[float, float] = PERCENTILES,
        transforms: SampleTransform | None = None,
    ) -> None:
        self.dataset = dataset
        self.names = list(names)
        self.rgb = rgb
        self.percentiles = percentiles
        self.transforms = transforms
        self.normalisation = (
            "uint8 as is"
            if rgb
            else f"joint {percentiles[0]:g}-{percentiles[1]:g} percentile stretch per pair"
        )
        self._index = chip_index(sizes, chip_size, overlap)
        self._last: tuple[int, ChangeSample] | None = None  # chips of a pair come in a row

    def __len__(self) -> int:
        return len(self._index)

    def __getitem__(self, index: int) -> ChangeSample:
        pair_index, window = self._index[index]
        sample = self._pair(pair_index)
        if window is not None:
            image_a = crop_chip(sample["image_a"].numpy(), window, 0)
            image_b = crop_chip(sample["image_b"].numpy(), window, 0)
            mask = crop_chip(sample["mask"].numpy(), window, IGNORE)
            sample = {
                "image_a": torch.from_numpy(image_a),
                "image_b": torch.from_numpy(image_b),
                "mask": torch.from_numpy(mask),
                "name": chip_name(sample["name"], window),
            }
        else:
            sample = dict(sample)  # type: ignore[assignment]
        return self.transforms(sample) if self.transforms is not None else sample

    def _pair(self, pair_index: int) -> ChangeSample:
        """One whole pair, read through torchgeo (the last one is kept for its next chip)."""
        if self._last is not None and self._last[0] == pair_index:
            return self._last[1]
        item = self.dataset[pair_index]
        image = item["image"].numpy().astype(np.float32)  # (2, C, H, W)
        if self.rgb:
            image_a, image_b = image[0], image[1]
        else:
            image_a, image_b = scale_pair(image[0], image[1], self.percentiles, force=True)
        sample: ChangeSample = {
            "image_a": torch.from_numpy(np.ascontiguousarray(image_a)),
            "image_b": torch.from_numpy(np.ascontiguousarray(image_b)),
            "mask": item["mask"].reshape(item["mask"].shape[-2:]).to(torch.int64),
            "name": self.names[pair_index],
        }
        self._last = (pair_index, sample)
        return sample


def torchgeo_change_dataset(
    name: Literal["levircd", "oscd"],
    root: str | Path,
    split: str,
    *,
    chip_size: int | None = None,
    overlap: int = 0,
    transforms: SampleTransform | None = None,
) -> TorchgeoChangeDataset:
    """torchgeo's ``LEVIRCD`` or ``OSCD`` (RGB bands) over data already on disk; never downloads.

    Args:
        name: ``"levircd"`` (``root/A``, ``root/B``, ``root/label`` with files named
            ``<split>_*.png``) or ``"oscd"`` (the official extracted folders, 13 bands per date).
        root: Folder torchgeo reads.
        split: ``train``/``val``/``test`` (LEVIR-CD) or ``train``/``test`` (OSCD).
        chip_size: Cut every pair into square chips of this side (LEVIR-CD's 1024x1024
            pairs and OSCD's cities are too large for one batch), or None for whole pairs.
        overlap: Pixels shared by neighbouring chips.
        transforms: Applied to every sample last.

    Raises:
        ConfigError: Unknown ``name`` or ``split``.
        ChangeDatasetNotFoundError: torchgeo finds no data under ``root``.
        ChangeDatasetError: LEVIR-CD files of A, B and label do not match one to one
            (torchgeo pairs them by sorted position, so a missing label would shift them).
    """
    from torchgeo.datasets import LEVIRCD, OSCD, DatasetNotFoundError

    splits = {"levircd": ("train", "val", "test"), "oscd": ("train", "test")}
    if name not in splits:
        raise ConfigError(f"unknown torchgeo change dataset {name!r}; choose one of: levircd, oscd")
    if split not in splits[name]:
        raise ConfigError(f"split {split!r} is not one of {name}'s: {', '.join(splits[name])}")
    try:
        if name == "levircd":
            dataset: Any = LEVIRCD(root=str(root), split=split, download=False)
        else:
            dataset = OSCD(root=str(root), split=split, bands=OSCD.rgb_bands, download=False)
    except DatasetNotFoundError as err:
        raise ChangeDatasetNotFoundError(
            f"torchgeo {name} found no data under {root} (downloads are off); "
            f"put the extracted dataset there"
        ) from err
    except IndexError as err:  # OSCD indexes 13 band files per date
        raise ChangeDatasetError(
            f"torchgeo oscd under {root} lacks some of the 13 Sentinel-2 band files per date; "
            "use the official extracted folders (imgs_1_rect, imgs_2_rect)"
        ) from err
    if name == "levircd":
        names = _levircd_names(dataset, root, split)
    else:
        names = [files["region"] for files in dataset.files]
    # Chip grids come from the label headers: no image is read before it is needed.
    sizes = [image_size(Path(files["mask"])) for files in dataset.files]
    return TorchgeoChangeDataset(
        dataset,
        names,
        sizes,
        rgb=name == "levircd",
        chip_size=chip_size,
        overlap=overlap,
        transforms=transforms,
    )


def _levircd_names(dataset: Any, root: str | Path, split: str) -> list[str]:
    """Pair names of torchgeo's LEVIRCD, after checking that A, B and label match 1:1."""
    names = []
    for files in dataset.files:
        stems = {Path(files[k]).name for k in ("image1", "image2", "mask")}
        if len(stems) != 1:
            raise ChangeDatasetError(
                f"torchgeo levircd paired {sorted(stems)} under {root}: A/, B/ and label/ "
                f"must hold the same {split}_*.png files (a label is missing?)"
            )
        names.append(stems.pop())
    counts = [len(glob.glob(os.path.join(str(root), d, f"{split}*.png"))) for d in "AB"]
    counts.append(len(glob.glob(os.path.join(str(root), "label", f"{split}*.png"))))
    if len(set(counts)) != 1:
        raise ChangeDatasetError(
            f"torchgeo levircd under {root} has {counts[0]}/{counts[1]}/{counts[2]} "
            f"{split}_*.png files in A/B/label; every pair needs all three"
        )
    return names
