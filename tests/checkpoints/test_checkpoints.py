"""Checkpoints: cache, offline errors, atomic verified downloads, safe loading, key checks."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import importlib.util
import os
import pickle
import sys
from pathlib import Path

import pytest
import torch

from rs_sam.checkpoints import (
    CheckpointSpec,
    cached_checkpoint_path,
    checkpoint_dir,
    download_checkpoint,
    identify_checkpoint,
    load_state_dict,
    load_ultralytics_state_dict,
    resolve_checkpoint,
)
from rs_sam.errors import CheckpointError, CheckpointNotFoundError
from rs_sam.models.encoders import get_encoder, load_encoder, verify_checkpoint
from rs_sam.models.encoders.sam import build_mobile_sam

HAS_ULTRALYTICS = importlib.util.find_spec("ultralytics") is not None
needs_ultralytics = pytest.mark.skipif(
    not HAS_ULTRALYTICS, reason="ultralytics (the optional 'fastsam' extra) is not installed"
)
HQ_ONLY = ("hf_token", "hf_mlp", "compress_vit_feat", "embedding_encoder", "embedding_maskfeature")


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private, offline rs-sam home for every test."""
    home = tmp_path / "home"
    monkeypatch.setenv("RS_SAM_HOME", str(home))
    monkeypatch.setenv("RS_SAM_OFFLINE", "1")
    return home


@pytest.fixture(scope="module")
def mobile_state_dict() -> dict[str, torch.Tensor]:
    """The official MobileSAM key set and shapes, from a full-size random build."""
    spec = get_encoder("mobile_sam")
    state_dict = build_mobile_sam(spec).sam.state_dict()
    generator = torch.Generator().manual_seed(1)
    for key, value in state_dict.items():  # non-trivial attention biases and weights
        if value.is_floating_point():
            state_dict[key] = torch.randn(value.shape, generator=generator) * 0.02
        if key.endswith("running_var"):
            state_dict[key] = torch.ones_like(value)
    return state_dict


@pytest.fixture(scope="module")
def mobile_file(tmp_path_factory: pytest.TempPathFactory, mobile_state_dict: dict) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "mobile_sam_synthetic.pt"
    torch.save(mobile_state_dict, path)
    return path


def vit_b_like_state_dict() -> dict[str, torch.Tensor]:
    """ViT key names (from a tiny build) with the ViT-B patch-embedding width."""
    spec = get_encoder("sam_vit_b")
    state_dict = spec.builder(spec, tiny=True).sam.state_dict()
    state_dict["image_encoder.patch_embed.proj.weight"] = torch.zeros(768, 3, 16, 16)
    return state_dict


class _Evil:
    """A pickle payload that runs a shell command when unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


# --------------------------------------------------------------------------- MobileSAM file


def test_mobile_sam_key_set_is_the_official_one(mobile_state_dict: dict) -> None:
    """Same keys as segment_anything_hq's vit_tiny build minus its 25 HQ-only decoder keys."""
    from segment_anything_hq import sam_model_registry

    hq_keys = set(sam_model_registry["vit_tiny"]().state_dict())
    ours = set(mobile_state_dict)
    assert ours <= hq_keys
    hq_only = hq_keys - ours
    assert len(hq_only) == 25 and all(any(tag in k for tag in HQ_ONLY) for k in hq_only)


def test_synthetic_mobile_sam_loads_through_load_encoder(
    mobile_file: Path, mobile_state_dict: dict
) -> None:
    enc = load_encoder("mobile_sam", checkpoint=mobile_file)
    assert not enc.random_weights
    loaded = enc.sam.state_dict()
    for key in ("image_encoder.layers.1.blocks.0.attn.qkv.weight", "mask_decoder.iou_token.weight"):
        torch.testing.assert_close(loaded[key], mobile_state_dict[key])
    # TinyViT caches its attention biases in eval mode: the cache must hold the loaded values
    attn = enc.sam.image_encoder.layers[1].blocks[0].attn
    torch.testing.assert_close(attn.ab, attn.attention_biases[:, attn.attention_bias_idxs])
    assert not any(p.requires_grad for p in enc.parameters())
    assert enc.channels == get_encoder("mobile_sam").channels


def test_wrapped_state_dicts_are_unwrapped(tmp_path: Path) -> None:
    state_dict = {"a": torch.zeros(2), "b.c": torch.ones(3)}
    for wrapper in ({"model": state_dict}, {"state_dict": state_dict, "epoch": 3}):
        path = tmp_path / "wrapped.pt"
        torch.save(wrapper, path)
        assert load_state_dict(path).keys() == state_dict.keys()


@pytest.mark.parametrize("payload", [[torch.zeros(2)], {"a": torch.zeros(2), "epoch": 3}])
def test_non_state_dicts_are_rejected(tmp_path: Path, payload: object) -> None:
    path = tmp_path / "odd.pt"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="state dict"):
        load_state_dict(path)


# --------------------------------------------------------------------------- key checks


def test_vit_file_into_mobile_sam_names_the_right_encoder(tmp_path: Path) -> None:
    path = tmp_path / "vit.pth"
    torch.save(vit_b_like_state_dict(), path)
    with pytest.raises(CheckpointError) as info:
        load_encoder("mobile_sam", checkpoint=path)
    message = str(info.value)
    assert "does not fit encoder 'mobile_sam'" in message
    assert "missing keys" in message and "unexpected keys" in message
    assert "use encoder 'sam_vit_b'" in message and "\n" not in message


def test_hq_sam_file_is_recognised(tmp_path: Path, mobile_state_dict: dict) -> None:
    state_dict = dict(mobile_state_dict, **{"mask_decoder.hf_token.weight": torch.zeros(1, 256)})
    assert identify_checkpoint(state_dict) == "sam_hq_vit_tiny"
    path = tmp_path / "sam_hq_vit_tiny.pth"
    torch.save(state_dict, path)
    # HQ-SAM is registered: the message names the HQ encoder the file belongs to
    with pytest.raises(CheckpointError, match="'sam_hq_vit_tiny' checkpoint: use encoder") as info:
        load_encoder("mobile_sam", checkpoint=path)
    assert "\n" not in str(info.value)


def test_shape_mismatch_is_reported(tmp_path: Path, mobile_state_dict: dict) -> None:
    state_dict = dict(mobile_state_dict)
    state_dict["mask_decoder.iou_token.weight"] = torch.zeros(1, 128)
    path = tmp_path / "bad_shape.pt"
    torch.save(state_dict, path)
    with pytest.raises(CheckpointError, match=r"1 shape mismatches \(mask_decoder.iou_token"):
        load_encoder("mobile_sam", checkpoint=path)


@pytest.mark.parametrize(
    ("shapes", "expected"),
    [
        ({"image_encoder.patch_embed.proj.weight": (768, 3, 16, 16)}, "sam_vit_b"),
        ({"image_encoder.patch_embed.proj.weight": (1024, 3, 16, 16)}, "sam_vit_l"),
        ({"image_encoder.patch_embed.proj.weight": (1280, 3, 16, 16)}, "sam_vit_h"),
        (
            {
                "image_encoder.patch_embed.proj.weight": (1280, 3, 16, 16),
                "mask_decoder.hf_token.weight": (1, 256),
            },
            "sam_hq_vit_h",
        ),
        (
            {"model.0.conv.weight": (32, 3, 3, 3), "model.22.proto.cv1.conv.weight": (1,)},
            "fastsam_s",
        ),
        (
            {"model.0.conv.weight": (80, 3, 3, 3), "model.22.proto.cv1.conv.weight": (1,)},
            "fastsam_x",
        ),
        ({"model.0.conv.weight": (80, 3, 3, 3)}, None),  # a detector without mask prototypes
        ({"image_encoder.patch_embed.proj.weight": (96, 3, 16, 16)}, None),
        ({"fc.weight": (10, 10)}, None),
    ],
)
def test_identify_checkpoint(shapes: dict[str, tuple[int, ...]], expected: str | None) -> None:
    assert identify_checkpoint({k: torch.zeros(s) for k, s in shapes.items()}) == expected


def test_identify_mobile_sam(mobile_state_dict: dict) -> None:
    assert identify_checkpoint(mobile_state_dict) == "mobile_sam"


# --------------------------------------------------------------------------- damaged / unsafe


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "text"])
def test_corrupt_files_raise_checkpoint_error(
    tmp_path: Path, mobile_file: Path, damage: str
) -> None:
    path = tmp_path / "damaged.pt"
    data = mobile_file.read_bytes()
    path.write_bytes(
        {
            "truncate": data[: len(data) // 2],
            "garbage": bytes(range(256)) * 8,
            "empty": b"",
            "text": b"this is not a checkpoint\n",
        }[damage]
    )
    with pytest.raises(CheckpointError) as info:
        load_encoder("mobile_sam", checkpoint=path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy-pickle"])
def test_pickle_that_runs_code_is_refused(tmp_path: Path, legacy: bool) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    payload = {"hook": _Evil(marker), "model": {"w": torch.zeros(1)}}
    if legacy:
        with open(path, "wb") as f:
            pickle.dump(payload, f, protocol=2)
    else:
        torch.save(payload, path)
    for loader in (load_state_dict, load_ultralytics_state_dict):
        with pytest.raises(CheckpointError, match=r"refused: .* contains code \(pickled ") as info:
            loader(path)
        assert "os.system" in str(info.value) and "weights_only" not in str(info.value)
    with pytest.raises(CheckpointError, match="refused"):
        load_encoder("mobile_sam", checkpoint=path)
    assert not marker.exists()


def test_missing_explicit_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(CheckpointNotFoundError, match="does not exist"):
        load_encoder("mobile_sam", checkpoint=tmp_path / "nope.pt")


# --------------------------------------------------------------------------- cache


def test_offline_error_says_where_to_put_the_file(isolated_home: Path) -> None:
    spec = get_encoder("sam_vit_b")
    with pytest.raises(CheckpointNotFoundError) as info:
        resolve_checkpoint(spec)
    message = str(info.value)
    expected_path = isolated_home / "checkpoints" / "sam_vit_b_01ec64.pth"
    assert cached_checkpoint_path(spec) == expected_path
    for part in ("sam_vit_b_01ec64.pth", spec.checkpoint.url, str(expected_path), "--checkpoint"):
        assert part in message
    assert "RS_SAM_OFFLINE" in message and "\n" not in message
    assert isinstance(info.value, FileNotFoundError) and info.value.exit_code == 1
    with pytest.raises(CheckpointNotFoundError, match=r"sam_vit_b_01ec64.pth"):
        load_encoder("sam_vit_b")  # the encoder path raises the same error


def test_cached_file_is_used_and_hash_checked_once(tmp_path: Path) -> None:
    data = b"pretend checkpoint bytes"
    spec = dataclasses.replace(
        get_encoder("mobile_sam"),
        checkpoint=CheckpointSpec(
            "http://127.0.0.1:9/x.pt", "x.pt", len(data), hashlib.sha256(data).hexdigest()
        ),
    )
    cached = checkpoint_dir() / "x.pt"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(data)
    assert resolve_checkpoint(spec) == cached
    assert cached.with_name("x.pt.sha256").is_file()  # verified once, remembered
    explicit = tmp_path / "mine.pt"
    explicit.write_bytes(b"anything")
    assert resolve_checkpoint(spec, explicit) == explicit  # explicit path wins


def test_cached_file_with_wrong_sha256_is_refused() -> None:
    data = b"pretend checkpoint bytes"
    spec = dataclasses.replace(
        get_encoder("mobile_sam"),
        checkpoint=CheckpointSpec("http://127.0.0.1:9/x.pt", "x.pt", len(data), "0" * 64),
    )
    cached = checkpoint_dir() / "x.pt"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(data)
    with pytest.raises(CheckpointError, match=r"sha256 .* but the published one is 0000"):
        resolve_checkpoint(spec)


def test_cached_file_with_wrong_size_is_refused(mobile_file: Path) -> None:
    spec = get_encoder("mobile_sam")
    cached = cached_checkpoint_path(spec)
    cached.parent.mkdir(parents=True)
    cached.write_bytes(mobile_file.read_bytes())  # right keys, not the published bytes
    with pytest.raises(CheckpointError, match="published size is 40,728,226"):
        load_encoder("mobile_sam")


# --------------------------------------------------------------------------- download


def _spec_for(url: str, data: bytes, *, sha256: str | None = None):
    return dataclasses.replace(
        get_encoder("mobile_sam"),
        checkpoint=CheckpointSpec(
            f"{url}/w.pt", "w.pt", len(data), sha256 or hashlib.sha256(data).hexdigest()
        ),
    )


def test_download_verifies_and_writes_atomically(served: tuple[str, Path]) -> None:
    url, root = served
    data = os.urandom(3 * (1 << 20) + 17)
    (root / "w.pt").write_bytes(data)
    path = resolve_checkpoint(_spec_for(url, data), progress=False)
    assert path == checkpoint_dir() / "w.pt" and path.read_bytes() == data
    assert sorted(p.name for p in checkpoint_dir().iterdir()) == ["w.pt", "w.pt.sha256"]


def test_download_with_wrong_sha256_leaves_nothing(served: tuple[str, Path]) -> None:
    url, root = served
    data = b"tampered bytes"
    (root / "w.pt").write_bytes(data)
    with pytest.raises(CheckpointError, match="published one is ffff"):
        resolve_checkpoint(_spec_for(url, data, sha256="f" * 64), progress=False)
    assert list(checkpoint_dir().iterdir()) == []  # no file, no temporary file


def test_download_failure_names_url_and_path(served: tuple[str, Path]) -> None:
    url, _ = served
    spec = _spec_for(url, b"never served")
    with pytest.raises(CheckpointNotFoundError) as info:
        resolve_checkpoint(spec, progress=False)
    message = str(info.value)
    assert "404" in message and spec.checkpoint.url in message
    assert str(checkpoint_dir() / "w.pt") in message
    assert list(checkpoint_dir().iterdir()) == []


def test_download_checkpoint_cleans_up_on_size_mismatch(
    served: tuple[str, Path], tmp_path: Path
) -> None:
    url, root = served
    (root / "w.pt").write_bytes(b"short")
    dest = tmp_path / "out" / "w.pt"
    with pytest.raises(CheckpointError, match="published size"):
        download_checkpoint(CheckpointSpec(f"{url}/w.pt", "w.pt", 99, None), dest, progress=False)
    assert list(dest.parent.iterdir()) == []


# --------------------------------------------------------------------------- verify


def test_verify_reports_and_checks(tmp_path: Path, mobile_file: Path) -> None:
    report = verify_checkpoint(mobile_file)  # not an official file name: read and identify only
    assert report.identified == "mobile_sam" and report.checked_against is None
    assert (
        report.n_tensors > 400
        and report.sha256 == hashlib.sha256(mobile_file.read_bytes()).hexdigest()
    )
    with pytest.raises(CheckpointError, match="published size is 40,728,226"):
        verify_checkpoint(mobile_file, get_encoder("mobile_sam"))
    renamed = tmp_path / "mobile_sam.pt"  # the official name: checked against published figures
    renamed.write_bytes(mobile_file.read_bytes())
    with pytest.raises(CheckpointError, match="published size"):
        verify_checkpoint(renamed)
    with pytest.raises(CheckpointError, match=r"not a 'sam_vit_b' checkpoint.*'mobile_sam'"):
        verify_checkpoint(mobile_file, dataclasses.replace(
            get_encoder("sam_vit_b"), checkpoint=CheckpointSpec("u", "f")
        ))  # fmt: skip


# --------------------------------------------------------------------------- FastSAM files


@pytest.fixture(scope="module")
def fastsam_s_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A file laid out like the official FastSAM-s.pt: a pickled ultralytics model object."""
    from ultralytics.cfg import get_cfg
    from ultralytics.nn.tasks import SegmentationModel, yaml_model_load

    cfg = dict(yaml_model_load("yolov8s-seg.yaml"), nc=1)
    model = SegmentationModel(cfg, nc=1, verbose=False)
    model.args = get_cfg()
    torch.nn.init.normal_(model.model[0].conv.weight)
    path = tmp_path_factory.mktemp("fastsam") / "FastSAM-s-synthetic.pt"
    half = copy.deepcopy(model).half()
    torch.save(
        {"model": half, "ema": None, "train_args": {"imgsz": 1024}, "version": "8.0.0"}, path
    )
    return path, half.state_dict()


@needs_ultralytics
def test_fastsam_file_loads_without_running_its_code(
    fastsam_s_file: tuple[Path, dict], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, expected = fastsam_s_file
    with pytest.raises(CheckpointError, match=r"refused.*ultralytics.*'fastsam_s'"):
        load_state_dict(path)  # plain loading refuses the pickled model object
    monkeypatch.setitem(sys.modules, "ultralytics", None)  # the file's classes are never imported
    state_dict = load_ultralytics_state_dict(path)
    assert state_dict.keys() == expected.keys()
    torch.testing.assert_close(state_dict["model.0.conv.weight"], expected["model.0.conv.weight"])
    assert identify_checkpoint(state_dict) == "fastsam_s"


@needs_ultralytics
def test_fastsam_file_loads_through_load_encoder(fastsam_s_file: tuple[Path, dict]) -> None:
    path, expected = fastsam_s_file
    enc = load_encoder("fastsam_s", checkpoint=path)
    assert not enc.random_weights
    loaded = enc.model.state_dict()
    torch.testing.assert_close(
        loaded["model.0.conv.weight"], expected["model.0.conv.weight"].float()
    )
    assert not any(key.startswith("model.22.") for key in loaded)  # head dropped
    assert enc.channels == get_encoder("fastsam_s").channels
    assert verify_checkpoint(path).identified == "fastsam_s"
    with pytest.raises(CheckpointError, match="load it with encoder 'fastsam_s' or 'fastsam_x'"):
        load_encoder("mobile_sam", checkpoint=path)
