"""Segmentation datasets: folder layouts, class tables, chips, SAM maps, rasters, augmentation."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from affine import Affine
from PIL import Image

from rs_sam.data.class_table import ClassTable, LabelError
from rs_sam.data.segment_augment import SegmentAugment, apply_segment_transform
from rs_sam.data.segment_datasets import (
    SegmentDatasetError,
    SegmentDatasetNotFoundError,
    SegmentFolderDataset,
    SegmentRasterDataset,
    SegmentSample,
    find_pairs,
)
from rs_sam.data.segment_datasets import raster as segment_raster
from rs_sam.errors import ConfigError
from tests.helpers.synthetic import ORIGIN, texture, write_raster

COLOURS = {0: (60, 16, 152), 1: (132, 41, 246), 2: (110, 193, 228)}
BLACK = (0, 0, 0)
COLOUR_TABLE = ClassTable(
    names=("building", "land", "road"), colours=tuple(COLOURS.values()), ignore_colours=(BLACK,)
)
#: LoveDA style: raw 0 = no data, raw 1..3 -> training 0..2.
ID_TABLE = ClassTable(names=("a", "b", "c"), id_map={1: 0, 2: 1, 3: 2}, ignore_values=(0,))


def _rgb(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.moveaxis((texture(height, width, seed=seed) * 200 + 20).astype(np.uint8), 0, -1)


def _save(path: Path, array: np.ndarray, **options: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **options)
    return path


def _ids(height: int, width: int) -> np.ndarray:
    """Training ids 0..2 in vertical stripes, ignore (255) in the first row."""
    ids = np.tile(np.arange(width) % 3, (height, 1)).astype(np.int64)
    ids[0] = 255
    return ids


def _colour_label(ids: np.ndarray) -> np.ndarray:
    out = np.zeros((*ids.shape, 3), np.uint8)
    for key, colour in {**COLOURS, 255: BLACK}.items():
        out[ids == key] = colour
    return out


def _write_sample(
    images: Path, labels: Path, stem: str, size: tuple[int, int] = (30, 40), seed: int = 0
) -> np.ndarray:
    """A JPEG image and its RGB colour PNG label; returns the expected training ids."""
    height, width = size
    _save(images / f"{stem}.jpg", _rgb(height, width, seed), quality=95)
    ids = _ids(height, width)
    _save(labels / f"{stem}.png", _colour_label(ids))
    return ids


# --- class tables through folder datasets ----------------------------------------------------


def test_colour_labels_become_ids_with_ignore_colour(tmp_path: Path) -> None:
    ids = _write_sample(tmp_path / "img", tmp_path / "lbl", "x")
    dataset = SegmentFolderDataset(tmp_path / "img", tmp_path / "lbl", COLOUR_TABLE)
    assert len(dataset) == 1 and dataset.image_names == ["x"]
    sample = dataset[0]
    assert sample["name"] == "x"
    assert sample["image"].shape == (3, 30, 40) and sample["image"].dtype == torch.float32
    assert sample["mask"].dtype == torch.int64
    assert torch.equal(sample["mask"], torch.from_numpy(ids))
    assert "uint8 as is" in dataset.normalisation


def test_id_labels_use_id_map_and_ignore_values(tmp_path: Path) -> None:
    _save(tmp_path / "img" / "a.png", _rgb(8, 10))
    raw = np.tile(np.arange(10) % 4, (8, 1)).astype(np.uint8)  # 0 = no data, 1..3 classes
    _save(tmp_path / "lbl" / "a.png", raw)
    mask = SegmentFolderDataset(tmp_path / "img", tmp_path / "lbl", ID_TABLE)[0]["mask"]
    expected = np.where(raw == 0, 255, raw.astype(np.int64) - 1)
    assert torch.equal(mask, torch.from_numpy(expected))


def test_palette_labels_follow_the_table(tmp_path: Path) -> None:
    _save(tmp_path / "img" / "a.png", _rgb(6, 9))
    ids = _ids(6, 9)
    palette_label = Image.fromarray(np.where(ids == 255, 3, ids).astype(np.uint8), mode="P")
    palette_label.putpalette([c for k in (0, 1, 2) for c in COLOURS[k]] + [0, 0, 0])
    (tmp_path / "lbl").mkdir()
    palette_label.save(tmp_path / "lbl" / "a.png")
    coloured = SegmentFolderDataset(tmp_path / "img", tmp_path / "lbl", COLOUR_TABLE)[0]["mask"]
    assert torch.equal(coloured, torch.from_numpy(ids))  # expanded to RGB, black ignored
    by_index = ClassTable(names=("a", "b", "c", "d"))
    indices = SegmentFolderDataset(tmp_path / "img", tmp_path / "lbl", by_index)[0]["mask"]
    assert torch.equal(indices, torch.from_numpy(np.where(ids == 255, 3, ids)))


def test_values_outside_the_table_are_listed(tmp_path: Path) -> None:
    _save(tmp_path / "img" / "a.png", _rgb(8, 10))
    raw = np.ones((8, 10), np.uint8)
    raw[0, :2] = (7, 9)
    _save(tmp_path / "lbl" / "a.png", raw)
    dataset = SegmentFolderDataset(tmp_path / "img", tmp_path / "lbl", ID_TABLE)
    with pytest.raises(
        LabelError,
        match=r"label .*a.png has values \[7, 9\] outside the class table \(ids 1..3, "
        r"ignore_values 0\); add them to classes or ignore_values",
    ):
        dataset[0]


def test_colour_not_in_the_table_is_listed_in_hex(tmp_path: Path) -> None:
    _write_sample(tmp_path / "img", tmp_path / "lbl", "x")
    label = np.asarray(Image.open(tmp_path / "lbl" / "x.png")).copy()
    label[5, 5] = (0xFE, 0xDD, 0x3A)
    _save(tmp_path / "lbl" / "x.png", label)
    dataset = SegmentFolderDataset(tmp_path / "img", tmp_path / "lbl", COLOUR_TABLE)
    with pytest.raises(
        LabelError, match=r"label .*x.png has colours #FEDD3A not in the class table \(1 pixels\)"
    ):
        dataset[0]


def test_image_and_label_of_different_sizes_are_refused(tmp_path: Path) -> None:
    _write_sample(tmp_path / "img", tmp_path / "lbl", "x")
    _save(tmp_path / "lbl" / "x.png", _colour_label(_ids(29, 40)))
    with pytest.raises(
        SegmentDatasetError, match=r"label .*x.png is 40x29 but image .*x.jpg is 40x30"
    ):
        SegmentFolderDataset(tmp_path / "img", tmp_path / "lbl", COLOUR_TABLE)


def test_missing_labels_and_empty_folders_are_reported(tmp_path: Path) -> None:
    _write_sample(tmp_path / "img", tmp_path / "lbl", "x")
    for stem in ("y", "z"):
        _save(tmp_path / "img" / f"{stem}.jpg", _rgb(30, 40))
    with pytest.raises(SegmentDatasetNotFoundError, match=r"2 image\(s\) have no label: .*y.jpg"):
        SegmentFolderDataset(tmp_path / "img", tmp_path / "lbl", COLOUR_TABLE)
    only_x = SegmentFolderDataset(tmp_path / "img", tmp_path / "lbl", COLOUR_TABLE, names=["x.jpg"])
    assert only_x.image_names == ["x"]
    with pytest.raises(SegmentDatasetNotFoundError, match=r"names \[w\] are not images"):
        SegmentFolderDataset(tmp_path / "img", tmp_path / "lbl", COLOUR_TABLE, names=["w"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(SegmentDatasetNotFoundError, match="holds no images"):
        SegmentFolderDataset(tmp_path / "empty", tmp_path / "lbl", COLOUR_TABLE)
    with pytest.raises(ConfigError, match="same folder"):
        SegmentFolderDataset(tmp_path / "img", tmp_path / "img", COLOUR_TABLE)


def test_find_pairs_handles_tile_and_mmseg_layouts(tmp_path: Path) -> None:
    for tile in ("Tile 1", "Tile 2"):
        _write_sample(
            tmp_path / "dubai" / tile / "images", tmp_path / "dubai" / tile / "masks", "p"
        )
    pairs = find_pairs(tmp_path / "dubai")
    assert [p.name for p in pairs] == ["Tile 1/p", "Tile 2/p"]
    assert pairs[1].label == tmp_path / "dubai" / "Tile 2" / "masks" / "p.png"
    dataset = SegmentFolderDataset.from_root(tmp_path / "dubai", COLOUR_TABLE, chip_size=32)
    assert len(dataset) == 4 and dataset[3]["name"] == "Tile 2/p:r0_c32"
    mmseg = tmp_path / "mmseg"
    for split in ("train", "val"):
        _write_sample(mmseg / "img_dir" / split, mmseg / "ann_dir" / split, split)
    found = SegmentFolderDataset.from_root(
        mmseg, COLOUR_TABLE, image_dir="img_dir", label_dir="ann_dir", names=["val/val"]
    )
    assert found.image_names == ["val/val"]
    with pytest.raises(SegmentDatasetNotFoundError, match="no folder named 'images'"):
        find_pairs(mmseg)


# --- chips and SAM maps ----------------------------------------------------------------------


def test_chips_are_padded_with_zero_image_and_ignore_mask(tmp_path: Path) -> None:
    _save(tmp_path / "img" / "a.png", _rgb(30, 40))
    ids = _ids(30, 40)
    _save(tmp_path / "lbl" / "a.png", _colour_label(ids))
    whole = SegmentFolderDataset(tmp_path / "img", tmp_path / "lbl", COLOUR_TABLE)[0]
    chips = SegmentFolderDataset(
        tmp_path / "img", tmp_path / "lbl", COLOUR_TABLE, chip_size=24, overlap=4
    )
    assert len(chips) == 4  # rows 0, 20; cols 0, 20
    last = chips[3]
    assert last["name"] == "a:r20_c20" and last["image"].shape == (3, 24, 24)
    assert torch.equal(last["image"][:, :10, :20], whole["image"][:, 20:, 20:])
    assert torch.equal(last["mask"][:10, :20], whole["mask"][20:, 20:])
    assert (last["image"][:, 10:] == 0).all() and (last["image"][:, :, 20:] == 0).all()
    assert (last["mask"][10:] == 255).all() and (last["mask"][:, 20:] == 255).all()


def _write_maps(root: Path, stem: str, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """A uint16 PNG object map (ids up to 70000 do not fit: use a uint32 TIFF) and a 0/255 PNG."""
    objects = (np.arange(height * width).reshape(height, width) // 7 + 65_530).astype(np.uint32)
    write_raster(root / "objects" / f"{stem}.tif", objects[None], crs=None)
    boundary = np.zeros((height, width), np.uint8)
    boundary[::3] = 255
    _save(root / "boundaries" / f"{stem}.png", boundary)
    return objects.astype(np.int64), (boundary > 0).astype(np.float32)


def test_object_and_boundary_maps_are_loaded_and_aligned(tmp_path: Path) -> None:
    (tmp_path / "objects").mkdir()
    ids = _write_sample(tmp_path / "img", tmp_path / "lbl", "x")
    objects, boundary = _write_maps(tmp_path, "x", 30, 40)
    dataset = SegmentFolderDataset(
        tmp_path / "img",
        tmp_path / "lbl",
        COLOUR_TABLE,
        chip_size=32,
        objects=tmp_path / "objects",
        boundaries=tmp_path / "boundaries",
    )
    assert len(dataset) == 2
    first, last = dataset[0], dataset[1]
    assert first["objects"].dtype == torch.int64 and first["boundary"].dtype == torch.float32
    assert torch.equal(first["objects"][:30, :32], torch.from_numpy(objects[:, :32]))
    assert torch.equal(first["boundary"][:30, :32], torch.from_numpy(boundary[:, :32]))
    assert torch.equal(last["mask"][:30, :8], torch.from_numpy(ids[:, 32:]))
    assert torch.equal(last["objects"][:30, :8], torch.from_numpy(objects[:, 32:]))
    assert (first["objects"][30:] == 0).all() and (first["boundary"][30:] == 0).all()
    _save(tmp_path / "boundaries" / "x.png", np.zeros((29, 40), np.uint8))
    with pytest.raises(SegmentDatasetError, match=r"boundary .*x.png is 40x29 but image"):
        SegmentFolderDataset(
            tmp_path / "img", tmp_path / "lbl", COLOUR_TABLE, boundaries=tmp_path / "boundaries"
        )
    (tmp_path / "none").mkdir()
    with pytest.raises(SegmentDatasetNotFoundError, match="no objects map for x"):
        SegmentFolderDataset(
            tmp_path / "img", tmp_path / "lbl", COLOUR_TABLE, objects=tmp_path / "none"
        )
    _save(tmp_path / "bad" / "x.png", np.full((30, 40), 7, np.uint8))
    bad = SegmentFolderDataset(
        tmp_path / "img", tmp_path / "lbl", COLOUR_TABLE, boundaries=tmp_path / "bad"
    )
    with pytest.raises(SegmentDatasetError, match=r"values \[7\]; expected 0/1 or 0/255"):
        bad[0]


def test_sixteen_bit_images_are_stretched(tmp_path: Path) -> None:
    image = (texture(12, 14, seed=3) * 3000 + 100).astype(np.uint16)
    (tmp_path / "img").mkdir()
    write_raster(tmp_path / "img" / "a.tif", image, crs=None)
    _save(tmp_path / "lbl" / "a.png", np.ones((12, 14), np.uint8))
    dataset = SegmentFolderDataset(tmp_path / "img", tmp_path / "lbl", ID_TABLE)
    out = dataset[0]["image"]
    assert out.min() == 0 and out.max() == 255 and "percentile" in dataset.normalisation
    assert pickle.loads(pickle.dumps(dataset))[0]["mask"].unique().tolist() == [0]


# --- augmentation ----------------------------------------------------------------------------


def _aligned_sample() -> SegmentSample:
    """Mask, objects and boundary are pointwise functions of the image's first band."""
    image = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0)) * 255
    return {
        "image": image,
        "mask": (image[0] > 128).long(),
        "objects": image[0].long() + 1,
        "boundary": (image[0] > 200).float(),
        "features": [torch.nn.functional.avg_pool2d(image[None], 4)[0]],
        "name": "s",
    }


def test_augmentation_keeps_image_mask_objects_boundary_aligned() -> None:
    augment = SegmentAugment(p=0.7, seed=3)
    seen = set()
    for _ in range(12):
        out = augment(_aligned_sample())
        band = out["image"][0]
        assert torch.equal(out["mask"], (band > 128).long())
        assert torch.equal(out["objects"], band.long() + 1)
        assert torch.equal(out["boundary"], (band > 200).float())
        pooled = torch.nn.functional.avg_pool2d(out["image"][None], 4)[0]
        assert torch.allclose(out["features"][0], pooled, atol=1e-3)
        seen.add(out["image"][0, 0, 0].item())
    assert len(seen) > 1  # something moved
    again = SegmentAugment(p=0.7, seed=3)
    assert torch.equal(
        again(_aligned_sample())["image"], SegmentAugment(p=0.7, seed=3)(_aligned_sample())["image"]
    )
    turned = apply_segment_transform(_aligned_sample(), turns=1)
    assert torch.equal(turned["mask"], torch.rot90(_aligned_sample()["mask"], 1))
    with pytest.raises(ConfigError):
        SegmentAugment(p=2)
    broken = _aligned_sample()
    broken["boundary"] = broken["boundary"][:8]
    with pytest.raises(SegmentDatasetError, match="different sizes"):
        augment(broken)


# --- georeferenced rasters -------------------------------------------------------------------


@pytest.fixture
def scene(tmp_path: Path) -> dict[str, Path]:
    """A uint16 image 40 x 50 with nodata 0 in its first row, id label and maps on its grid."""
    image = (texture(40, 50, seed=2) * 4000 + 500).astype(np.uint16)
    image[:, 0, :] = 0
    raw = np.tile(np.arange(50) % 4, (40, 1)).astype(np.uint8)
    raw[5, 5] = 99  # label nodata
    objects = np.arange(40 * 50, dtype=np.uint32).reshape(1, 40, 50)
    boundary = np.zeros((1, 40, 50), np.uint8)
    boundary[:, :, ::2] = 1
    return {
        "image": write_raster(tmp_path / "image.tif", image, nodata=0),
        "label": write_raster(tmp_path / "label.tif", raw[None], nodata=99),
        "objects": write_raster(tmp_path / "objects.tif", objects),
        "boundary": write_raster(tmp_path / "boundary.tif", boundary),
    }


def test_raster_dataset_reads_windows(scene: dict[str, Path], monkeypatch) -> None:
    windows = []
    read_window = segment_raster.read_window

    def spy(path, window):
        windows.append((path.name, window))
        return read_window(path, window)

    monkeypatch.setattr(segment_raster, "read_window", spy)
    dataset = SegmentRasterDataset(
        scene["image"],
        scene["label"],
        ID_TABLE,
        chip_size=32,
        objects=scene["objects"],
        boundaries=scene["boundary"],
    )
    assert len(dataset) == 4 and dataset.normalisation.startswith("stretch low=")
    windows.clear()
    chip = dataset[3]  # rows 32.., cols 32..: 8 x 18 inside, the rest padding
    assert chip["name"] == "image:r32_c32"
    assert {(name, w.height, w.width) for name, w in windows} == {
        ("label.tif", 8, 18),
        ("objects.tif", 8, 18),
        ("boundary.tif", 8, 18),
    }
    raw = np.tile(np.arange(50) % 4, (40, 1))
    expected = np.where(raw == 0, 255, raw - 1)[32:, 32:]
    assert torch.equal(chip["mask"][:8, :18], torch.from_numpy(expected))
    assert (chip["mask"][8:] == 255).all() and (chip["image"][:, 8:] == 0).all()
    assert torch.equal(chip["objects"][:8, :18], torch.arange(40 * 50).reshape(40, 50)[32:, 32:])
    assert chip["boundary"][:8, :18].sum() == 8 * 9
    first = dataset[0]
    assert (first["mask"][0] == 255).all()  # image nodata row
    assert first["mask"][5, 5] == 255  # label nodata
    assert 0 <= first["image"].min() and first["image"].max() <= 255


def test_raster_label_on_another_grid_is_refused(scene: dict[str, Path], tmp_path: Path) -> None:
    shifted = ORIGIN * Affine.translation(3, 0)
    other = write_raster(tmp_path / "other.tif", np.ones((1, 40, 50), np.uint8), transform=shifted)
    with pytest.raises(
        SegmentDatasetError, match=r"label .*other.tif is not on the grid of .*image.tif: transform"
    ) as err:
        SegmentRasterDataset(scene["image"], other, ID_TABLE, chip_size=32)
    assert "gdalwarp -t_srs EPSG:32633 -tr 10.0 10.0 -te 500000.0 4999600.0" in str(err.value)
    small = write_raster(tmp_path / "small.tif", np.ones((1, 39, 50), np.uint8))
    with pytest.raises(SegmentDatasetError, match="size 50x39 instead of 50x40"):
        SegmentRasterDataset(scene["image"], small, ID_TABLE, chip_size=32)
    bad = write_raster(tmp_path / "bad.tif", np.full((1, 40, 50), 6, np.uint8))
    with pytest.raises(LabelError, match=r"values \[6\] outside the class table"):
        SegmentRasterDataset(scene["image"], bad, ID_TABLE, chip_size=32)


def test_raster_colour_label(tmp_path: Path) -> None:
    image = write_raster(tmp_path / "rgb.tif", (texture(20, 24) * 255).astype(np.uint8))
    ids = _ids(20, 24)
    colour = np.moveaxis(_colour_label(ids), -1, 0)
    label = write_raster(tmp_path / "colours.tif", colour)
    dataset = SegmentRasterDataset(image, label, COLOUR_TABLE, chip_size=32)
    assert dataset.normalisation == "uint8 as is"
    assert torch.equal(dataset[0]["mask"][:20, :24], torch.from_numpy(ids))


# --- real data (RS_SAM_DATA_DIR) -------------------------------------------------------------

DUBAI_TABLE = {
    "classes": [
        {"name": "building", "colour": "#3C1098"},
        {"name": "land", "colour": "#8429F6"},
        {"name": "road", "colour": "#6EC1E4"},
        {"name": "vegetation", "colour": "#FEDD3A"},
        {"name": "water", "colour": "#E2A929"},
        {"name": "unlabeled", "colour": "#9B9B9B"},
    ],
    "ignore_colours": ["#000000"],
}


def test_real_dubai_colour_masks(data_dir: Path) -> None:
    root = data_dir / "segmentation" / "dubai_aerial"
    table = ClassTable.from_config(DUBAI_TABLE)
    assert len(find_pairs(root)) == 72
    # An RGB mask, a palette mask (Tile 2) and one with black (ignore) pixels (Tile 3).
    picks = ["Tile 1/image_part_001", "Tile 2/image_part_001", "Tile 3/image_part_006"]
    dataset = SegmentFolderDataset.from_root(root, table, names=picks)
    masks = [dataset[i]["mask"] for i in range(3)]
    for mask in masks:
        assert set(mask.unique().tolist()) <= {0, 1, 2, 3, 4, 5, 255}
        assert len(set(mask.unique().tolist()) - {255}) >= 3
    assert (masks[2] == 255).any() and not (masks[0] == 255).any()


@pytest.mark.parametrize(
    ("name", "table"),
    [
        (
            "loveda",
            {
                "classes": [
                    {"name": n, "id": i + 1}
                    for i, n in enumerate(
                        ["background", "building", "road", "water", "barren", "forest", "farm"]
                    )
                ],
                "ignore_values": [0],
            },
        ),
        ("potsdam", {"classes": ["impervious", "building", "low_veg", "tree", "car", "clutter"]}),
        ("vaihingen", {"classes": ["impervious", "building", "low_veg", "tree", "car", "clutter"]}),
    ],
)
def test_real_mmseg_crops(data_dir: Path, name: str, table: dict) -> None:
    root = data_dir / "segmentation" / "mmseg_pseudo" / f"pseudo_{name}_dataset"
    dataset = SegmentFolderDataset(
        root / "img_dir", root / "ann_dir", ClassTable.from_config(table), chip_size=512
    )
    sample = dataset[0]
    assert sample["image"].shape == (3, 512, 512)
    values = set(sample["mask"].unique().tolist())
    assert values <= {*range(7), 255} and values - {255}
