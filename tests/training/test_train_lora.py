"""``rs-sam train lora``: SamLP stage 1 and stage 2 end to end, the loss, prompts and data.

Tiny random encoders and synthetic folders: these tests check the machinery (what trains,
what the adapter files hold, the errors), not quality.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import geopandas as gpd
import lightning
import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner
from PIL import Image
from shapely.geometry import box

from rs_sam.cli.main import cli
from rs_sam.data.labels import IGNORE
from rs_sam.errors import ConfigError
from rs_sam.losses.mask import confusion_counts, multimask_dice_loss
from rs_sam.models.encoders import load_encoder
from rs_sam.models.head_file import read_head_checkpoint
from rs_sam.models.lora import load_adapter, read_adapter_metadata
from rs_sam.training.config import check_arguments, load_config, trainer_arguments
from rs_sam.training.lora_stages import base_digest
from rs_sam.training.lora_task import LoraTask
from rs_sam.training.mask_data import (
    MaskDataModule,
    PolygonMaskDataset,
    foreground_fraction,
)
from rs_sam.training.mask_prompts import prompts_from_masks
from tests.helpers.synthetic import ORIGIN, texture, write_raster

pytestmark = pytest.mark.filterwarnings("ignore::rs_sam.models.encoders.base.RandomWeightsWarning")

COLOURS = {"ground": (200, 180, 120), "water": (30, 60, 200), "building": (220, 30, 30)}
TINY = {"encoder": "mobile_sam", "weights": "random", "tiny_encoder": True}


def _folder(root: Path, count: int) -> Path:
    """Tiles with a water and a building square, RGB colour labels, a black (ignored) strip."""
    rng = np.random.default_rng(0)
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        image = (texture(48, 48, seed=i) * 60 + 100).astype(np.uint8)
        label = np.zeros((48, 48, 3), np.uint8)
        label[:] = COLOURS["ground"]
        for name, paint in (("water", 40), ("building", 230)):
            r, c = rng.integers(0, 32, size=2)
            image[:, r : r + 14, c : c + 14] = paint
            label[r : r + 14, c : c + 14] = COLOURS[name]
        label[:, :2] = 0  # ignore
        Image.fromarray(image.transpose(1, 2, 0)).save(root / "images" / f"tile_{i}.png")
        Image.fromarray(label).save(root / "masks" / f"tile_{i}.png")
    return root


def _config(tmp_path: Path, name: str, data_root: Path, **model: object) -> Path:
    source = {
        "layout": "folders",
        "images": str(data_root / "images"),
        "labels": str(data_root / "masks"),
    }
    classes = [
        {"name": n, "colour": "#{:02X}{:02X}{:02X}".format(*rgb)} for n, rgb in COLOURS.items()
    ]
    config = {
        "seed": 0,
        "model": {**TINY, **model},
        "data": {
            "classes": {"classes": classes, "ignore_colours": ["#000000"]},
            "target": "building",
            "train": [{**source, "names": ["tile_0", "tile_1"]}],
            "val": [{**source, "names": ["tile_2"]}],
            "chip_size": 48,
            "batch_size": 2,
        },
        "trainer": {
            "max_epochs": 1,
            "accelerator": "cpu",
            "log_every_n_steps": 1,
            "default_root_dir": str(tmp_path / name),
        },
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result.exit_code, result.output


def _adapter_tensors(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["state_dict"]


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models run many small ops: one thread is faster, and on a CPU shared with other
    jobs several threads oversubscribe the cores (10x slower here)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _folder(tmp_path_factory.mktemp("lora-data"), 3)


@pytest.fixture(scope="module")
def stage1(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> Path:
    """The run folder of a stage-1 CLI run with decoder LoRA (what stage 2 needs)."""
    tmp_path = tmp_path_factory.mktemp("lora-stage1")
    config = _config(tmp_path, "stage1", data_root, decoder=True)
    code, text = run("train", "lora", "--config", config, "-q")
    assert code == 0, text
    return tmp_path / "stage1"


PARTS = ["output_upscaling", "output_hypernetworks_mlps"]
PART_PREFIXES = [f"mask_decoder.{p}." for p in PARTS]


@pytest.fixture(scope="module")
def stage1_parts(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> Path:
    """A stage-1 CLI run that also trains two parts of the mask decoder in full."""
    tmp_path = tmp_path_factory.mktemp("lora-stage1-parts")
    config = _config(tmp_path, "stage1", data_root, decoder=True, decoder_parts=PARTS)
    code, text = run("train", "lora", "--config", config, "-q")
    assert code == 0, text
    return tmp_path / "stage1"


# ----------------------------------------------------------------------------- stage 1


def test_stage1_cli_writes_an_adapter_a_fresh_encoder_accepts(stage1: Path) -> None:
    adapter = stage1 / "adapter.pt"
    record = read_adapter_metadata(adapter)
    assert record["base_encoder"] == "mobile_sam" and record["tiny"] is True
    assert record["settings"]["rank"] == 2 and record["settings"]["targets"] == ["q", "v"]
    assert record["extra_prefixes"] == []
    meta = record["metadata"]
    assert meta["stage"] == 1 and meta["target"] == "building" and meta["chip_size"] == 48
    assert meta["source_checkpoint"] == "best.ckpt" and 0 <= meta["val/dice"] <= 1
    assert len(meta["base_digest"]) == 64  # random base weights: recognisable again
    assert adapter.stat().st_size < 200_000  # the adapter is small

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fresh = load_encoder("mobile_sam", weights="random", tiny=True)
    settings = load_adapter(adapter, fresh)
    assert settings.decoder is True

    metadata, _, state = read_head_checkpoint(stage1 / "checkpoints" / "best.ckpt")
    assert metadata.task == "lora" and metadata.chip_size == 48
    assert [c["name"] for c in metadata.class_table["classes"]] == ["background", "building"]
    assert any(".lora_A." in k for k in state)
    header = (stage1 / "logs" / "version_0" / "metrics.csv").read_text().splitlines()[0]
    for column in ("train/loss", "val/loss", "val/dice", "val/iou", "val/dice_best3"):
        assert column in header.split(",")


def test_stage1_trains_only_the_lora() -> None:
    lightning.seed_everything(0, verbose=False)
    task = LoraTask(**TINY, chip_size=48)  # SamLP defaults: q/v of the image encoder
    trainable = [n for n, p in task.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_" in n and ".image_encoder." in n for n in trainable)
    assert "trainable parameters" in task.summary()


def test_stage1_decoder_parts_train_in_full_and_travel_in_the_adapter(stage1_parts: Path) -> None:
    lightning.seed_everything(0, verbose=False)
    task = LoraTask(**TINY, chip_size=48, decoder=True, decoder_parts=PARTS)
    prefixes = tuple("model.encoder.sam." + p for p in PART_PREFIXES)
    trainable = {n for n, p in task.named_parameters() if p.requires_grad}
    in_parts = {n for n, _ in task.named_parameters() if n.startswith(prefixes)}
    assert in_parts and in_parts <= trainable
    assert all(".lora_" in n for n in trainable - in_parts)
    assert "output_upscaling, output_hypernetworks_mlps" in task.summary()

    adapter = stage1_parts / "adapter.pt"
    record = read_adapter_metadata(adapter)
    assert record["extra_prefixes"] == PART_PREFIXES
    assert record["metadata"]["stage"] == 1 and record["metadata"]["decoder_parts"] == PARTS
    saved = _adapter_tensors(adapter)
    parts = {k: v for k, v in saved.items() if k.startswith(tuple(PART_PREFIXES))}
    assert parts and all(k in parts or ".lora_" in k for k in saved)  # LoRA + the parts only
    stored = sum(v.numel() * v.element_size() for v in saved.values())
    assert adapter.stat().st_size < stored + 100_000  # those tensors and a small record
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lightning.seed_everything(0, verbose=False)  # the seed the run built its encoder with
        fresh = load_encoder("mobile_sam", weights="random", tiny=True)
    assert base_digest(fresh) == record["metadata"]["base_digest"]  # the run's base weights
    base = fresh.sam.state_dict()
    assert any(not torch.equal(base[k], v) for k, v in parts.items())  # they trained
    load_adapter(adapter, fresh)
    own = fresh.sam.state_dict()
    assert all(torch.equal(own[k], v) for k, v in parts.items())  # reloaded identically


def test_unknown_decoder_part_is_a_one_line_config_error() -> None:
    with pytest.raises(ConfigError, match=r"model\.decoder_parts: 'heads' is not a part") as err:
        LoraTask(**TINY, chip_size=48, decoder_parts=["heads"])
    assert "\n" not in str(err.value) and "valid: transformer, iou_token" in str(err.value)


# ----------------------------------------------------------------------------- loss


def test_dice_loss_is_averaged_over_the_three_masks_and_ignores() -> None:
    target = torch.zeros(1, 8, 8, dtype=torch.int64)
    target[0, 2:6, 2:6] = 1
    right = torch.where(target == 1, 30.0, -30.0)[:, None]  # (1, 1, 8, 8) near-perfect
    wrong = -right
    perfect = multimask_dice_loss(torch.cat([right] * 3, 1), target)
    assert perfect.item() < 1e-3
    all_wrong = multimask_dice_loss(torch.cat([wrong] * 3, 1), target)
    one_right = multimask_dice_loss(torch.cat([right, wrong, wrong], 1), target)
    assert all_wrong.item() > 0.9
    assert one_right.item() == pytest.approx(2 / 3 * all_wrong.item(), rel=1e-4)
    # ignored pixels count for nothing, whatever the logits say there
    ignored = target.clone()
    ignored[0, :, :2] = IGNORE
    noisy = torch.cat([right] * 3, 1).clone()
    noisy[..., :2] = 30.0
    assert multimask_dice_loss(noisy, ignored).item() < 1e-3
    # a chip without target: per chip its Dice barely moves, over the batch it counts
    empty = torch.zeros_like(target)
    both = torch.cat([target, empty])
    everywhere = torch.full((2, 3, 8, 8), 30.0)
    assert multimask_dice_loss(everywhere, both, reduction="chip").item() == pytest.approx(
        0.5 * (1 - 33 / 81) + 0.5 * (1 - 1 / 65), rel=1e-4
    )
    assert multimask_dice_loss(everywhere, both).item() == pytest.approx(1 - 33 / 145, rel=1e-4)
    with pytest.raises(ValueError, match="do not match"):
        multimask_dice_loss(noisy, target[0])


def test_confusion_counts_skip_ignored_pixels() -> None:
    mask = torch.tensor([[1, 0, IGNORE, 1]])
    pred = torch.tensor([[True, True, True, False]])
    assert confusion_counts(pred, mask).tolist() == [1.0, 1.0, 1.0]


# ----------------------------------------------------------------------------- prompts


def test_prompts_from_masks_boxes_and_points_per_region() -> None:
    logits = torch.full((2, 16, 16), -1.0)
    logits[0, 2:5, 3:7] = 1.0  # 12 px
    logits[0, 10:14, 10:14] = 1.0  # 16 px: the largest comes first
    prompts = prompts_from_masks(logits, input_size=64, points=2)
    first, empty = prompts
    assert empty is None
    assert first is not None and first.count == 2
    assert first.boxes.tolist() == [[40.0, 40.0, 55.0, 55.0], [12.0, 8.0, 27.0, 19.0]]
    assert first.points.shape == (2, 2, 2)
    for (x0, y0, x1, y1), points in zip(first.boxes, first.points, strict=True):
        assert ((points[:, 0] >= x0) & (points[:, 0] <= x1)).all()
        assert ((points[:, 1] >= y0) & (points[:, 1] <= y1)).all()
    again = prompts_from_masks(logits, input_size=64, points=2)[0]
    assert torch.equal(again.points, first.points)  # validation prompts are deterministic
    whole = prompts_from_masks(logits, input_size=64, mode="mask", points=0)[0]
    assert whole.count == 1 and whole.points is None
    assert whole.boxes.tolist() == [[12.0, 8.0, 55.0, 55.0]]
    capped = prompts_from_masks(logits, input_size=64, max_prompts=1)[0]
    assert capped.count == 1 and capped.boxes.tolist() == [[40.0, 40.0, 55.0, 55.0]]


# ----------------------------------------------------------------------------- stage 2


@pytest.mark.slow
def test_stage2_trains_prompt_encoder_and_decoder_lora(
    stage1: Path, data_root: Path, tmp_path: Path
) -> None:
    stage1_adapter = stage1 / "adapter.pt"
    config = _config(
        tmp_path,
        "stage2",
        data_root,
        stage=2,
        stage1_adapter=str(stage1_adapter),
        iterations=2,
        max_prompts=2,
    )
    code, text = run("train", "lora", "--config", config, "-q")
    assert code == 0, text
    adapter = tmp_path / "stage2" / "adapter.pt"
    record = read_adapter_metadata(adapter)
    assert record["extra_prefixes"] == ["prompt_encoder."]
    assert record["metadata"]["stage"] == 2 and record["metadata"]["iterations"] == 2
    before, after = _adapter_tensors(stage1_adapter), _adapter_tensors(adapter)
    assert any(k.startswith("prompt_encoder.") for k in after)
    image_lora = [k for k in before if k.startswith("image_encoder.")]
    decoder_lora = [k for k in before if k.startswith("mask_decoder.")]
    assert image_lora and decoder_lora
    assert all(torch.equal(before[k], after[k]) for k in image_lora)  # frozen in stage 2
    assert any(not torch.equal(before[k], after[k]) for k in decoder_lora)  # trained
    header = (tmp_path / "stage2" / "logs" / "version_0" / "metrics.csv").read_text()
    assert "val/dice_unprompted" in header.splitlines()[0].split(",")

    lightning.seed_everything(0, verbose=False)
    task = LoraTask(
        **TINY, chip_size=48, target="building", stage=2, stage1_adapter=str(stage1_adapter)
    )
    trainable = [n for n, p in task.named_parameters() if p.requires_grad]
    prefix = "model.encoder.sam."
    assert any(n.startswith(prefix + "prompt_encoder.") for n in trainable)
    assert any(n.startswith(prefix + "mask_decoder.") for n in trainable)
    assert all(
        n.startswith(prefix + "prompt_encoder.")
        or (n.startswith(prefix + "mask_decoder.") and ".lora_" in n)
        for n in trainable
    )


def test_stage2_accepts_a_stage1_adapter_with_decoder_parts(
    stage1_parts: Path, data_root: Path, tmp_path: Path
) -> None:
    stage1_adapter = stage1_parts / "adapter.pt"
    config = _config(
        tmp_path, "stage2", data_root, stage=2, stage1_adapter=str(stage1_adapter), max_prompts=2
    )
    code, text = run("train", "lora", "--config", config, "-q")
    assert code == 0, text
    adapter = tmp_path / "stage2" / "adapter.pt"
    record = read_adapter_metadata(adapter)
    assert record["extra_prefixes"] == ["prompt_encoder.", *PART_PREFIXES]
    assert record["metadata"]["stage"] == 2 and record["metadata"]["decoder_parts"] == PARTS
    before, after = _adapter_tensors(stage1_adapter), _adapter_tensors(adapter)
    parts = [k for k in before if k.startswith(tuple(PART_PREFIXES))]
    assert parts and set(parts) <= set(after)
    assert any(not torch.equal(before[k], after[k]) for k in parts)  # they keep training

    lightning.seed_everything(0, verbose=False)
    with pytest.raises(ConfigError, match="stage-2 adapter") as err:
        LoraTask(**TINY, target="building", stage=2, stage1_adapter=str(adapter))
    assert "\n" not in str(err.value)
    lightning.seed_everything(0, verbose=False)
    with pytest.raises(ConfigError, match=r"decoder_parts=\['output_upscaling'\]: remove it"):
        LoraTask(
            **TINY,
            target="building",
            stage=2,
            stage1_adapter=str(stage1_adapter),
            decoder_parts=["output_upscaling"],
        )
    lightning.seed_everything(0, verbose=False)
    task = LoraTask(
        **TINY,
        target="building",
        stage=2,
        stage1_adapter=str(stage1_adapter),
        decoder_parts=PARTS,  # the same parts may be repeated
    )
    assert task.decoder_parts == tuple(PARTS)
    trainable = {n for n, p in task.named_parameters() if p.requires_grad}
    prefix = "model.encoder.sam."
    assert all(
        n.startswith((prefix + "prompt_encoder.", *(prefix + p for p in PART_PREFIXES)))
        or (n.startswith(prefix + "mask_decoder.") and ".lora_" in n)
        for n in trainable
    )
    assert any(n.startswith(prefix + PART_PREFIXES[0]) for n in trainable)


def test_stage2_without_stage1_adapter_is_a_one_line_config_error(
    data_root: Path, tmp_path: Path
) -> None:
    config = _config(tmp_path, "bad", data_root, stage=2)
    code, text = run("train", "lora", "--config", config, "-q")
    assert code != 0
    assert "stage1_adapter" in text and len(text.strip().splitlines()) == 1


def test_stage1_adapter_of_another_encoder_is_a_one_line_error(
    stage1: Path, data_root: Path, tmp_path: Path
) -> None:
    config = _config(
        tmp_path,
        "other",
        data_root,
        stage=2,
        encoder="sam_vit_b",
        stage1_adapter=str(stage1 / "adapter.pt"),
    )
    code, text = run("train", "lora", "--config", config, "-q")
    assert code != 0
    assert "trained on 'mobile_sam'" in text and len(text.strip().splitlines()) == 1


def test_stage2_refuses_other_settings_and_other_random_weights(stage1: Path) -> None:
    adapter = str(stage1 / "adapter.pt")
    lightning.seed_everything(0, verbose=False)
    with pytest.raises(ConfigError, match="rank=4"):
        LoraTask(**TINY, target="building", stage=2, stage1_adapter=adapter, rank=4)
    lightning.seed_everything(1, verbose=False)
    with pytest.raises(ConfigError, match="base digests differ"):
        LoraTask(**TINY, target="building", stage=2, stage1_adapter=adapter)


# ----------------------------------------------------------------------------- data


def test_mask_data_module_makes_the_target_binary(data_root: Path) -> None:
    classes = [
        {"name": n, "colour": "#{:02X}{:02X}{:02X}".format(*rgb)} for n, rgb in COLOURS.items()
    ]
    source = {
        "layout": "folders",
        "images": str(data_root / "images"),
        "labels": str(data_root / "masks"),
        "names": ["tile_0"],
    }
    data = MaskDataModule(
        classes={"classes": classes, "ignore_colours": ["#000000"]},
        target="building",
        train=[source],
        chip_size=48,
        augment=False,
    )
    data.setup()
    sample = data.train_set[0]
    label = np.asarray(Image.open(data_root / "masks" / "tile_0.png"))
    building = (label == COLOURS["building"]).all(-1)
    assert set(sample) == {"image", "mask", "name"}
    assert torch.equal(sample["mask"][:, :2], torch.full((48, 2), IGNORE))
    assert torch.equal(sample["mask"][:, 2:] == 1, torch.from_numpy(building[:, 2:]))
    assert foreground_fraction(data.train_set) == pytest.approx(building[:, 2:].mean())
    with pytest.raises(ConfigError, match="not a class"):
        MaskDataModule(classes={"classes": classes}, target="road", train=[source])
    with pytest.raises(ConfigError, match="object or boundary"):
        MaskDataModule(
            classes={"classes": classes}, target="building", train=[{**source, "objects": "x"}]
        )


def test_polygon_masks_are_burnt_on_the_raster_grid(tmp_path: Path) -> None:
    image = (texture(50, 40, seed=2) * 200).astype(np.uint8)
    raster = write_raster(tmp_path / "scene.tif", image)
    x0, y0 = ORIGIN.c, ORIGIN.f  # 10 m pixels: polygon over rows 5..14, cols 10..19
    square = box(x0 + 100, y0 - 150, x0 + 200, y0 - 50)
    frame = gpd.GeoDataFrame(geometry=[square], crs="EPSG:32633").to_crs("EPSG:4326")
    frame.to_file(tmp_path / "buildings.gpkg")  # in another CRS: reprojected on reading
    dataset = PolygonMaskDataset(raster, tmp_path / "buildings.gpkg", chip_size=32)
    assert len(dataset) == 4
    first = dataset[0]
    expected = torch.zeros(32, 32, dtype=torch.int64)
    expected[5:15, 10:20] = 1
    assert first["image"].shape == (3, 32, 32) and torch.equal(first["mask"], expected)
    assert (dataset[3]["mask"][18:, :] == IGNORE).all()  # past the raster's bottom edge
    far = gpd.GeoDataFrame(geometry=[box(0, 0, 1, 1)], crs="EPSG:32633")
    far.to_file(tmp_path / "far.gpkg")
    with pytest.raises(Exception, match="overlaps"):
        PolygonMaskDataset(raster, tmp_path / "far.gpkg", chip_size=32)


@pytest.mark.parametrize(
    "path",
    sorted((Path(__file__).parents[2] / "configs" / "lora").glob("*.yaml")),
    ids=lambda p: p.name,
)
def test_shipped_lora_configs_are_valid(path: Path, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RS_SAM_DATA_DIR", str(tmp_path))
    values = load_config(path)
    check_arguments(LoraTask, values["model"], "model")
    trainer_arguments(values["trainer"])
    data = MaskDataModule(**values["data"])  # sources, layouts and target are checked here
    assert data.target == "building"
