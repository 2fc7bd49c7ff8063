"""FeatureCache: keyed folders, atomic entries, damaged entries recomputed; precompute.

Change pairs (the defaults) and single-image segmentation samples share one cache.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from rs_sam.data.augment import PairAugment
from rs_sam.data.change_datasets import ChangeSample
from rs_sam.errors import ConfigError
from rs_sam.training import feature_cache
from rs_sam.training.feature_cache import (
    CACHE_FORMAT,
    CachedFeatureDataset,
    FeatureCache,
    FeatureCacheMissError,
    FeatureCacheWarning,
    precompute,
)

FIELDS = {
    "encoder_name": "mobile_sam",
    "checkpoint_sha256": "ab" * 32,
    "input_size": 1024,
    "chip_size": 256,
    "normalisation": "uint8 as is",
}


def _cache(root: Path, **changes) -> FeatureCache:
    return FeatureCache(root, **{**FIELDS, **changes})


def _maps(seed: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [
        torch.randn(c, s, s, generator=generator) for c, s in ((8, 16), (8, 8), (16, 4), (16, 2))
    ]


class PoolEncoder:
    """Stand-in encoder: average pooling at strides 4..32 (exactly flip-equivariant)."""

    def __init__(self) -> None:
        self.images = 0

    def __call__(self, images: torch.Tensor) -> SimpleNamespace:
        self.images += images.shape[0]
        return SimpleNamespace(features=[F.avg_pool2d(images, s) for s in (4, 8, 16, 32)])


class Chips(Dataset):
    """Deterministic 64 x 64 samples named ``chip/<i>``."""

    transforms = None

    def __init__(self, count: int = 5, names: list[str] | None = None) -> None:
        self.names = names or [f"chip/{i}" for i in range(count)]

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> ChangeSample:
        generator = torch.Generator().manual_seed(index)
        image_a = torch.rand(3, 64, 64, generator=generator) * 255
        image_b = torch.rand(3, 64, 64, generator=generator) * 255
        mask = (image_a[0] > image_b[0]).to(torch.int64)
        return {"image_a": image_a, "image_b": image_b, "mask": mask, "name": self.names[index]}


class Scenes(Dataset):
    """Deterministic single-image (segmentation) samples named ``scene/<i>``."""

    transforms = None

    def __init__(self, count: int = 3) -> None:
        self.count = count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> dict:
        generator = torch.Generator().manual_seed(100 + index)
        image = torch.rand(3, 64, 64, generator=generator) * 255
        mask = (image[0] > 127).to(torch.int64)
        return {"image": image, "mask": mask, "name": f"scene/{index}"}


def _pooled(*images: torch.Tensor) -> list[list[torch.Tensor]]:
    """What PoolEncoder gives for each image (``[image][level]``)."""
    maps = PoolEncoder()(torch.stack(images)).features
    return [[m[i] for m in maps] for i in range(len(images))]


def _close(got: list[torch.Tensor], want: list[torch.Tensor], atol: float = 1e-6) -> bool:
    return len(got) == len(want) and all(
        torch.allclose(g, w, atol=atol) for g, w in zip(got, want, strict=True)
    )


# --- key --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("encoder_name", "sam_vit_b"),
        ("checkpoint_sha256", "cd" * 32),
        ("checkpoint_sha256", None),
        ("input_size", 512),
        ("chip_size", 512),
        ("normalisation", "joint stretch low=[1] high=[2]"),
        ("half", True),
        ("dataset_id", "/data/levir"),
    ],
)
def test_key_changes_with_every_field(tmp_path: Path, field: str, value: object) -> None:
    base = _cache(tmp_path)
    other = _cache(tmp_path, **{field: value})
    assert other.key != base.key and other.folder != base.folder
    assert len(base.key) == 64 and int(base.key, 16) >= 0
    assert _cache(tmp_path).key == base.key


def test_stale_entries_are_never_used(tmp_path: Path) -> None:
    old = _cache(tmp_path, chip_size=128)
    old.put("x", [_maps(0), _maps(1)])
    new = _cache(tmp_path)
    assert new.get("x") is None and "x" not in new
    # Even an entry file moved into the new folder is refused: it records its key.
    os.replace(old.path("x"), new.path("x"))
    with pytest.warns(FeatureCacheWarning, match="written for another cache key"):
        assert new.get("x") is None


def test_invalid_fields_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="checkpoint_sha256='abc'"):
        _cache(tmp_path, checkpoint_sha256="abc")
    with pytest.raises(ConfigError, match="chip_size=0"):
        _cache(tmp_path, chip_size=0)
    with pytest.raises(ConfigError, match="normalisation=''"):
        _cache(tmp_path, normalisation="")


def test_format_1_entries_are_never_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert CACHE_FORMAT == 2
    with monkeypatch.context() as patch:
        patch.setattr(feature_cache, "CACHE_FORMAT", 1)
        old = _cache(tmp_path)
    assert '"format": 1' in (old.folder / "meta.json").read_text()
    old_entry = {"key": old.key, "sample_id": "x", "features_a": _maps(0), "features_b": _maps(1)}
    torch.save(old_entry, old.path("x"))
    new = _cache(tmp_path)
    assert new.key != old.key and new.folder != old.folder  # another key folder
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert "x" not in new and new.get("x") is None
    # A format-1 layout in the new folder (even claiming the new key) is refused too.
    torch.save({**old_entry, "key": new.key}, new.path("x"))
    with pytest.warns(FeatureCacheWarning, match="not a feature-cache entry"):
        assert new.get("x") is None


# --- entries --------------------------------------------------------------------------------------


def test_round_trip_is_exact_and_loads_weights_only(tmp_path: Path) -> None:
    cache = _cache(tmp_path)
    features_a, features_b = _maps(0), _maps(1)
    cache.put("Szada/1:r0_c256", (features_a, features_b))
    assert "Szada/1:r0_c256" in cache and cache.path("Szada/1:r0_c256").parent == cache.folder
    got_a, got_b = cache.get("Szada/1:r0_c256")
    assert all(torch.equal(x, y) for x, y in zip(got_a, features_a, strict=True))
    assert all(torch.equal(x, y) for x, y in zip(got_b, features_b, strict=True))
    entry = torch.load(cache.path("Szada/1:r0_c256"), weights_only=True)
    assert entry["key"] == cache.key and entry["sample_id"] == "Szada/1:r0_c256"
    assert set(entry) == {"key", "sample_id", "features"} and len(entry["features"]) == 2
    assert (cache.folder / "meta.json").is_file()


def test_half_precision_halves_the_file_and_returns_float32(tmp_path: Path) -> None:
    full, half = _cache(tmp_path), _cache(tmp_path, half=True)
    big = [torch.randn(64, 32, 32)] * 4
    full.put("x", [big, big])
    half.put("x", [big, big])
    assert half.path("x").stat().st_size < 0.6 * full.path("x").stat().st_size
    got_a, _ = half.get("x")
    assert got_a[0].dtype == torch.float32
    assert torch.allclose(got_a[0], big[0], atol=1e-2, rtol=1e-3)


def test_views_of_a_batch_are_stored_alone(tmp_path: Path) -> None:
    cache = _cache(tmp_path)
    batch = torch.randn(64, 16, 32, 32)
    cache.put("x", [[batch[0]], [batch[1]]])
    assert cache.path("x").stat().st_size < 4 * batch.numel() / 8


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "foreign"])
def test_damaged_entry_is_reported_and_missing(tmp_path: Path, damage: str) -> None:
    cache = _cache(tmp_path)
    cache.put("x", [_maps(0), _maps(1)])
    path = cache.path("x")
    data = path.read_bytes()
    match damage:
        case "truncate":
            path.write_bytes(data[: len(data) // 2])
        case "garbage":
            path.write_bytes(os.urandom(len(data)))
        case "empty":
            path.write_bytes(b"")
        case "foreign":
            torch.save({"weights": torch.zeros(2)}, path)
    with pytest.warns(FeatureCacheWarning, match=r"cached features .* are .*; recomputing"):
        assert cache.get("x") is None


def test_put_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = _cache(tmp_path)
    cache.put("x", [_maps(0), _maps(1)])
    before = cache.path("x").read_bytes()

    def crash(obj, file) -> None:
        file.write(b"half an entry")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        cache.put("x", [_maps(2), _maps(3)])
    with pytest.raises(OSError, match="disk full"):
        cache.put("y", [_maps(2), _maps(3)])
    assert cache.path("x").read_bytes() == before  # the old entry survives whole
    assert "y" not in cache
    assert not [p for p in cache.folder.iterdir() if p.suffix == ".tmp"]


def test_put_checks_the_maps(tmp_path: Path) -> None:
    cache = _cache(tmp_path)
    with pytest.raises(ConfigError, match=r"\[4, 3\] maps for images 0\.\.1"):
        cache.put("x", [_maps(0), _maps(1)[:3]])
    with pytest.raises(ConfigError, match=r"\[4, 4, 0\] maps"):
        cache.put("x", [_maps(0), _maps(1), []])
    with pytest.raises(
        ConfigError, match=r"feature map 0 of 'x' differs.*\(2, 4, 4\), \(2, 4, 5\)"
    ):
        cache.put("x", [[torch.zeros(2, 4, 4)], [torch.zeros(2, 4, 5)]])
    with pytest.raises(ConfigError, match="non-empty list with one list of maps per image"):
        cache.put("x", [])
    with pytest.raises(ConfigError, match="non-empty list"):
        cache.put("x", torch.zeros(1, 2, 4, 4))  # type: ignore[arg-type]
    assert "x" not in cache


def test_one_image_and_three_image_entries(tmp_path: Path) -> None:
    cache = _cache(tmp_path)
    cache.put("one", [_maps(0)])
    cache.put("three", [_maps(1), _maps(2), _maps(3)])
    (got,) = cache.get("one")
    assert _close(got, _maps(0))
    assert [_close(g, _maps(i + 1)) for i, g in enumerate(cache.get("three"))] == [True] * 3
    with pytest.warns(FeatureCacheWarning, match="maps of 1 images where 2 are expected"):
        assert cache.get("one", images=2) is None
    assert len(cache.get("one", images=1)) == 1


# --- precompute and the dataset wrapper -------------------------------------------------------


def test_precompute_fills_once_and_wrapper_returns_the_maps(tmp_path: Path) -> None:
    cache, encoder, dataset = _cache(tmp_path, chip_size=64), PoolEncoder(), Chips(5)
    assert precompute(dataset, encoder, cache, batch_size=2, progress=False) == 5
    assert encoder.images == 10  # both dates of 5 samples
    assert precompute(dataset, encoder, cache, batch_size=2, progress=False) == 0
    assert encoder.images == 10
    wrapped = CachedFeatureDataset(dataset, cache)
    sample = wrapped[3]
    expected = PoolEncoder()(torch.stack([dataset[3]["image_a"], dataset[3]["image_b"]])).features
    assert [f.shape for f in sample["features_a"]] == [(3, 16, 16), (3, 8, 8), (3, 4, 4), (3, 2, 2)]
    assert all(torch.allclose(f, e[0]) for f, e in zip(sample["features_a"], expected, strict=True))
    assert all(torch.allclose(f, e[1]) for f, e in zip(sample["features_b"], expected, strict=True))
    assert "features" not in sample
    batch = next(iter(DataLoader(wrapped, batch_size=2)))
    assert batch["features_a"][0].shape == (2, 3, 16, 16)


def test_augment_after_the_cache_moves_maps_with_images(tmp_path: Path) -> None:
    cache = _cache(tmp_path, chip_size=64)
    precompute(Chips(3), PoolEncoder(), cache, progress=False)
    wrapped = CachedFeatureDataset(Chips(3), cache, transforms=PairAugment(p=0.5, seed=0))
    for index in (0, 1, 2, 0, 1, 2):
        sample = wrapped[index]
        pooled = PoolEncoder()(torch.stack([sample["image_a"], sample["image_b"]])).features
        assert all(
            torch.allclose(f, p[0], atol=1e-4)
            for f, p in zip(sample["features_a"], pooled, strict=True)
        )
        assert all(
            torch.allclose(f, p[1], atol=1e-4)
            for f, p in zip(sample["features_b"], pooled, strict=True)
        )


def test_damaged_entry_is_recomputed_by_the_wrapper(tmp_path: Path) -> None:
    cache, encoder, dataset = _cache(tmp_path, chip_size=64), PoolEncoder(), Chips(2)
    precompute(dataset, encoder, cache, progress=False)
    cache.path("chip/1").write_bytes(b"\x00" * 10)
    with (
        pytest.raises(FeatureCacheMissError, match=r"'chip/1'.*run precompute"),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore", FeatureCacheWarning)
        CachedFeatureDataset(dataset, cache)[1]
    with pytest.warns(FeatureCacheWarning):
        sample = CachedFeatureDataset(dataset, cache, encoder)[1]
    assert encoder.images == 4 + 2
    assert sample["features_a"][0].shape == (3, 16, 16)
    assert cache.get("chip/1") is not None  # rewritten


def test_precompute_refuses_augmenting_datasets_and_repeated_names(tmp_path: Path) -> None:
    cache = _cache(tmp_path, chip_size=64)
    augmenting = Chips(2)
    augmenting.transforms = PairAugment()  # type: ignore[assignment]
    with pytest.raises(ConfigError, match=r"transforms=None .*CachedFeatureDataset\(transforms"):
        precompute(augmenting, PoolEncoder(), cache, progress=False)
    with pytest.raises(ConfigError, match="transforms=None"):
        CachedFeatureDataset(augmenting, cache)
    with pytest.raises(ConfigError, match="'a' twice"):
        precompute(Chips(names=["a", "b", "a"]), PoolEncoder(), cache, progress=False)


def test_single_image_samples(tmp_path: Path) -> None:
    cache, encoder, dataset = _cache(tmp_path, chip_size=64), PoolEncoder(), Scenes(3)
    keys = {"image_keys": ("image",)}
    assert precompute(dataset, encoder, cache, batch_size=2, progress=False, **keys) == 3
    assert encoder.images == 3  # one image per sample
    assert precompute(dataset, encoder, cache, progress=False, **keys) == 0
    wrapped = CachedFeatureDataset(dataset, cache, feature_keys=("features",), **keys)
    sample = wrapped[1]
    assert set(sample) == {"image", "mask", "name", "features"}
    (expected,) = _pooled(dataset[1]["image"])
    assert _close(sample["features"], expected)
    batch = next(iter(DataLoader(wrapped, batch_size=3)))
    assert [f.shape for f in batch["features"]] == [
        (3, 3, 16, 16),
        (3, 3, 8, 8),
        (3, 3, 4, 4),
        (3, 3, 2, 2),
    ]
    # A missing entry is computed by the wrapper when it has the encoder.
    cache.path("scene/2").unlink()
    sample = CachedFeatureDataset(dataset, cache, encoder, feature_keys=("features",), **keys)[2]
    assert encoder.images == 4 and _close(sample["features"], _pooled(dataset[2]["image"])[0])


def test_pair_entries_are_recomputed_for_single_image_use(tmp_path: Path) -> None:
    cache, encoder = _cache(tmp_path, chip_size=64), PoolEncoder()
    scene = Scenes(1)[0]
    cache.put("scene/0", [_maps(0), _maps(1)])  # same name, two images
    with pytest.warns(FeatureCacheWarning, match="maps of 2 images where 1 are expected"):
        assert precompute(Scenes(1), encoder, cache, image_keys=("image",), progress=False) == 1
    assert _close(cache.get("scene/0", images=1)[0], _pooled(scene["image"])[0])


def test_image_and_feature_keys_are_checked(tmp_path: Path) -> None:
    cache = _cache(tmp_path, chip_size=64)
    with pytest.raises(ConfigError, match="differ in length; pass one feature key per image key"):
        CachedFeatureDataset(Scenes(1), cache, image_keys=("image",))
    with pytest.raises(ConfigError, match="differ in length"):
        CachedFeatureDataset(Chips(1), cache, feature_keys=("features",))
    with pytest.raises(ConfigError, match="image_keys='image' is invalid"):
        precompute(Scenes(1), PoolEncoder(), cache, image_keys="image", progress=False)
    with pytest.raises(ConfigError, match="distinct non-empty"):
        CachedFeatureDataset(Chips(1), cache, feature_keys=("f", "f"))
    with pytest.raises(ConfigError, match=r"sample 'scene/0' has no 'image_a'.*image_keys="):
        precompute(Scenes(1), PoolEncoder(), cache, progress=False)
    with pytest.raises(ConfigError, match="has no 'image'"):
        precompute(Chips(1), PoolEncoder(), cache, image_keys=("image",), progress=False)


def test_mixed_image_sizes_share_no_encoder_call(tmp_path: Path) -> None:
    class Sized(Scenes):
        def __getitem__(self, index: int) -> dict:
            side = 32 if index % 2 else 64
            image = torch.full((3, side, side), float(index))
            return {"image": image, "mask": torch.zeros(side, side), "name": f"s{index}"}

    cache, encoder = _cache(tmp_path, chip_size=64), PoolEncoder()
    assert precompute(Sized(4), encoder, cache, image_keys=("image",), progress=False) == 4
    for index in range(4):
        (maps,) = cache.get(f"s{index}")
        assert maps[0].shape[-1] == (8 if index % 2 else 16)
        assert all(torch.all(m == index) for m in maps)


def test_real_tiny_encoder_round_trip(tmp_path: Path) -> None:
    from rs_sam.models.encoders import load_encoder

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        encoder = load_encoder("sam_vit_b", weights="random", tiny=True)
        cache = FeatureCache.for_encoder(
            tmp_path, encoder, checkpoint_sha256=None, chip_size=64, normalisation="test"
        )
        assert precompute(Chips(2), encoder, cache, progress=False) == 2
        sample = Chips(2)[1]
        direct = encoder(torch.stack([sample["image_a"], sample["image_b"]])).features
    features_a, features_b = cache.get("chip/1")
    assert [f.shape[0] for f in features_a] == list(encoder.channels)
    assert all(torch.allclose(f, d[0], atol=1e-5) for f, d in zip(features_a, direct, strict=True))
    assert all(torch.allclose(f, d[1], atol=1e-5) for f, d in zip(features_b, direct, strict=True))
