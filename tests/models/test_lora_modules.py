"""The LoRA package's seams: re-exports, the shared layer helpers, the adapter key check."""

from __future__ import annotations

import importlib
import warnings
from pathlib import Path

import pytest
import torch

import rs_sam.models.lora as lora
from rs_sam.errors import CheckpointError, ConfigError
from rs_sam.models.encoders import FrozenEncoder, load_encoder
from rs_sam.models.lora.layers import (
    SAM_PARTS,
    active_lora_state,
    check_prefixes,
    is_lora_key,
    is_tiny_build,
    lora_layers,
    lora_state,
    sam_module,
)
from rs_sam.models.lora.merge import unload_lora
from rs_sam.models.lora.qkv import LoraQKV, qkv_rows

pytestmark = pytest.mark.filterwarnings("ignore::rs_sam.models.encoders.base.RandomWeightsWarning")

#: The module that owns each public name of the package.
OWNERS = {
    "settings": ("LoraSettings", "LoraInfo"),
    "qkv": ("LoraQKV",),
    "inject": (
        "apply_lora",
        "count_lora_parameters",
        "decoder_part_prefixes",
        "decoder_parts",
        "embed_trainable",
        "encode_trainable",
        "lora_settings",
        "set_lora_train_mode",
        "set_trainable",
    ),
    "merge": ("lora_state_dict", "merge_lora"),
    "adapter_file": (
        "ADAPTER_FORMAT",
        "ADAPTER_KEY",
        "load_adapter",
        "read_adapter_metadata",
        "save_adapter",
    ),
    "adapt": ("adapt_encoder",),
}


def build(name: str = "sam_vit_b", seed: int = 0) -> FrozenEncoder:
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_encoder(name, weights="random", tiny=True)


def test_package_re_exports_each_name_from_its_owning_module() -> None:
    owned = {name for names in OWNERS.values() for name in names}
    assert set(lora.__all__) == owned
    for module_name, names in OWNERS.items():
        module = importlib.import_module(f"rs_sam.models.lora.{module_name}")
        for name in names:
            assert getattr(lora, name) is getattr(module, name), name


def test_layer_helpers_follow_the_lora_state() -> None:
    encoder = build()
    assert lora_state(encoder) is None and is_tiny_build(encoder)
    with pytest.raises(ConfigError, match=r"cannot save: .* carries no LoRA"):
        active_lora_state(encoder, "save")
    settings = lora.LoraSettings(rank=3)
    lora.apply_lora(encoder, settings)
    state = active_lora_state(encoder, "save")
    assert state is lora_state(encoder) and state.settings == settings and not state.merged
    sam = sam_module(encoder)
    layers = list(lora_layers(sam))
    assert layers and all(isinstance(layer, LoraQKV) for _, layer, _, _ in layers)
    assert all(getattr(parent, attr) is layer for _, layer, parent, attr in layers)
    keys = [k for k in sam.state_dict() if is_lora_key(k)]
    assert keys and all(k.startswith(SAM_PARTS[0]) for k in keys)
    assert not is_lora_key("image_encoder.blocks.0.attn.qkv.weight")
    assert check_prefixes(sam, "prompt_encoder.") == ("prompt_encoder.",)
    with pytest.raises(ConfigError, match="names no tensor"):
        check_prefixes(sam, ["nowhere."])

    unload_lora(encoder)
    assert lora_state(encoder) is None
    assert not list(lora_layers(sam)) and not any(is_lora_key(k) for k in sam.state_dict())
    assert all(not p.requires_grad for p in encoder.parameters())


def test_sam_module_refuses_other_encoders() -> None:
    with pytest.raises(ConfigError, match="SAM-family encoder"):
        sam_module(object())  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["mobile_sam", "sam_vit_b"])
def test_qkv_rows_split_the_fused_rows_into_three_disjoint_parts(name: str) -> None:
    sam = sam_module(build(name))
    attn = next(m for m in sam.image_encoder.modules() if hasattr(m, "qkv"))
    rows = qkv_rows(attn, attn.qkv)
    assert tuple(rows) == ("q", "k", "v")
    joined = torch.cat(list(rows.values()))
    assert sorted(joined.tolist()) == list(range(attn.qkv.out_features))


def test_reshaped_adapter_tensor_refused_in_the_key_mismatch_wording(tmp_path: Path) -> None:
    encoder = build()
    lora.apply_lora(encoder)
    path = lora.save_adapter(tmp_path / "x.pt", encoder)
    content = torch.load(path, weights_only=True)
    name = sorted(content["state_dict"])[0]
    content["state_dict"][name] = torch.zeros(1, 1)
    torch.save(content, path)
    fresh = build()
    with pytest.raises(CheckpointError) as err:
        lora.load_adapter(path, fresh)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("adapter x.pt does not match the LoRA layers it describes: ")
    assert f"1 shape mismatches ({name} (1, 1) != " in message
    assert "missing keys" not in message and message.endswith("it belongs to another model")
    assert lora.lora_settings(fresh) is None  # the injected LoRA was removed again


def test_unexpected_adapter_tensor_refused_in_the_key_mismatch_wording(tmp_path: Path) -> None:
    encoder = build()
    lora.apply_lora(encoder)
    path = lora.save_adapter(tmp_path / "x.pt", encoder)
    content = torch.load(path, weights_only=True)
    content["state_dict"]["image_encoder.extra.lora_A.q"] = torch.zeros(1)
    torch.save(content, path)
    with pytest.raises(
        CheckpointError,
        match=r"describes: 1 unexpected keys \(image_encoder\.extra\.lora_A\.q\); save it again",
    ):
        lora.load_adapter(path, build())
