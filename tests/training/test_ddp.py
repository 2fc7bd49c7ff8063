"""Training on several devices: the trainer section's device keys, and DDP with two CPU
processes (gloo) on the tiny random encoder.

Lightning's ``ddp`` starts the second rank by running the command line again, so the runs go
through ``python -m rs_sam.cli`` in a subprocess (see ``tests/helpers/ddp_training.py``).
"""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import lightning
import pytest
import torch
import yaml
from click.testing import CliRunner
from PIL import Image

from rs_sam.cli.main import cli
from rs_sam.errors import ConfigError
from rs_sam.training.change_data import ChangeDataModule
from rs_sam.training.config import STRATEGIES, load_config, trainer_arguments
from rs_sam.training.distributed import allow_unused_parameters, sum_over_ranks, zero_loss
from rs_sam.training.lora_task import LoraTask
from tests.helpers.ddp_training import (
    DDP_CPU,
    change_config,
    change_pairs,
    encoded_by_folder,
    train_in_subprocess,
)
from tests.helpers.train_configs import COLOURS, segment_folder

CONFIGS = Path(__file__).parents[2] / "configs"


# ----------------------------------------------------------------------- the trainer section


def test_trainer_section_takes_devices_nodes_strategy_and_precision() -> None:
    good = {"accelerator": "gpu", "devices": 4, "num_nodes": 2, "strategy": "ddp",
            "precision": "bf16-mixed"}  # fmt: skip
    assert trainer_arguments(good) == good
    for devices in (-1, 1, [0, 2], "auto", "0,1", "3"):
        assert trainer_arguments({"devices": devices}) == {"devices": devices}
    for strategy in ("auto", "ddp_spawn", "ddp_find_unused_parameters_true"):
        assert strategy in STRATEGIES and trainer_arguments({"strategy": strategy})
    # Lightning's older spellings become the names it prefers (it would warn about them).
    for old, new in ((16, "16-mixed"), ("bf16", "bf16-mixed"), (32, "32-true")):
        assert trainer_arguments({"precision": old}) == {"precision": new}


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("strategy", "ddp2", "trainer.strategy='ddp2' is not one of auto, single_device, ddp,"),
        ("strategy", "fsdp", "(no sharding: the trained parts are small, ddp replicates them)"),
        ("precision", "8-true", "trainer.precision='8-true' is not one of 32-true, 16-mixed,"),
        ("devices", 0, "trainer.devices=0 must be a count >= 1 (-1: all), a list of distinct"),
        ("devices", [1, 1], "trainer.devices=[1, 1] must be a count"),
        ("devices", "two", "trainer.devices='two' must be a count"),
        ("num_nodes", 0, "trainer.num_nodes=0 must be an integer >= 1"),
        ("num_nodes", "2", "trainer.num_nodes='2' must be an integer >= 1"),
        ("accelerator", "gpus", "trainer.accelerator='gpus' is not one of auto, cpu, gpu,"),
    ],
)
def test_bad_device_keys_are_one_line_errors(key: str, value: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)) as caught:
        trainer_arguments({key: value})
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("kind", ["change", "segment", "lora", "hq"])
def test_every_kind_of_config_accepts_the_ddp_keys(kind: str, monkeypatch, tmp_path) -> None:
    """Each shipped config with ``devices: 2, strategy: ddp`` on the CPU is a DDP trainer."""
    for path in sorted((CONFIGS / kind).glob("*.yaml")):
        for name in set(re.findall(r"\$\{(\w+)\}", path.read_text())):
            monkeypatch.setenv(name, str(tmp_path))
        values = load_config(path)
        args = trainer_arguments({**values["trainer"], **DDP_CPU, "precision": "32-true"})
        args.pop("default_root_dir", None)
        trainer = lightning.Trainer(**args, logger=False, enable_checkpointing=False)
        assert isinstance(trainer.strategy, lightning.pytorch.strategies.DDPStrategy), path
        assert trainer.num_devices == 2, path


def test_a_trainer_section_this_machine_cannot_run_is_a_config_error(tmp_path: Path) -> None:
    config = change_config(tmp_path, cache=False, accelerator="cpu", devices=[0, 1])
    result = CliRunner().invoke(cli, ["train", "change", "--config", str(config), "-q"])
    assert result.exit_code == 2, result.output
    assert "the config's trainer section does not fit this machine:" in result.output
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------- DDP pieces, in-process


def _trainer(**kwargs: Any) -> lightning.Trainer:
    return lightning.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, **kwargs)


def test_unused_parameter_search_is_switched_on_for_ddp_unless_named() -> None:
    plain = _trainer(devices=2, strategy="ddp")
    assert allow_unused_parameters(plain)
    assert plain.strategy._ddp_kwargs == {"find_unused_parameters": True}
    assert allow_unused_parameters(_trainer(devices=2))  # auto on 2 devices is DDP
    explicit = _trainer(devices=2, strategy="ddp_find_unused_parameters_false")
    assert not allow_unused_parameters(explicit)  # the config's own choice stands
    assert not allow_unused_parameters(_trainer(devices=1))  # one device: nothing to do
    # LoRA stage 2 trains the whole prompt encoder; its mask-prompt path gets no gradient.
    assert LoraTask.has_unused_parameters(SimpleNamespace(hparams=SimpleNamespace(stage=2)))
    assert not LoraTask.has_unused_parameters(SimpleNamespace(hparams=SimpleNamespace(stage=1)))


def test_a_skipped_step_still_reaches_every_trained_parameter() -> None:
    module = lightning.LightningModule()
    module.head = torch.nn.Linear(3, 2)
    module.frozen = torch.nn.Linear(3, 2).requires_grad_(False)
    loss = zero_loss(module)
    loss.backward()
    assert float(loss.detach()) == 0.0
    assert all(p.grad is not None and not p.grad.any() for p in module.head.parameters())
    assert all(p.grad is None for p in module.frozen.parameters())
    values = torch.arange(4.0)
    assert sum_over_ranks(module, values) is values  # one device: nothing to sum


class _CountingEncoder:
    """A stand-in frozen encoder: one 4-channel map per image, slowly, counting images."""

    spec = SimpleNamespace(name="mobile_sam")
    input_size = 48

    def __init__(self) -> None:
        self.images = 0
        self.lock = threading.Lock()

    def __call__(self, images: torch.Tensor) -> Any:
        time.sleep(0.1)  # long enough for the other process to try the same samples
        with self.lock:
            self.images += images.shape[0]
        return SimpleNamespace(features=[images[:, :1].repeat(1, 4, 1, 1) / 255])


def test_concurrent_processes_fill_the_feature_cache_once(tmp_path: Path) -> None:
    """What ranks started together (torchrun, SLURM) do: one fills, the other waits, reads."""
    root = change_pairs(tmp_path / "pairs")
    encoder = _CountingEncoder()
    sets: list[Any] = [None, None]
    errors: list[BaseException] = []

    def rank(index: int) -> None:
        try:
            data = ChangeDataModule(
                train=[{"layout": "folder", "root": str(root), "split": "train"}],
                val=[{"layout": "folder", "root": str(root), "split": "val"}],
                chip_size=48,
                augment=False,
                cache_features=True,
                cache_dir=str(tmp_path / "cache"),
            )
            data.attach_encoder(encoder, encoder_sha256=None)  # type: ignore[arg-type]
            data.setup("fit")
            sets[index] = data.train_set
        except BaseException as err:  # reported below, in the test's thread
            errors.append(err)

    threads = [threading.Thread(target=rank, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert encoder.images == 2 * 6  # two dates of 4 train + 2 val pairs, encoded once
    assert len(list((tmp_path / "cache").rglob("*.pt"))) == 6
    assert not list((tmp_path / "cache").rglob("*.tmp"))
    first, second = (s[0]["features_a"][0] for s in sets)
    assert torch.equal(first, second)  # both read the same entries


# -------------------------------------------------------------- two CPU processes, end to end


def test_ddp_with_two_cpu_processes_trains_and_resumes(tmp_path: Path) -> None:
    config = change_config(tmp_path, **DDP_CPU)
    run, checkpoints = tmp_path / "run", tmp_path / "run" / "checkpoints"
    first = train_in_subprocess("change", config)
    assert first.returncode == 0, first.stdout[-3000:]
    text = first.stdout
    assert "distributed_backend=gloo" in text and "Starting with 2 processes" in text
    assert text.count("best: ") == 1  # the summary comes from rank 0 only
    # The feature cache: one process encoded every sample, the other read them all.
    caches = encoded_by_folder(text)
    assert len(caches) == 2  # the train and val keys
    for lines in caches.values():
        assert len(lines) == 2 and sorted(n for n, _ in lines) == [0, lines[0][1]], lines
    assert len(list((tmp_path / "cache").rglob("*.pt"))) == 6
    # One run's files, written once: two checkpoints, one CSV log.
    assert sorted(p.name for p in checkpoints.iterdir()) == ["best.ckpt", "last.ckpt"]
    assert [p.name for p in (run / "logs").iterdir()] == ["version_0"]
    header = (run / "logs" / "version_0" / "metrics.csv").read_text().splitlines()[0]
    assert "val/f1" in header.split(",")
    state = torch.load(checkpoints / "last.ckpt", weights_only=True)
    # 4 training pairs, 2 per step: each rank takes 2 pairs (the distributed sampler), 1 step.
    assert state["global_step"] == 1 and state["epoch"] == 0

    resumed = train_in_subprocess("change", config, "--max-epochs", "2")
    assert resumed.returncode == 0, resumed.stdout[-3000:]
    assert resumed.stdout.count("resuming from") == 2  # both ranks continue the same run
    assert all(n == 0 for lines in encoded_by_folder(resumed.stdout).values() for n, _ in lines)
    state = torch.load(checkpoints / "last.ckpt", weights_only=True)
    assert state["global_step"] == 2 and state["epoch"] == 1
    assert sorted(p.name for p in (run / "logs").iterdir()) == ["version_0", "version_1"]
    assert resumed.stdout.count("best: ") == 1


# ------------------------------------------------------- the mask tasks under DDP (slow tier)


def _mask_config(tmp_path: Path, name: str, model: dict[str, Any], **data: Any) -> Path:
    """LoRA/HQ config on the segment tiles (target: building), on two CPU processes."""
    root = tmp_path / "tiles"
    if not root.exists():
        segment_folder(root, 3)
    source = {"layout": "folders", "images": str(root / "images"), "labels": str(root / "masks")}
    classes = [{"name": n, "colour": "#{:02X}{:02X}{:02X}".format(*rgb)}
               for n, rgb in COLOURS.items()]  # fmt: skip
    config = {
        "seed": 0,
        "model": {"weights": "random", "tiny_encoder": True, **model},
        "data": {
            "classes": {"classes": classes},
            "target": "building",
            "train": [{**source, "names": ["tile_0", "tile_1"]}],
            "val": [{**source, "names": ["tile_2"]}],
            "chip_size": 64,
            "batch_size": 2,
            **data,
        },
        "trainer": {
            "max_epochs": 2,
            "log_every_n_steps": 1,
            "default_root_dir": str(tmp_path / name),
            **DDP_CPU,
        },
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.slow
def test_hq_under_ddp_when_one_rank_has_no_object(tmp_path: Path) -> None:
    """The rank whose chip holds no building still steps (a skipped step would hang DDP)."""
    config = _mask_config(tmp_path, "hq", {"encoder": "sam_hq_vit_b"})
    Image.new("RGB", (64, 64), COLOURS["ground"]).save(tmp_path / "tiles/masks/tile_1.png")
    result = train_in_subprocess("hq", config, timeout=240)
    assert result.returncode == 0, result.stdout[-3000:]
    assert result.stdout.count("HQ-SAM checkpoint: ") == 1
    assert (tmp_path / "hq" / "sam_hq.pth").is_file()
    state = torch.load(tmp_path / "hq" / "checkpoints" / "last.ckpt", weights_only=True)
    assert state["global_step"] == 2  # one step per epoch on each rank, none skipped


@pytest.mark.slow
def test_lora_stage2_under_ddp_trains_with_unused_prompt_parameters(tmp_path: Path) -> None:
    stage1 = _mask_config(tmp_path, "stage1", {"encoder": "mobile_sam", "decoder": True})
    values = yaml.safe_load(stage1.read_text())
    values["trainer"] = {**values["trainer"], "devices": 1, "strategy": "auto", "max_epochs": 1}
    stage1.write_text(yaml.safe_dump(values))
    result = CliRunner().invoke(cli, ["train", "lora", "--config", str(stage1), "-q"])
    assert result.exit_code == 0, result.output
    model = {"encoder": "mobile_sam", "stage": 2, "iterations": 1, "max_prompts": 2,
             "stage1_adapter": str(tmp_path / "stage1" / "adapter.pt")}  # fmt: skip
    stage2 = _mask_config(tmp_path, "stage2", model)
    result = train_in_subprocess("lora", stage2, timeout=240)
    assert result.returncode == 0, result.stdout[-3000:]  # DDP searched for unused parameters
    assert result.stdout.count("adapter: ") == 1
    assert (tmp_path / "stage2" / "adapter.pt").is_file()
    state = torch.load(tmp_path / "stage2" / "checkpoints" / "last.ckpt", weights_only=True)
    assert state["global_step"] == 2  # two steps: DDP checks for unused parameters on the 2nd
