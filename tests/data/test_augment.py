"""PairAugment: one geometric transform for both dates, the mask and cached feature maps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from rs_sam.data.augment import PairAugment, apply_pair_transform
from rs_sam.data.change_datasets import (
    ChangeDatasetError,
    ChangeFolderDataset,
    ChangeSample,
)
from rs_sam.data.labels import IGNORE
from rs_sam.errors import ConfigError

STRIDES = (4, 8, 16, 32)


def _pool(image: torch.Tensor) -> list[torch.Tensor]:
    """A stand-in pyramid that is exactly flip/rot90-equivariant (average pooling)."""
    return [F.avg_pool2d(image[None], s)[0] for s in STRIDES]


def _sample(height: int = 64, width: int = 64, *, features: bool = True) -> ChangeSample:
    """Asymmetric content; the mask is a pointwise function of image_a, b = a + 1000."""
    generator = torch.Generator().manual_seed(0)
    image_a = torch.rand(3, height, width, generator=generator) * 255
    image_b = image_a + 1000
    mask = (image_a[0] > 128).to(torch.int64)
    mask[image_a[1] > 240] = IGNORE
    sample: ChangeSample = {"image_a": image_a, "image_b": image_b, "mask": mask, "name": "s"}
    if features:
        sample["features_a"] = _pool(image_a)
        sample["features_b"] = _pool(image_b)
    return sample


def _aligned(sample: ChangeSample, *, swapped: bool = False) -> bool:
    """True when mask, the other date and the maps still sit on the pixels of image_a."""
    first, second = sample["image_a"], sample["image_b"]
    if swapped:
        first, second = second, first
    expected = (first[0] > 128).to(torch.int64)
    expected[first[1] > 240] = IGNORE
    return (
        torch.equal(sample["mask"], expected)
        and torch.allclose(second - first, torch.full_like(first, 1000.0))
        and all(
            torch.allclose(f, p, atol=1e-4)
            for f, p in zip(sample["features_a"], _pool(sample["image_a"]), strict=True)
        )
        and all(
            torch.allclose(f, p, atol=1e-4)
            for f, p in zip(sample["features_b"], _pool(sample["image_b"]), strict=True)
        )
    )


def _symmetry(original: torch.Tensor, moved: torch.Tensor) -> tuple[bool, int] | None:
    """Which (hflip, quarter turns) maps ``original`` onto ``moved``."""
    for flip in (False, True):
        for turns in range(4):
            candidate = apply_pair_transform(
                {"image_a": original, "image_b": original, "mask": original[0], "name": ""},
                hflip=flip,
                turns=turns,
            )["image_a"]
            if torch.equal(candidate, moved):
                return flip, turns
    return None


@pytest.mark.parametrize("seed", range(12))
def test_random_transforms_keep_everything_aligned(seed: int) -> None:
    sample = _sample()
    out = PairAugment(p=0.5, seed=seed)(sample)
    assert _aligned(out)
    assert _symmetry(sample["image_a"], out["image_a"]) is not None


@pytest.mark.parametrize(
    ("hflip", "vflip", "turns", "swap"),
    [
        (True, False, 0, False),
        (False, True, 0, False),
        (False, False, 1, False),
        (True, True, 3, True),
    ],
)
def test_each_operation_moves_all_entries(hflip: bool, vflip: bool, turns: int, swap: bool) -> None:
    sample = _sample(64, 96)
    out = apply_pair_transform(sample, hflip=hflip, vflip=vflip, turns=turns, swap=swap)
    assert _aligned(out, swapped=swap)
    expected_hw = (96, 64) if turns % 2 else (64, 96)
    assert out["mask"].shape == expected_hw and out["image_a"].shape[-2:] == expected_hw
    assert out["features_a"][0].shape[-2:] == (expected_hw[0] // 4, expected_hw[1] // 4)
    if hflip and not vflip and not turns:
        assert torch.equal(out["mask"], sample["mask"].flip(-1))
    if turns == 1:
        assert torch.equal(out["mask"], torch.rot90(sample["mask"], 1))


def test_swap_exchanges_dates_and_features_not_the_mask() -> None:
    sample = _sample()
    out = PairAugment(hflip=False, vflip=False, rot90=False, swap_dates=True, p=1.0)(sample)
    assert torch.equal(out["image_a"], sample["image_b"]) and torch.equal(
        out["image_b"], sample["image_a"]
    )
    assert torch.equal(out["features_a"][2], sample["features_b"][2])
    assert torch.equal(out["mask"], sample["mask"])


def test_p_zero_is_identity_and_input_is_not_modified() -> None:
    sample = _sample()
    before = {k: v.clone() for k, v in sample.items() if isinstance(v, torch.Tensor)}
    out = PairAugment(p=0.0, swap_dates=True)(sample)
    assert all(torch.equal(out[k], v) for k, v in before.items())  # type: ignore[literal-required]
    flipped = PairAugment(vflip=False, rot90=False, p=1.0)(sample)
    assert torch.equal(flipped["image_a"], sample["image_a"].flip(-1))
    assert all(torch.equal(sample[k], v) for k, v in before.items())  # type: ignore[literal-required]
    assert out["name"] == "s"


def test_seed_is_reproducible_and_reaches_all_eight_symmetries() -> None:
    sample = _sample(features=False)

    def run(seed: int) -> list[tuple[bool, int] | None]:
        augment = PairAugment(seed=seed)
        return [_symmetry(sample["image_a"], augment(sample)["image_a"]) for _ in range(64)]

    first = run(3)
    assert first == run(3)
    assert first != run(4)
    assert None not in first and len(set(first)) == 8


def test_dataloader_workers_draw_different_transforms() -> None:
    class Same(Dataset):
        def __len__(self) -> int:
            return 16

        def __getitem__(self, index: int) -> ChangeSample:
            return PAIR_AUGMENT(_sample(16, 16, features=False))

    loader = DataLoader(Same(), batch_size=None, num_workers=2)
    draws = [_symmetry(_sample(16, 16, features=False)["image_a"], s["image_a"]) for s in loader]
    by_worker = draws[0::2], draws[1::2]  # batches alternate between the two workers
    assert by_worker[0] != by_worker[1]


PAIR_AUGMENT = PairAugment(seed=11)


def test_folder_dataset_with_augment_keeps_mask_on_the_change(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 200, (40, 56, 3), dtype=np.uint8)
    b = a.copy()
    b[5:15, 30:50] = 250
    label = np.zeros((40, 56), np.uint8)
    label[5:15, 30:50] = 255
    for folder, array in (("A", a), ("B", b), ("label", label)):
        (tmp_path / folder).mkdir()
        Image.fromarray(array).save(tmp_path / folder / "x.png")
    dataset = ChangeFolderDataset(tmp_path, transforms=PairAugment(swap_dates=True, p=0.5, seed=1))
    for _ in range(8):
        sample = dataset[0]
        changed = (sample["image_a"] != sample["image_b"]).any(0)
        assert torch.equal(changed, sample["mask"].bool())


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"p=1\.5 is invalid"):
        PairAugment(p=1.5)
    with pytest.raises(ChangeDatasetError, match=r"lacks \['mask'\]"):
        PairAugment()({"image_a": torch.zeros(3, 4, 4), "image_b": torch.zeros(3, 4, 4)})  # type: ignore[typeddict-item]
    bad = _sample(8, 8, features=False)
    bad["mask"] = torch.zeros(8, 7, dtype=torch.int64)
    with pytest.raises(ChangeDatasetError, match="different sizes"):
        PairAugment()(bad)
    one_date = _sample(8, 8, features=False)
    one_date["features_a"] = [torch.zeros(2, 2, 2)]
    with pytest.raises(ChangeDatasetError, match="features of one date only"):
        PairAugment()(one_date)
