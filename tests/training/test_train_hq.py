"""``rs-sam train hq``: HQ-SAM training (only the HQ parameters), prompts, export, errors.

Tiny random encoders and synthetic square masks: these tests check the machinery (what
trains, what the files hold, that they load into the official model), not quality.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from rs_sam.data.labels import IGNORE
from rs_sam.errors import CheckpointError, ConfigError
from rs_sam.losses.mask import hq_mask_loss, object_ious
from rs_sam.models.encoders import get_encoder
from rs_sam.models.head_file import CHECKPOINT_KEY, read_head_checkpoint
from rs_sam.training import run
from rs_sam.training.config import check_arguments, load_config, trainer_arguments
from rs_sam.training.hq_task import HqTask, export_hq_checkpoint, load_hq_task
from rs_sam.training.hq_weights import (
    HQ_MODULES,
    is_hq_key,
    load_base_weights,
    set_hq_trainable,
)
from rs_sam.training.mask_data import MaskDataModule
from rs_sam.training.mask_prompts import sample_prompts

pytestmark = [
    pytest.mark.filterwarnings("ignore::rs_sam.models.encoders.base.RandomWeightsWarning"),
    pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`"),
]

TINY = {"encoder": "sam_hq_vit_b", "weights": "random", "tiny_encoder": True}
COLOURS = {"ground": (200, 180, 120), "building": (220, 30, 30)}


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models run many small ops: one thread is faster on a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _hq_modeling():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import segment_anything_hq
        import segment_anything_hq.modeling as modeling
    return segment_anything_hq, modeling


def _official_hq_only(decoder: torch.nn.Module) -> int:
    return sum(p.numel() for n, p in decoder.named_parameters() if n.split(".")[0] in HQ_MODULES)


def _tiny_task(**model: object) -> HqTask:
    torch.manual_seed(0)
    return HqTask(**{**TINY, "chip_size": 64, **model})  # type: ignore[arg-type]


def _square_batch() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(2, 3, 64, 64, generator=generator) * 80
    masks = torch.zeros(2, 64, 64, dtype=torch.int64)
    masks[0, 10:30, 12:40] = 1
    masks[0, 40:60, 40:60] = 1
    masks[1, 5:50, 20:35] = 1
    masks[1, :, :2] = IGNORE
    for b in range(2):
        images[b][:, masks[b] == 1] = 200
    return {"image": images, "mask": masks}


# --------------------------------------------------------------------------- parameters


@pytest.mark.parametrize("name", ["sam_hq_vit_b", "sam_hq_vit_tiny"])
def test_trainable_count_is_the_official_hq_only_count(name: str) -> None:
    """Tiny builds: our trainable count = the official MaskDecoderHQ's HQ-only parameters."""
    task = _tiny_task(encoder=name)
    decoder = task.encoder.hq_decoder
    _, modeling = _hq_modeling()
    cfg = dict(
        transformer_dim=decoder.transformer_dim,
        transformer=modeling.TwoWayTransformer(
            depth=len(decoder.transformer.layers),
            embedding_dim=decoder.transformer_dim,
            mlp_dim=decoder.transformer.layers[0].mlp.lin1.out_features,
            num_heads=decoder.transformer.layers[0].self_attn.num_heads,
        ),
        iou_head_hidden_dim=decoder.iou_prediction_head.layers[0].out_features,
        vit_dim=decoder.compress_vit_feat[0].in_channels,
    )
    official = modeling.MaskDecoderHQ(**cfg)
    assert task.count_trainable() == _official_hq_only(official) > 0
    trainable = {n for n, p in task.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in task.named_parameters() if is_hq_key(n)}
    assert str(task.count_trainable()) in task.summary().replace(",", "")


def test_full_size_vit_b_trainable_count_is_official() -> None:
    """Full-size ViT-B (built on the meta device): 1,071,104 HQ parameters, as official."""
    spec = get_encoder("sam_hq_vit_b")
    sam_hq, _ = _hq_modeling()
    with torch.device("meta"):
        ours = spec.builder(spec)
        official = sam_hq.sam_model_registry["vit_b"]()
    count = set_hq_trainable(ours)
    assert count == sum(p.numel() for p in ours.parameters() if p.requires_grad)
    assert count == _official_hq_only(official.mask_decoder) == 1_071_104
    assert set(ours.sam.state_dict()) == set(official.state_dict())


# --------------------------------------------------------------------------- training


def test_a_training_step_changes_only_the_hq_parameters() -> None:
    task = _tiny_task(lr=1e-2)
    before = {k: v.clone() for k, v in task.state_dict().items()}
    optimizer = task.configure_optimizers()["optimizer"]
    loss = task.training_step(_square_batch(), 0)
    assert loss is not None and loss.requires_grad
    loss.backward()
    optimizer.step()
    after = task.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    hq_keys = {k for k in before if is_hq_key(k)}
    assert changed and changed <= hq_keys
    assert all(torch.equal(before[k], after[k]) for k in before if k not in hq_keys)


def test_loss_falls_on_square_masks() -> None:
    task = _tiny_task(lr=1e-2, prompt_types=["box"], box_noise=0.0)
    optimizer = task.configure_optimizers()["optimizer"]
    batch = _square_batch()
    losses = []
    for step in range(12):
        optimizer.zero_grad()
        loss = task.training_step(batch, step)
        assert loss is not None
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert np.mean(losses[-3:]) < 0.6 * np.mean(losses[:3])


def test_a_batch_without_objects_is_skipped() -> None:
    task = _tiny_task()
    batch = _square_batch()
    batch["mask"][:] = 0
    assert task.training_step(batch, 0) is None


def test_loss_and_ious_ignore_unlabelled_pixels() -> None:
    target = torch.zeros(1, 8, 8, dtype=torch.int64)
    target[0, 2:6, 2:6] = 1
    target[0, :, 0] = IGNORE
    perfect = torch.where(target == 1, 20.0, -20.0).float()
    perfect[target == IGNORE] = 20.0  # wrong, but unlabelled
    loss, bce, dice = hq_mask_loss(perfect[:, None], target)
    assert float(loss) < 1e-3 and float(bce) < 1e-3 and float(dice) < 1e-3
    iou, biou = object_ious(perfect > 0, target)
    assert iou.tolist() == [1.0] and biou.tolist() == [1.0]
    half = torch.zeros(1, 8, 8, dtype=torch.bool)
    half[0, 2:4, 2:6] = True
    assert object_ious(half, target)[0].tolist() == [0.5]
    # low-resolution logits are upsampled to the target
    assert hq_mask_loss(torch.zeros(1, 1, 4, 4), target)[0].shape == ()


# --------------------------------------------------------------------------- prompts


def test_prompts_are_valid_boxes_points_and_masks() -> None:
    mask = torch.zeros(64, 64, dtype=torch.int64)
    mask[10:30, 12:40] = 1
    mask[40:60, 40:60] = 1
    mask[0:2, 0:2] = 1  # under min_area: no object
    mask[:, 63] = IGNORE
    common = dict(input_size=256, mask_size=64, min_area=16)
    exact = sample_prompts(mask, kind="box", **common)
    assert exact is not None and exact.count == 2  # largest first, deterministic
    # rs-sam's frame: pixel edges scaled by 256 / 64, minus 0.5
    assert exact.boxes.tolist()[0] == pytest.approx([12 * 4 - 0.5, 10 * 4 - 0.5, 159.5, 119.5])
    assert exact.targets.shape == (2, 64, 64)
    assert (exact.targets[:, :, 63] == IGNORE).all()
    assert exact.targets[0, 10:30, 12:40].eq(1).all() and exact.targets[0, 40:60, 40:60].eq(0).all()
    rng = np.random.default_rng(0)
    for _ in range(5):
        noisy = sample_prompts(mask, kind="box", box_noise=0.2, rng=rng, **common)
        assert noisy is not None
        x0, y0, x1, y1 = noisy.boxes.T
        assert (x1 > x0).all() and (y1 > y0).all()
        assert (noisy.boxes >= -0.5).all() and (noisy.boxes <= 255.5).all()
    one = sample_prompts(mask, kind="point", points=10, max_objects=1, rng=rng, **common)
    assert one is not None and one.count == 1 and one.points.shape == (1, 10, 2)
    pixels = ((one.points[0] + 0.5) / 4 - 0.5).round().long()  # back to chip pixels
    assert (one.targets[0][pixels[:, 1], pixels[:, 0]] == 1).all()
    coarse = sample_prompts(mask, kind="mask", rng=rng, **common)
    assert coarse is not None and coarse.masks.shape == (2, 1, 64, 64)
    assert set(coarse.masks.unique().tolist()) <= {-10.0, 10.0}
    inside = coarse.masks[:, 0] > 0
    agreement = (inside == (coarse.targets == 1)).float().mean()
    assert 0.8 < float(agreement) < 1.0  # noisy at the boundary, right elsewhere
    assert sample_prompts(torch.zeros(64, 64, dtype=torch.int64), kind="box", **common) is None
    with pytest.raises(ValueError, match="prompt kind"):
        sample_prompts(mask, kind="scribble", **common)


# --------------------------------------------------------------------------- weights


@pytest.fixture(scope="module")
def mobile_sam_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A full-size plain MobileSAM state dict (random): what `sam_hq_vit_tiny` starts from."""
    torch.manual_seed(2)
    spec = get_encoder("mobile_sam")
    path = tmp_path_factory.mktemp("base") / "mobile_sam.pt"
    torch.save(spec.builder(spec).sam.state_dict(), path)
    return path


def test_plain_weights_load_with_exactly_the_hq_keys_missing(
    mobile_sam_file: Path, tmp_path: Path
) -> None:
    task = HqTask(encoder="sam_hq_vit_tiny", base_checkpoint=str(mobile_sam_file))
    assert not task.encoder.random_weights and task.initialised_hq
    plain = torch.load(mobile_sam_file, weights_only=True)
    ours = task.encoder.sam.state_dict()
    assert set(ours) - set(plain) == {k for k in ours if is_hq_key(k)}
    assert len(set(ours) - set(plain)) == 25
    assert all(torch.equal(ours[k], v) for k, v in plain.items())
    assert task.metadata().encoder_sha256 is not None and task.metadata().task == "hq"
    # Lightning checkpoints keep only the HQ parameters; the task rebuilds from them
    checkpoint = {"state_dict": task.state_dict(), "hyper_parameters": dict(task.hparams)}
    task.on_save_checkpoint(checkpoint)
    assert checkpoint["state_dict"] and all(is_hq_key(k) for k in checkpoint["state_dict"])
    assert checkpoint[CHECKPOINT_KEY]["task"] == "hq"
    with torch.no_grad():
        task.encoder.hq_decoder.hf_token.weight.add_(1.0)  # "trained"
    checkpoint = {"state_dict": task.state_dict(), "hyper_parameters": dict(task.hparams)}
    task.on_save_checkpoint(checkpoint)
    path = tmp_path / "last.ckpt"
    torch.save(checkpoint, path)
    rebuilt = load_hq_task(path)  # SAM weights from the recorded base, HQ ones from the file
    assert all(torch.equal(v, rebuilt.state_dict()[k]) for k, v in task.state_dict().items())


def test_a_base_checkpoint_of_another_backbone_is_a_one_line_error(
    mobile_sam_file: Path, tmp_path: Path
) -> None:
    spec = get_encoder("sam_hq_vit_b")
    encoder = spec.builder(spec, tiny=True)
    with pytest.raises(CheckpointError) as info:
        load_base_weights(encoder, mobile_sam_file)
    message = str(info.value)
    assert "\n" not in message and "does not fit 'sam_hq_vit_b'" in message
    assert "'mobile_sam' checkpoint: use model.encoder 'sam_hq_vit_tiny'" in message
    # the same through the task: a tiny plain ViT file for the (full-size) Light HQ-SAM
    plain = get_encoder("sam_vit_b")
    path = tmp_path / "sam_vit_b_tiny.pth"
    torch.save(plain.builder(plain, tiny=True).sam.state_dict(), path)
    with pytest.raises(CheckpointError) as info:
        HqTask(encoder="sam_hq_vit_tiny", base_checkpoint=str(path))
    assert "\n" not in str(info.value) and "plain 'mobile_sam' checkpoint" in str(info.value)
    # and a tiny plain ViT file fits the tiny HQ ViT: exactly the HQ keys stay missing
    missing = load_base_weights(encoder, path)
    assert sorted(missing) == sorted(k for k in encoder.sam.state_dict() if is_hq_key(k))


def test_a_non_hq_encoder_is_a_one_line_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        HqTask(encoder="sam_vit_b", weights="random", tiny_encoder=True)
    message = str(info.value)
    assert "\n" not in message and "not an HQ-SAM encoder" in message
    assert "model.encoder: 'sam_hq_vit_b'" in message
    with pytest.raises(ConfigError, match="prompt_types"):
        HqTask(**TINY, prompt_types=["box", "scribble"])
    with pytest.raises(ConfigError, match="base_checkpoint"):
        HqTask(**TINY, base_checkpoint="sam_vit_b_01ec64.pth")


# --------------------------------------------------------------------------- export


def _official_tiny_vit_b(task: HqTask) -> torch.nn.Module:
    """segment_anything_hq's Sam with the tiny ViT-B hyperparameters of rs-sam's test build."""
    from functools import partial

    from rs_sam.models.encoders.sam import _DECODERS, _VIT_VARIANTS

    _, modeling = _hq_modeling()
    vit, dec = _VIT_VARIANTS["tiny"], _DECODERS["tiny"]
    size, grid = vit["image_size"], vit["image_size"] // 16
    return modeling.Sam(
        image_encoder=modeling.ImageEncoderViT(
            depth=vit["depth"], embed_dim=vit["embed_dim"], img_size=size, mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_heads=vit["num_heads"],
            patch_size=16, qkv_bias=True, use_rel_pos=True,
            global_attn_indexes=vit["global_attn_indexes"], window_size=vit["window_size"],
            out_chans=dec["embed_dim"],
        ),
        prompt_encoder=modeling.PromptEncoder(
            embed_dim=dec["embed_dim"], image_embedding_size=(grid, grid),
            input_image_size=(size, size), mask_in_chans=dec["mask_in_chans"],
        ),
        mask_decoder=modeling.MaskDecoderHQ(
            num_multimask_outputs=3,
            transformer=modeling.TwoWayTransformer(
                depth=dec["depth"], embedding_dim=dec["embed_dim"], mlp_dim=dec["mlp_dim"],
                num_heads=dec["num_heads"],
            ),
            transformer_dim=dec["embed_dim"], iou_head_depth=3,
            iou_head_hidden_dim=dec["iou_hidden"], vit_dim=vit["embed_dim"],
        ),
    )  # fmt: skip


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiles with two building squares each, RGB colour labels, a black (ignored) strip."""
    root = tmp_path_factory.mktemp("hq_data")
    rng = np.random.default_rng(0)
    for sub in ("images", "masks"):
        (root / sub).mkdir()
    for i in range(3):
        image = rng.integers(60, 120, size=(64, 64, 3), dtype=np.uint8)
        label = np.zeros((64, 64, 3), np.uint8)
        label[:] = COLOURS["ground"]
        for r, c in rng.integers(0, 44, size=(2, 2)):
            image[r : r + 16, c : c + 16] = 230
            label[r : r + 16, c : c + 16] = COLOURS["building"]
        label[:, :2] = 0
        Image.fromarray(image).save(root / "images" / f"tile_{i}.png")
        Image.fromarray(label).save(root / "masks" / f"tile_{i}.png")
    return root


def _config(tmp_path: Path, data_root: Path, **model: object) -> Path:
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
        "model": {**TINY, "lr": 0.01, **model},
        "data": {
            "classes": {"classes": classes, "ignore_colours": ["#000000"]},
            "target": "building",
            "train": [{**source, "names": ["tile_0", "tile_1"]}],
            "val": [{**source, "names": ["tile_2"]}],
            "chip_size": 64,
            "batch_size": 2,
            "augment": True,
        },
        "trainer": {
            "max_epochs": 2,
            "accelerator": "cpu",
            "log_every_n_steps": 1,
            "default_root_dir": str(tmp_path / "run"),
        },
    }
    path = tmp_path / "hq.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_train_end_to_end_and_export_loads_strictly_into_the_official_model(
    tmp_path: Path, data_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(run._KINDS, "hq", run._Kind(MaskDataModule, HqTask, "val/iou", "runs/hq"))
    result = run.train("hq", _config(tmp_path, data_root), show_progress=False)  # type: ignore[arg-type]
    assert result.best is not None and result.last is not None
    for key in ("val/iou", "val/biou", "val/iou_sam", "val/biou_sam", "val/loss"):
        assert 0.0 <= result.metrics[key] <= (1.0 if "iou" in key else 100.0)
    assert result.metrics["val/objects"] == 2
    metadata, hparams, state = read_head_checkpoint(result.best)
    assert metadata.task == "hq" and metadata.encoder == "sam_hq_vit_b"
    assert hparams["target"] == "building" and metadata.chip_size == 64
    assert any(is_hq_key(k) for k in state)  # random weights: every tensor is kept
    # export from the checkpoint == export from the rebuilt task
    path = export_hq_checkpoint(result.best, tmp_path / "sam_hq.pth")
    exported = torch.load(path, weights_only=True)
    task = load_hq_task(result.best)
    assert set(exported) == set(task.encoder.sam.state_dict())
    official = _official_tiny_vit_b(task)
    official.load_state_dict(exported, strict=True)
    assert all(torch.equal(official.state_dict()[k], v) for k, v in exported.items())
    # ... and back into the registry's HQ encoder, strictly
    spec = get_encoder("sam_hq_vit_b")
    encoder = spec.builder(spec, tiny=True)
    encoder.load_checkpoint(path)
    ours = encoder.sam.state_dict()
    assert all(torch.equal(ours[k], v) for k, v in exported.items())
    # the HQ parameters trained; the SAM ones are those of the same (seeded) random build
    fresh = {k.removeprefix("model.encoder.sam."): v for k, v in _tiny_task().state_dict().items()}
    assert all(torch.equal(fresh[k], v) for k, v in exported.items() if not is_hq_key(k))
    assert any(not torch.equal(fresh[k], v) for k, v in exported.items() if is_hq_key(k))


def test_export_from_a_plain_base_has_the_official_key_set(
    mobile_sam_file: Path, tmp_path: Path
) -> None:
    task = HqTask(encoder="sam_hq_vit_tiny", base_checkpoint=str(mobile_sam_file))
    path = export_hq_checkpoint(task, tmp_path / "sam_hq_vit_tiny.pth")
    exported = torch.load(path, weights_only=True)
    sam_hq, _ = _hq_modeling()
    official = sam_hq.sam_model_registry["vit_tiny"]()  # TinyViT cannot be built on meta
    official.load_state_dict(exported, strict=True)
    shapes = {k: tuple(v.shape) for k, v in official.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in exported.items()} == shapes
    spec = get_encoder("sam_hq_vit_tiny")
    spec.builder(spec).load_checkpoint(path)  # strict


# --------------------------------------------------------------------------- configs


@pytest.mark.parametrize(
    "path",
    sorted((Path(__file__).parents[2] / "configs" / "hq").glob("*.yaml")),
    ids=lambda p: p.name,
)
def test_shipped_hq_configs_are_valid(path: Path, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RS_SAM_DATA_DIR", str(tmp_path))
    values = load_config(path)
    check_arguments(HqTask, values["model"], "model")
    assert get_encoder(values["model"]["encoder"]).hq
    trainer_arguments(values["trainer"])
    data = MaskDataModule(**values["data"])
    assert data.target == "building"


def test_a_mask_raster_on_another_grid_is_a_one_line_cli_error(tmp_path: Path) -> None:
    """`rs-sam train hq` (and lora: the same data module) refuses a label raster off the
    image's grid before any training, with the fix in one line."""
    from affine import Affine
    from click.testing import CliRunner

    from rs_sam.cli.main import cli
    from tests.helpers.synthetic import ORIGIN, write_raster

    image = write_raster(tmp_path / "image.tif", np.full((3, 64, 64), 90, np.uint8))
    shifted = ORIGIN * Affine.translation(8, 0)  # 8 pixels east of the image
    label = write_raster(tmp_path / "label.tif", np.ones((1, 64, 64), np.uint8),
                         transform=shifted)  # fmt: skip
    config = yaml.safe_load(_config(tmp_path, tmp_path).read_text())
    source = {"layout": "raster", "image": str(image), "label": str(label)}
    config["data"]["train"] = config["data"]["val"] = [source]
    config["data"]["classes"] = {"classes": [{"name": "ground"}, {"name": "building"}]}
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(cli, ["train", "hq", "--config", str(path)])
    assert result.exit_code == 2, result.output
    message = result.output.strip().splitlines()[-1]
    assert message.startswith("Error: ") and "label.tif is not on the grid of" in message
    assert not (tmp_path / "run").exists()
