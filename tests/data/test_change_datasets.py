"""Change-detection datasets: folder layouts, georeferenced chips, torchgeo wrappers, splits."""

from __future__ import annotations

import glob
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from PIL import Image
from rasterio.crs import CRS
from torch.utils.data import DataLoader

from rs_sam.data.change_datasets import (
    AirChangeDataset,
    ChangeDatasetError,
    ChangeDatasetNotFoundError,
    ChangeFolderDataset,
    GeoChangeDataset,
    make_split,
    torchgeo_change_dataset,
)
from rs_sam.data.labels import IGNORE
from rs_sam.errors import ConfigError, InputRasterError
from tests.conftest import CHANGE_COLS, CHANGE_ROWS
from tests.helpers.synthetic import ORIGIN, texture, write_raster

# --- synthetic folder datasets ------------------------------------------------------------


def _rgb(height: int, width: int, seed: int) -> np.ndarray:
    """(H, W, 3) uint8 texture."""
    return np.moveaxis((texture(height, width, seed=seed) * 200 + 20).astype(np.uint8), 0, -1)


def _save(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def _write_pair(
    root: Path,
    name: str,
    *,
    size: tuple[int, int] = (32, 40),
    seed: int = 0,
    label_values: tuple[int, int] = (0, 255),
    label: bool = True,
) -> np.ndarray:
    """A LEVIR-style pair whose date b has a painted square (value 250) where the label is set.

    Returns the 0/1 change mask (H, W).
    """
    height, width = size
    a = _rgb(height, width, seed)
    change = np.zeros((height, width), bool)
    change[4:12, 6 + seed : 16 + seed] = True
    b = a.copy()
    b[change] = 250
    _save(root / "A" / name, a)
    _save(root / "B" / name, b)
    if label:
        _save(
            root / "label" / name,
            np.where(change, label_values[1], label_values[0]).astype(np.uint8),
        )
    return change.astype(np.int64)


@pytest.fixture
def levir(tmp_path: Path) -> Path:
    """Three labelled pairs and split lists ``train`` (2 pairs) and ``empty``."""
    root = tmp_path / "levir"
    for i, name in enumerate(("p0.png", "p1.png", "p2.png")):
        _write_pair(root, name, seed=i)
    (root / "list").mkdir()
    (root / "list" / "train.txt").write_text("p0.png\np2\n\n")
    (root / "list" / "empty.txt").write_text("\n")
    return root


def test_folder_dataset_returns_aligned_samples(levir: Path) -> None:
    dataset = ChangeFolderDataset(levir)
    assert len(dataset) == 3
    sample = dataset[1]
    assert sample["name"] == "p1.png"
    assert sample["image_a"].shape == (3, 32, 40) and sample["image_a"].dtype == torch.float32
    assert sample["image_b"].shape == (3, 32, 40)
    assert sample["mask"].shape == (32, 40) and sample["mask"].dtype == torch.int64
    assert set(sample["mask"].unique().tolist()) == {0, 1}
    painted = (sample["image_b"] == 250).all(0) & (sample["image_a"] != 250).any(0)
    assert torch.equal(painted, sample["mask"].bool())
    expected = np.asarray(Image.open(levir / "A" / "p1.png")).transpose(2, 0, 1)
    assert torch.equal(sample["image_a"], torch.from_numpy(expected.astype(np.float32)))


def test_zero_one_labels_are_accepted(tmp_path: Path) -> None:
    change = _write_pair(tmp_path, "x.png", label_values=(0, 1))
    sample = ChangeFolderDataset(tmp_path)[0]
    assert torch.equal(sample["mask"], torch.from_numpy(change))


def test_other_label_values_name_file_and_values(tmp_path: Path) -> None:
    _write_pair(tmp_path, "x.png")
    label = np.zeros((32, 40), np.uint8)
    label[0, :3] = (128, 255, 0)
    _save(tmp_path / "label" / "x.png", label)
    dataset = ChangeFolderDataset(tmp_path)
    with pytest.raises(
        ChangeDatasetError, match=r"label x.png has values \[0, 128, 255\]; expected 0/1 or 0/255"
    ):
        dataset[0]


def test_label_of_another_size_names_both_sizes(tmp_path: Path) -> None:
    _write_pair(tmp_path, "x.png")
    _save(tmp_path / "label" / "x.png", np.zeros((30, 40), np.uint8))
    with pytest.raises(
        ChangeDatasetError, match=r"label .*x.png is 40x30 but image .*x.png is 40x32"
    ):
        ChangeFolderDataset(tmp_path)


def test_dates_of_different_sizes_are_refused(tmp_path: Path) -> None:
    _write_pair(tmp_path, "x.png")
    _save(tmp_path / "B" / "x.png", _rgb(31, 40, 0))
    with pytest.raises(ChangeDatasetError, match=r"A/x.png is 40x32 but .*B/x.png is 40x31"):
        ChangeFolderDataset(tmp_path, require_labels=False)


def test_split_list_selects_pairs_with_or_without_extension(levir: Path) -> None:
    dataset = ChangeFolderDataset(levir, split="train")
    assert [dataset[i]["name"] for i in range(len(dataset))] == ["p0.png", "p2.png"]
    assert dataset.available_splits() == ["empty", "train"]


def test_missing_split_lists_the_available_ones(levir: Path) -> None:
    with pytest.raises(
        ChangeDatasetNotFoundError, match=r"val.txt does not exist; available splits: empty, train"
    ):
        ChangeFolderDataset(levir, split="val")


def test_empty_split_lists_the_available_ones(levir: Path) -> None:
    with pytest.raises(ChangeDatasetError, match=r"empty.txt is empty.*\(empty, train\)"):
        ChangeFolderDataset(levir, split="empty")


def test_split_naming_an_unknown_file_is_refused(levir: Path) -> None:
    (levir / "list" / "bad.txt").write_text("p0.png\nnope.png\n")
    with pytest.raises(
        ChangeDatasetNotFoundError, match=r"'nope.png' is not an image in .*available: \[p0.png"
    ):
        ChangeFolderDataset(levir, split="bad")


def test_pairs_select_and_exclude_split(levir: Path) -> None:
    assert len(ChangeFolderDataset(levir, pairs=["p1.png"])) == 1
    with pytest.raises(ConfigError, match="not both"):
        ChangeFolderDataset(levir, split="train", pairs=["p1.png"])


def test_missing_label_is_an_error_unless_not_required(tmp_path: Path) -> None:
    _write_pair(tmp_path, "x.png", label=False)
    (tmp_path / "label").mkdir()
    with pytest.raises(
        ChangeDatasetNotFoundError, match=r"x.png has no label .*require_labels=False"
    ):
        ChangeFolderDataset(tmp_path)
    sample = ChangeFolderDataset(tmp_path, require_labels=False)[0]
    assert (sample["mask"] == IGNORE).all()


def test_missing_root_or_second_date(tmp_path: Path) -> None:
    with pytest.raises(ChangeDatasetNotFoundError, match="does not exist"):
        ChangeFolderDataset(tmp_path / "nowhere")
    _write_pair(tmp_path, "x.png")
    (tmp_path / "B" / "x.png").unlink()
    with pytest.raises(ChangeDatasetNotFoundError, match="has no second date"):
        ChangeFolderDataset(tmp_path)


def test_grayscale_is_replicated_and_alpha_dropped(tmp_path: Path) -> None:
    gray = _rgb(32, 40, 0)[..., 0]
    rgba = np.dstack([_rgb(32, 40, 1), np.full((32, 40), 128, np.uint8)])
    _save(tmp_path / "A" / "x.png", gray)
    _save(tmp_path / "B" / "x.png", rgba)
    _save(tmp_path / "label" / "x.png", np.zeros((32, 40), np.uint8))
    sample = ChangeFolderDataset(tmp_path)[0]
    image_a, image_b = sample["image_a"], sample["image_b"]
    assert image_a.shape == (3, 32, 40)
    assert torch.equal(image_a[0], image_a[1]) and torch.equal(image_a[0], image_a[2])
    assert torch.equal(image_a[0], torch.from_numpy(gray.astype(np.float32)))
    assert torch.equal(
        image_b, torch.from_numpy(rgba[..., :3].transpose(2, 0, 1).astype(np.float32))
    )


def test_uint16_pair_gets_one_joint_stretch(tmp_path: Path) -> None:
    """A date that is brighter everywhere stays brighter (a per-date stretch would hide it)."""
    base = (texture(32, 40, seed=3) * 1000 + 1000).astype(np.uint16)
    for folder, data in (("A", base), ("B", base + 500)):
        (tmp_path / folder).mkdir()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            write_raster(tmp_path / folder / "x.tif", data, crs=None)
    _save(tmp_path / "label" / "x.tif", np.zeros((32, 40), np.uint8))
    sample = ChangeFolderDataset(tmp_path)[0]
    image_a, image_b = sample["image_a"], sample["image_b"]
    assert 0 <= image_a.min() and image_b.max() <= 255
    assert image_b.mean() > image_a.mean() + 40
    both = torch.cat([image_a.flatten(), image_b.flatten()])
    assert (both == 0).float().mean() == pytest.approx(0.02, abs=0.01)  # 2 % clipped low
    assert (both == 255).float().mean() == pytest.approx(0.02, abs=0.01)


def test_chips_pad_with_ignore(levir: Path) -> None:
    dataset = ChangeFolderDataset(levir, chip_size=24, overlap=4)
    # 32 x 40 image, stride 20: rows at 0, 20; columns at 0, 20 (the last reaches 44 > 40).
    assert len(dataset) == 3 * 4
    assert dataset.pair_names == ["p0.png", "p1.png", "p2.png"]
    whole = ChangeFolderDataset(levir)[0]
    chip = dataset[3]
    assert chip["name"] == "p0.png:r20_c20"
    assert chip["image_a"].shape == (3, 24, 24) and chip["mask"].shape == (24, 24)
    assert torch.equal(chip["image_a"][:, :12, :20], whole["image_a"][:, 20:32, 20:40])
    assert torch.equal(chip["mask"][:12, :20], whole["mask"][20:32, 20:40])
    assert (chip["mask"][12:, :] == IGNORE).all() and (
        chip["mask"][:, 20:] == IGNORE
    ).all()
    assert (chip["image_b"][:, 12:, :] == 0).all()


def test_dataloader_batches_and_transforms_apply(levir: Path) -> None:
    def tag(sample):
        return {**sample, "name": sample["name"] + "!"}

    loader = DataLoader(ChangeFolderDataset(levir, transforms=tag), batch_size=2)
    batch = next(iter(loader))
    assert batch["image_a"].shape == (2, 3, 32, 40) and batch["mask"].shape == (2, 32, 40)
    assert batch["name"] == ["p0.png!", "p1.png!"]


# --- AirChange ------------------------------------------------------------------------------


def _air_pair(folder: Path, names: tuple[str, str, str] = ("im1.bmp", "im2.bmp", "gt.bmp")) -> None:
    gt = np.zeros((24, 30), np.uint8)
    gt[2:6, 3:9] = 255
    gt[2, 3] = 200  # stray values of hand-drawn masks: > 127 is change
    gt[10, 10] = 60
    _save(folder / names[0], _rgb(24, 30, 0))
    _save(folder / names[1], _rgb(24, 30, 1))
    _save(folder / names[2], gt)


def test_airchange_finds_pairs_in_any_case_and_binarises(tmp_path: Path) -> None:
    _air_pair(tmp_path / "Szada" / "1")
    _air_pair(tmp_path / "Szada" / "2", ("im1.BMP", "IM2.bmp", "gt.BMP"))
    _air_pair(tmp_path / "Archieve")
    (tmp_path / "README.md").write_text("not a pair")
    dataset = AirChangeDataset(tmp_path)
    assert dataset.pair_names == ["Archieve", "Szada/1", "Szada/2"]
    sample = dataset[2]
    assert sample["name"] == "Szada/2" and sample["image_a"].shape == (3, 24, 30)
    expected = torch.zeros(24, 30, dtype=torch.int64)
    expected[2:6, 3:9] = 1
    assert torch.equal(sample["mask"], expected)


def test_airchange_pairs_and_chips(tmp_path: Path) -> None:
    for name in ("1", "2"):
        _air_pair(tmp_path / "Tiszadob" / name)
    dataset = AirChangeDataset(tmp_path, pairs=["Tiszadob/2"], chip_size=16)
    assert len(dataset) == 4 and dataset[0]["name"] == "Tiszadob/2:r0_c0"
    with pytest.raises(
        ChangeDatasetNotFoundError, match=r"\['Szada/9'\] not found.*Tiszadob/1, Tiszadob/2"
    ):
        AirChangeDataset(tmp_path, pairs=["Szada/9"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ChangeDatasetNotFoundError, match="no pair folder"):
        AirChangeDataset(tmp_path / "empty")


def test_airchange_size_mismatch_is_refused(tmp_path: Path) -> None:
    _air_pair(tmp_path / "x")
    _save(tmp_path / "x" / "gt.bmp", np.zeros((20, 30), np.uint8))
    with pytest.raises(ChangeDatasetError, match=r"gt.bmp is 30x20 but image .*im1.bmp is 30x24"):
        AirChangeDataset(tmp_path)


# --- georeferenced -----------------------------------------------------------------------------


def _label(path: Path, *, value: int = 1, **kwargs) -> Path:
    label = np.zeros((1, 180, 220), np.uint8)
    label[0, CHANGE_ROWS, CHANGE_COLS] = value
    return write_raster(path, label, **kwargs)


def test_geo_dataset_chips_the_pair_with_its_label(
    pair_paths: tuple[Path, Path], tmp_path: Path
) -> None:
    a, b = pair_paths
    dataset = GeoChangeDataset(
        a, b, _label(tmp_path / "label.tif", value=255), chip_size=64, overlap=8
    )
    # 180 x 220 grid, stride 56: rows and columns start at 0, 56, 112, 168.
    assert len(dataset) == 16
    sample = dataset[5]  # row 56, column 56
    assert sample["name"] == "a:r56_c56"
    assert sample["image_a"].shape == (3, 64, 64) and sample["mask"].dtype == torch.int64
    expected = np.zeros((64, 64), np.int64)
    expected[60 - 56 : 110 - 56, 80 - 56 : 64] = 1
    assert np.array_equal(sample["mask"].numpy(), expected)
    painted = (sample["image_b"] == 250).all(0)  # uint8 imagery is used as it is
    assert torch.equal(painted, sample["mask"].bool())
    last = dataset[15]  # past the bottom/right edge: ignored
    assert (last["mask"][180 - 168 :, :] == IGNORE).all()
    assert (last["mask"][:, 220 - 168 :] == IGNORE).all()
    assert pickle.loads(pickle.dumps(dataset))[5]["name"] == "a:r56_c56"  # DataLoader workers


def test_geo_dataset_reads_the_label_at_the_overlap_offset(tmp_path: Path) -> None:
    """b covers only part of a: chips start at the overlap, the label must follow."""
    image = (texture(180, 220, seed=1) * 200 + 20).astype(np.uint8)
    a = write_raster(tmp_path / "a.tif", image)
    b = write_raster(
        tmp_path / "b.tif", image[:, 30:, 40:].copy(), transform=ORIGIN * Affine.translation(40, 30)
    )
    label = np.zeros((1, 180, 220), np.uint8)
    label[0, 30:40, 40:50] = 1
    dataset = GeoChangeDataset(a, b, write_raster(tmp_path / "l.tif", label), chip_size=32)
    first = dataset[0]["mask"]
    assert first[:10, :10].eq(1).all() and first.sum() == 100


def test_geo_dataset_ignores_nodata(tmp_path: Path) -> None:
    image = (texture(64, 64, seed=2) * 200 + 20).astype(np.uint8)
    holed = image.copy()
    holed[:, :8, :] = 0
    a = write_raster(tmp_path / "a.tif", holed, nodata=0)
    b = write_raster(tmp_path / "b.tif", image)
    label = np.zeros((1, 64, 64), np.uint8)
    label[0, :, 60:] = 9  # label nodata
    sample = GeoChangeDataset(
        a, b, write_raster(tmp_path / "l.tif", label, nodata=9), chip_size=64
    )[0]
    assert (sample["mask"][:8] == IGNORE).all()
    assert (sample["mask"][:, 60:] == IGNORE).all()
    assert (sample["mask"][8:, :60] == 0).all()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"crs": CRS.from_epsg(32632)}, r"CRS EPSG:32632 instead of EPSG:32633"),
        ({"transform": ORIGIN * Affine.translation(1, 0)}, r"transform \(10.0, 0.0, 500010.0"),
    ],
)
def test_label_on_another_grid_is_refused(pair_paths, tmp_path: Path, kwargs, message) -> None:
    a, b = pair_paths
    label = _label(tmp_path / "label.tif", **kwargs)
    with pytest.raises(ChangeDatasetError, match=rf"not on the grid of .*a.tif: {message}"):
        GeoChangeDataset(a, b, label, chip_size=64)


def test_label_of_another_size_or_values_is_refused(pair_paths, tmp_path: Path) -> None:
    a, b = pair_paths
    small = write_raster(tmp_path / "small.tif", np.zeros((1, 100, 220), np.uint8))
    with pytest.raises(ChangeDatasetError, match=r"size 220x100 instead of 220x180"):
        GeoChangeDataset(a, b, small, chip_size=64)
    with pytest.raises(ChangeDatasetError, match=r"values \[0, 2\]; expected 0/1 or 0/255"):
        GeoChangeDataset(a, b, _label(tmp_path / "two.tif", value=2), chip_size=64)
    with pytest.raises(ChangeDatasetNotFoundError, match="does not exist"):
        GeoChangeDataset(a, b, tmp_path / "nope.tif", chip_size=64)
    with pytest.raises(ConfigError, match="chip_size"):
        GeoChangeDataset(a, b, _label(tmp_path / "ok.tif"), chip_size=0)


def test_errors_are_builtin_and_rs_sam_errors() -> None:
    assert issubclass(ChangeDatasetError, InputRasterError) and issubclass(
        ChangeDatasetError, ValueError
    )
    assert issubclass(ChangeDatasetNotFoundError, FileNotFoundError)


# --- torchgeo ------------------------------------------------------------------------------------


def test_torchgeo_levircd_on_a_fake_layout(tmp_path: Path) -> None:
    for i in range(2):
        _write_pair(tmp_path, f"train_{i}.png", seed=i)
    dataset = torchgeo_change_dataset("levircd", tmp_path, "train")
    assert len(dataset) == 2
    sample = dataset[1]
    assert sample["name"] == "train_1.png"
    assert sample["image_a"].shape == (3, 32, 40) and sample["mask"].shape == (32, 40)
    assert torch.equal(sample["mask"], ChangeFolderDataset(tmp_path)[1]["mask"])


def test_torchgeo_levircd_chips_match_the_folder_dataset(tmp_path: Path) -> None:
    """Chipped torchgeo pairs equal the folder dataset's chips: same grid, padding, names."""
    for i in range(2):
        _write_pair(tmp_path, f"train_{i}.png", seed=i)
    chipped = torchgeo_change_dataset("levircd", tmp_path, "train", chip_size=24, overlap=4)
    folder = ChangeFolderDataset(tmp_path, chip_size=24, overlap=4)
    assert len(chipped) == len(folder) == 2 * 4  # 32x40 pairs: 2 x 2 chips of 24 (stride 20)
    for index in (0, 3, 5):
        ours, theirs = chipped[index], folder[index]
        assert ours["name"] == theirs["name"]
        assert ours["image_a"].shape == (3, 24, 24)
        for key in ("image_a", "image_b", "mask"):
            assert torch.equal(ours[key], theirs[key]), key
    assert (chipped[3]["mask"] == 255).any()  # padding past the corner is ignored


def test_data_module_chips_torchgeo_sources(tmp_path: Path) -> None:
    from rs_sam.training.change_data import ChangeDataModule

    for i in range(2):
        _write_pair(tmp_path, f"train_{i}.png", seed=i)
    source = {"layout": "levircd", "root": str(tmp_path), "split": "train"}
    data = ChangeDataModule(train=[source], chip_size=24, overlap=4, augment=False)
    data.setup("fit")
    assert len(data.train_set) == 8 and data.train_set[0]["mask"].shape == (24, 24)
    with pytest.raises(ConfigError, match="'name' is set by 'layout'"):
        ChangeDataModule(train=[{**source, "name": "oscd"}])
    with pytest.raises(ConfigError, match=r"unknown key\(s\) pairs in 'data.train \(levircd\)'"):
        ChangeDataModule(train=[{**source, "pairs": ["train_0.png"]}])
    with_bands = ChangeDataModule(train=[source], bands=[3, 2, 1])
    with pytest.raises(ConfigError, match="reads its own RGB bands"):
        with_bands.setup("fit")


def test_torchgeo_levircd_missing_label_is_caught(tmp_path: Path) -> None:
    """torchgeo pairs sorted A/B/label lists by position; a missing label would shift them."""
    _write_pair(tmp_path, "test_1.png", seed=0, label=False)
    _write_pair(tmp_path, "test_2.png", seed=1)
    with pytest.raises(ChangeDatasetError, match=r"paired \['test_1.png', 'test_2.png'\]"):
        torchgeo_change_dataset("levircd", tmp_path, "test")
    with pytest.raises(ConfigError, match="split 'dev' is not one of levircd's"):
        torchgeo_change_dataset("levircd", tmp_path, "dev")
    with pytest.raises(ChangeDatasetNotFoundError, match="found no data"):
        torchgeo_change_dataset("levircd", tmp_path / "none", "test")


def test_torchgeo_oscd_on_a_fake_layout(tmp_path: Path) -> None:
    images = tmp_path / "Onera Satellite Change Detection dataset - Images" / "city"
    labels = tmp_path / "Onera Satellite Change Detection dataset - Train Labels" / "city" / "cm"
    bands = (
        "B01",
        "B02",
        "B03",
        "B04",
        "B05",
        "B06",
        "B07",
        "B08",
        "B8A",
        "B09",
        "B10",
        "B11",
        "B12",
    )
    rng = np.random.default_rng(0)
    for date in (1, 2):
        (images / f"imgs_{date}_rect").mkdir(parents=True)
        for band in bands:
            data = rng.integers(500, 3000, (12, 16), dtype=np.uint16) + 1000 * (date - 1)
            Image.fromarray(data).save(images / f"imgs_{date}_rect" / f"city_{band}.tif")
    (images / "dates.txt").write_text("date_1: 20160101\ndate_2: 20170101\n")
    labels.mkdir(parents=True)
    cm = np.zeros((12, 16), np.uint8)
    cm[2:5, 3:7] = 255
    _save(labels / "cm.png", cm)
    dataset = torchgeo_change_dataset("oscd", tmp_path, "train")
    sample = dataset[0]
    assert sample["name"] == "city"
    assert sample["image_a"].shape == (3, 12, 16) and 0 <= sample["image_a"].min()
    assert sample["image_b"].max() <= 255 and sample["image_b"].mean() > sample["image_a"].mean()
    assert torch.equal(sample["mask"], torch.from_numpy((cm > 0).astype(np.int64)))


# --- splits ------------------------------------------------------------------------------------


def test_make_split_is_reproducible_and_order_free() -> None:
    names = [f"pair_{i}" for i in range(20)]
    train, val = make_split(names, 0.25, seed=7)
    assert len(val) == 5 and sorted(train + val) == sorted(names) and not set(train) & set(val)
    assert make_split(list(reversed(names)), 0.25, seed=7)[1] == sorted(val, key=names[::-1].index)
    assert set(make_split(names, 0.25, seed=8)[1]) != set(val)
    assert make_split(names, 0.0, seed=7) == (names, [])
    assert len(make_split(["a", "b"], 0.1, seed=0)[1]) == 1  # at least one held out


def test_make_split_keeps_groups_together() -> None:
    names = [
        f"test_{scene}_{r:04d}_{c:04d}.png"
        for scene in range(6)
        for r in (0, 256)
        for c in (0, 256)
    ]
    train, val = make_split(names, 0.34, seed=1, group=lambda n: "_".join(n.split("_")[:2]))
    scenes_val = {n.split("_")[1] for n in val}
    assert len(scenes_val) == 2 and len(val) == 8
    assert not scenes_val & {n.split("_")[1] for n in train}


def test_make_split_rejects_bad_input() -> None:
    with pytest.raises(ConfigError, match=r"val_fraction=1\.0"):
        make_split(["a", "b"], 1.0, seed=0)
    with pytest.raises(ConfigError, match=r"names \[a\] appear more than once"):
        make_split(["a", "a", "b"], 0.5, seed=0)


# --- real data (RS_SAM_DATA_DIR) ---------------------------------------------------------------


def test_real_levir_samples(data_dir: Path) -> None:
    root = data_dir / "change" / "levir_samples"
    demo = ChangeFolderDataset(root, split="demo")
    assert len(demo) == 7
    for sample in demo:
        assert sample["image_a"].shape == (3, 256, 256) and sample["image_b"].shape == (3, 256, 256)
        assert set(sample["mask"].unique().tolist()) == {0, 1}
    # Without a split, test_113_0256.png (no label, dates of 768x384 and 768x383) is refused.
    with pytest.raises(ChangeDatasetNotFoundError, match=r"test_113_0256\.png has no label"):
        ChangeFolderDataset(root)
    with pytest.raises(ChangeDatasetError, match=r"test_113_0256.png is 768x384 but .* is 768x383"):
        ChangeFolderDataset(root, require_labels=False)
    train = torchgeo_change_dataset("levircd", root, "train")
    assert [s["name"] for s in train] == [
        "train_36_0512_0512.png",
        "train_386_0512_0768.png",
        "train_412_0512_0768.png",
    ]
    with pytest.raises(ChangeDatasetError, match=r"test_113_0256\.png"):
        torchgeo_change_dataset("levircd", root, "test")


def test_real_airchange(data_dir: Path) -> None:
    dataset = AirChangeDataset(data_dir / "change" / "sztaki_airchange")
    assert len(dataset) == 13
    assert dataset.pair_names[:2] == ["Archieve", "Szada/1"] and "Tiszadob/5" in dataset.pair_names
    sizes = {(p.width, p.height) for p in dataset.pairs}
    assert sizes == {(952, 640), (1048, 724)}
    sample = dataset[dataset.pair_names.index("Tiszadob/4")]  # gt with stray grey values
    assert set(sample["mask"].unique().tolist()) == {0, 1}
    chips = AirChangeDataset(
        data_dir / "change" / "sztaki_airchange", pairs=["Szada/1"], chip_size=512
    )
    assert len(chips) == 4 and chips[3]["mask"].shape == (512, 512)


def test_real_oscd_through_geo_dataset(data_dir: Path, tmp_path: Path) -> None:
    """OSCD rennes: three band files per date; the label (1/2, no georeferencing) is given
    imgs_1's grid and 0/1 values in a temporary copy."""
    city = data_dir / "change" / "oscd" / "images" / "rennes"
    bands_1 = [
        sorted(glob.glob(str(city / "imgs_1" / f"*_{b}.tif")))[0] for b in ("B04", "B03", "B02")
    ]
    bands_2 = [
        sorted(glob.glob(str(city / "imgs_2" / f"*_{b}.tif")))[0] for b in ("B04", "B03", "B02")
    ]
    source = data_dir / "change" / "oscd" / "train_labels" / "rennes" / "cm" / "rennes-cm.tif"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(source) as src:
            cm = src.read()
    with rasterio.open(bands_1[0]) as src:
        label = write_raster(
            tmp_path / "rennes.tif", (cm - 1).astype(np.uint8), crs=src.crs, transform=src.transform
        )
    dataset = GeoChangeDataset(bands_1, bands_2, label, chip_size=256)
    assert len(dataset) == 2 * 3  # 563 x 339 px
    changed = sum(int((s["mask"] == 1).sum()) for s in dataset)
    assert changed == int((cm == 2).sum())
    sample = dataset[0]
    assert sample["image_a"].max() == 255 and sample["image_a"].min() == 0
    with pytest.raises(ChangeDatasetError, match=r"has values \[1, 2\]"):
        GeoChangeDataset(bands_1, bands_2, _georef_copy(cm, bands_1[0], tmp_path), chip_size=256)


def _georef_copy(cm: np.ndarray, like: str, tmp_path: Path) -> Path:
    with rasterio.open(like) as src:
        return write_raster(tmp_path / "raw.tif", cm, crs=src.crs, transform=src.transform)
