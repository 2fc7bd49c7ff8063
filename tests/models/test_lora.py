"""LoRA for SamLP-style fine-tuning: injection, training, adapter files, merging."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rs_sam.errors import (
    CheckpointError,
    CheckpointNotFoundError,
    ConfigError,
    OutputPathError,
)
from rs_sam.models.encoders import FrozenEncoder, load_encoder
from rs_sam.models.lora import (
    ADAPTER_KEY,
    LoraQKV,
    LoraSettings,
    apply_lora,
    count_lora_parameters,
    decoder_part_prefixes,
    decoder_parts,
    embed_trainable,
    encode_trainable,
    load_adapter,
    lora_settings,
    lora_state_dict,
    merge_lora,
    read_adapter_metadata,
    save_adapter,
    set_lora_train_mode,
    set_trainable,
)

pytestmark = pytest.mark.filterwarnings("ignore::rs_sam.models.encoders.base.RandomWeightsWarning")

NAMES = ("mobile_sam", "sam_vit_b")


def build(name: str, seed: int = 0) -> FrozenEncoder:
    """A tiny random encoder; the same seed gives the same base weights."""
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_encoder(name, weights="random", tiny=True)


def images(seed: int = 1) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, 32, 32, generator=generator) * 255


def perturb_lora(encoder: FrozenEncoder, seed: int = 2) -> None:
    """Give every LoRA B a non-zero value, as training would."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in encoder.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.2)


def decode(encoder: FrozenEncoder, embedding: Tensor) -> Tensor:
    """Multimask logits of the mask decoder without prompts."""
    with torch.no_grad():
        sparse, dense = encoder.prompt_encoder(points=None, boxes=None, masks=None)
        masks, _ = encoder.mask_decoder(
            image_embeddings=embedding,
            image_pe=encoder.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=True,
        )
    return masks


def qkv_slices(encoder: FrozenEncoder) -> list[tuple[nn.Module, int, int]]:
    """(attention, in features, q/v output features) of each fused-qkv attention."""
    found = []
    for module in encoder.sam.image_encoder.modules():
        qkv = getattr(module, "qkv", None)
        if isinstance(qkv, nn.Linear):
            slice_ = module.nh_kd if hasattr(module, "nh_kd") else qkv.in_features
            found.append((module, qkv.in_features, slice_))
    return found


def assert_one_line(err: pytest.ExceptionInfo[BaseException]) -> None:
    assert "\n" not in str(err.value)


# ----------------------------------------------------------------------------- settings


def test_settings_defaults_and_normalisation() -> None:
    settings = LoraSettings()
    assert (settings.rank, settings.alpha, settings.dropout) == (2, None, 0.0)
    assert settings.targets == ("q", "v") and settings.decoder is False
    assert settings.scaling == 1.0
    assert LoraSettings(rank=4, alpha=8).scaling == 2.0
    assert LoraSettings(targets=["v", "q"]).targets == ("q", "v")  # type: ignore[arg-type]
    assert LoraSettings.from_dict(settings.to_dict()) == settings
    assert settings.to_dict()["targets"] == ["q", "v"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rank": 0}, "rank=0"),
        ({"rank": True}, "rank=True"),
        ({"rank": 1.5}, "rank=1.5"),
        ({"alpha": -1.0}, "alpha=-1.0"),
        ({"alpha": float("nan")}, "alpha=nan"),
        ({"dropout": 1.0}, "dropout=1.0"),
        ({"dropout": -0.1}, "dropout=-0.1"),
        ({"targets": ()}, "non-empty subset"),
        ({"targets": ("q", "x")}, "subset of"),
        ({"targets": ("q", "q")}, "twice"),
        ({"targets": "qv"}, "list of parts"),
        ({"decoder": "yes"}, "decoder='yes'"),
    ],
)
def test_settings_validation(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as err:
        LoraSettings(**kwargs)
    assert_one_line(err)


def test_settings_from_dict_unknown_key() -> None:
    with pytest.raises(ConfigError, match=r"unknown LoRA setting.*rnak.*valid: rank"):
        LoraSettings.from_dict({"rnak": 4})


# ----------------------------------------------------------------------------- injection


@pytest.mark.parametrize("name", NAMES)
def test_injection_keeps_outputs_and_trains_only_lora(name: str) -> None:
    encoder = build(name)
    x = images()
    before = encoder(x)
    rank = 2
    info = apply_lora(encoder, LoraSettings(rank=rank))
    after = encoder(x)
    for a, b in zip(before.features, after.features, strict=True):
        assert torch.equal(a, b)
    assert torch.equal(before.embedding, after.embedding)

    slices = qkv_slices(encoder)
    assert all(isinstance(attn.qkv, LoraQKV) for attn, _, _ in slices)
    # SamLP count: blocks * 2 (q and v) * rank * (in + out slice); here per block
    expected = sum(2 * rank * (d_in + d_out) for _, d_in, d_out in slices)
    if name == "sam_vit_b":  # uniform blocks: the closed form
        _, d_in, d_out = slices[0]
        assert expected == len(slices) * 2 * rank * (d_in + d_out)
    assert info.image_encoder == expected == info.trainable == info.lora
    assert info.mask_decoder == 0 and info.decoder_layers == 0
    assert info.image_layers == len(slices)
    assert info.total == sum(p.numel() for p in encoder.parameters())
    assert 0 < info.trainable_fraction < 0.05
    trainable = [n for n, p in encoder.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_" in n for n in trainable)
    assert count_lora_parameters(encoder) == info
    assert lora_settings(encoder) == LoraSettings(rank=rank)


@pytest.mark.parametrize("name", NAMES)
def test_updates_hit_only_the_target_rows(name: str) -> None:
    """q/v updates land on the q/v rows of the fused layout (ViT [q|k|v], TinyViT per head)."""
    encoder = build(name)
    apply_lora(encoder, LoraSettings(targets=("q", "v"), rank=3, alpha=6))
    perturb_lora(encoder)
    attn = qkv_slices(encoder)[0][0]
    layer = attn.qkv
    x = torch.randn(5, layer.in_features)
    with torch.no_grad():
        diff = layer(x) - F.linear(x, layer.weight, layer.bias)
    if hasattr(attn, "key_dim"):  # TinyViT: (N, heads, [q k v]) per head
        q, k, v = diff.view(5, attn.num_heads, -1).split([attn.key_dim, attn.key_dim, attn.d], -1)
    else:  # SAM ViT: [q | k | v]
        q, k, v = diff.chunk(3, dim=-1)
    assert q.abs().min() > 0 and v.abs().min() > 0
    assert torch.equal(k, torch.zeros_like(k))
    expected_q = 2.0 * x @ (layer.lora_B["q"] @ layer.lora_A["q"]).T  # scale alpha/rank = 2
    assert torch.allclose(diff[:, layer.rows("q")], expected_q, atol=1e-5)


def test_targets_and_rank_change_the_count() -> None:
    encoder = build("sam_vit_b")
    info = apply_lora(encoder, LoraSettings(rank=4, targets=("q", "k", "v")))
    slices = qkv_slices(encoder)
    assert info.image_encoder == sum(3 * 4 * (d_in + d_out) for _, d_in, d_out in slices)


def test_apply_twice_and_missing_lora_refused() -> None:
    encoder = build("sam_vit_b")
    with pytest.raises(ConfigError, match="carries no LoRA") as err:
        lora_state_dict(encoder)
    assert_one_line(err)
    assert count_lora_parameters(encoder).lora == 0
    apply_lora(encoder)
    with pytest.raises(ConfigError, match="already carries a LoRA") as err:
        apply_lora(encoder)
    assert_one_line(err)


# ----------------------------------------------------------------------------- training


@pytest.mark.parametrize("name", NAMES)
def test_gradient_step_changes_the_output(name: str) -> None:
    encoder = build(name)
    apply_lora(encoder)
    x = images()
    before = encoder.embed(x)
    params = [p for p in encoder.parameters() if p.requires_grad]
    optimiser = torch.optim.SGD(params, lr=0.5)
    loss = embed_trainable(encoder, x).square().mean()
    loss.backward()
    assert all(p.grad is None for p in encoder.parameters() if not p.requires_grad)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in params)
    optimiser.step()
    after = encoder.embed(x)
    assert not torch.allclose(before, after)
    out = encode_trainable(encoder, x)
    assert out.embedding.requires_grad and len(out.features) == 4
    assert [f.shape[1] for f in encoder(x).features] == list(encoder.channels)


def test_train_eval_and_lora_dropout() -> None:
    encoder = build("mobile_sam")  # TinyViT has BatchNorm that must stay in eval
    apply_lora(encoder, LoraSettings(dropout=0.5))
    perturb_lora(encoder)
    x = images()
    encoder.train()
    assert not any(m.training for m in encoder.modules())
    assert torch.equal(embed_trainable(encoder, x), embed_trainable(encoder, x))

    assert set_lora_train_mode(encoder, True) == len(qkv_slices(encoder))
    training = [m for m in encoder.modules() if m.training]
    assert training and all(isinstance(m, nn.Dropout) for m in training)
    assert not torch.equal(embed_trainable(encoder, x), embed_trainable(encoder, x))

    encoder.train()  # FrozenEncoder semantics: everything back in eval, dropout off
    assert not any(m.training for m in encoder.modules())
    assert set_lora_train_mode(encoder, False) == len(qkv_slices(encoder))


# ----------------------------------------------------------------------------- adapter files


@pytest.mark.parametrize(("name", "decoder"), [("mobile_sam", False), ("sam_vit_b", True)])
def test_save_load_reproduces_outputs(tmp_path: Path, name: str, decoder: bool) -> None:
    settings = LoraSettings(rank=2, alpha=4, decoder=decoder)
    trained = build(name)
    info = apply_lora(trained, settings)
    perturb_lora(trained)
    x = images()
    expected = trained(x)
    expected_masks = decode(trained, expected.embedding)

    path = save_adapter(tmp_path / "adapter.pt", trained, metadata={"epochs": 10})
    assert path == tmp_path / "adapter.pt"
    assert [p.name for p in tmp_path.iterdir()] == ["adapter.pt"]  # no temp file left
    size = path.stat().st_size
    assert size < 64_000  # KBs
    assert size < 4 * info.total * 0.05  # far below the base weights' size
    record = read_adapter_metadata(path)
    assert record["base_encoder"] == name and record["tiny"] is True
    assert record["base_weights"] == "random" and record["base_sha256"] is None
    assert record["settings"] == settings.to_dict()
    assert record["created_by"].startswith("rs-sam ") and record["metadata"] == {"epochs": 10}
    saved = torch.load(path, weights_only=True)["state_dict"]
    assert saved.keys() == lora_state_dict(trained).keys()
    assert all(".lora_" in k for k in saved)

    fresh = build(name)  # same base weights, no LoRA
    assert not torch.allclose(fresh.embed(x), expected.embedding)
    assert load_adapter(path, fresh) == settings
    got = fresh(x)
    for a, b in zip(expected.features, got.features, strict=True):
        assert torch.equal(a, b)
    assert torch.equal(decode(fresh, got.embedding), expected_masks)
    assert count_lora_parameters(fresh) == count_lora_parameters(trained)
    if decoder:
        assert count_lora_parameters(fresh).mask_decoder > 0
        assert count_lora_parameters(fresh).decoder_layers == 8
    # loading again into the same encoder (same settings) replaces the weights
    assert load_adapter(path, fresh) == settings


def test_extra_prefixes_and_stage_two(tmp_path: Path) -> None:
    encoder = build("sam_vit_b")
    apply_lora(encoder, LoraSettings(decoder=True))
    info = set_trainable(encoder, image_encoder=False, extra_prefixes=("prompt_encoder.",))
    trainable = [n for n, p in encoder.sam.named_parameters() if p.requires_grad]
    assert trainable and all(
        n.startswith("prompt_encoder.") or (n.startswith("mask_decoder.") and ".lora_" in n)
        for n in trainable
    )
    assert any(n.startswith("prompt_encoder.") for n in trainable)
    assert info.trainable == sum(p.numel() for p in encoder.parameters() if p.requires_grad)
    with pytest.raises(ConfigError, match="names no tensor") as err:
        set_trainable(encoder, extra_prefixes=("prompt_encodr.",))
    assert_one_line(err)

    with torch.no_grad():
        encoder.prompt_encoder.point_embeddings[0].weight.add_(1.0)
    state = lora_state_dict(encoder, extra_prefixes=("prompt_encoder.",))
    assert "prompt_encoder.point_embeddings.0.weight" in state
    path = save_adapter(tmp_path / "stage2.pt", encoder, extra_prefixes=("prompt_encoder.",))
    assert read_adapter_metadata(path)["extra_prefixes"] == ["prompt_encoder."]
    fresh = build("sam_vit_b")
    load_adapter(path, fresh)
    assert torch.equal(
        fresh.prompt_encoder.point_embeddings[0].weight,
        encoder.prompt_encoder.point_embeddings[0].weight,
    )


@pytest.mark.parametrize("name", NAMES)
def test_decoder_parts_train_in_full_and_travel_in_the_adapter(tmp_path: Path, name: str) -> None:
    encoder = build(name)
    assert decoder_parts(encoder) == (
        "transformer",
        "iou_token",
        "mask_tokens",
        "output_upscaling",
        "output_hypernetworks_mlps",
        "iou_prediction_head",
    )
    apply_lora(encoder, LoraSettings(decoder=True))
    parts = ("output_upscaling", "output_hypernetworks_mlps")
    prefixes = decoder_part_prefixes(encoder, parts)
    assert prefixes == ("mask_decoder.output_upscaling.", "mask_decoder.output_hypernetworks_mlps.")
    info = set_trainable(encoder, extra_prefixes=prefixes)
    trainable = {n for n, p in encoder.sam.named_parameters() if p.requires_grad}
    in_parts = {n for n, _ in encoder.sam.named_parameters() if n.startswith(prefixes)}
    assert in_parts and in_parts <= trainable
    assert all(".lora_" in n for n in trainable - in_parts)  # the rest: LoRA only
    assert info.trainable == sum(p.numel() for p in encoder.parameters() if p.requires_grad)

    perturb_lora(encoder)
    with torch.no_grad():  # as training would change them
        for n, param in encoder.sam.named_parameters():
            if n.startswith(prefixes):
                param.add_(0.05 * torch.randn_like(param))
    path = save_adapter(tmp_path / "parts.pt", encoder, extra_prefixes=prefixes)
    assert read_adapter_metadata(path)["extra_prefixes"] == list(prefixes)
    saved = torch.load(path, weights_only=True)["state_dict"]
    assert in_parts <= set(saved)
    assert all(k in in_parts or ".lora_" in k for k in saved)  # nothing else of the base
    embedding = encoder.embed(images())
    expected = decode(encoder, embedding)

    fresh = build(name)
    before = decode(fresh, fresh.embed(images()))
    load_adapter(path, fresh)
    own = fresh.sam.state_dict()
    assert all(torch.equal(own[k], saved[k]) for k in in_parts)
    got = fresh.embed(images())
    assert torch.equal(got, embedding)
    assert torch.equal(decode(fresh, got), expected)
    assert not torch.allclose(before, expected)
    merge_lora(fresh)  # the parts are plain weights: merging keeps them
    assert torch.allclose(decode(fresh, fresh.embed(images())), expected, atol=1e-5)


def test_decoder_parts_validation() -> None:
    encoder = build("sam_vit_b")
    with pytest.raises(ConfigError, match="'output_upscale' is not a part") as err:
        decoder_part_prefixes(encoder, ["output_upscale"])
    assert_one_line(err)
    assert "valid: transformer, iou_token" in str(err.value)
    with pytest.raises(ConfigError, match="twice"):
        decoder_part_prefixes(encoder, ["mask_tokens", "mask_tokens"])
    with pytest.raises(ConfigError, match="list of names"):
        decoder_part_prefixes(encoder, "output_upscaling")
    assert decoder_part_prefixes(encoder, []) == ()


def test_other_encoder_name_refused(tmp_path: Path) -> None:
    encoder = build("mobile_sam")
    apply_lora(encoder)
    path = save_adapter(tmp_path / "x.pt", encoder)
    other = build("sam_vit_b")
    with pytest.raises(CheckpointError) as err:
        load_adapter(path, other)
    assert str(err.value) == (
        "adapter x.pt was trained on 'mobile_sam' (random weights) but the encoder is "
        "'sam_vit_b'; load it with --encoder mobile_sam"
    )
    assert lora_settings(other) is None  # nothing injected


def _rewrite_record(path: Path, **changes: object) -> None:
    content = torch.load(path, weights_only=True)
    content[ADAPTER_KEY].update(changes)
    torch.save(content, path)


def test_other_checkpoint_sha256_refused(tmp_path: Path) -> None:
    encoder = build("sam_vit_b")
    apply_lora(encoder)
    path = save_adapter(tmp_path / "x.pt", encoder)
    official = encoder.spec.checkpoint.sha256
    assert official is not None
    _rewrite_record(path, base_weights="official", base_sha256="ab" * 32)

    fresh = build("sam_vit_b")
    fresh.random_weights = False  # pretend the official checkpoint was loaded
    with pytest.raises(CheckpointError) as err:
        load_adapter(path, fresh)
    message = str(err.value)
    assert message.startswith("adapter x.pt was trained on 'sam_vit_b' (sha256 abababababab…)")
    assert f"sha256 {official[:12]}…" in message and "--checkpoint" in message
    assert_one_line(err)
    assert lora_settings(fresh) is None

    with pytest.raises(CheckpointError, match="official weights but the encoder has random"):
        load_adapter(path, build("sam_vit_b"))

    _rewrite_record(path, base_sha256=official)  # the matching official checkpoint loads
    load_adapter(path, fresh)
    assert lora_settings(fresh) == LoraSettings()

    custom = tmp_path / "finetuned.pth"  # an explicit checkpoint is identified by its sha256
    custom.write_bytes(b"weights")
    with pytest.raises(CheckpointError, match="sha256"):
        load_adapter(path, build_official_like(), base_checkpoint=custom)


def build_official_like() -> FrozenEncoder:
    encoder = build("sam_vit_b")
    encoder.random_weights = False
    return encoder


def test_tiny_mismatch_and_newer_format_refused(tmp_path: Path) -> None:
    encoder = build("sam_vit_b")
    apply_lora(encoder)
    path = save_adapter(tmp_path / "x.pt", encoder)
    _rewrite_record(path, tiny=False)
    with pytest.raises(CheckpointError, match="the full model of 'sam_vit_b'"):
        load_adapter(path, build("sam_vit_b"))
    _rewrite_record(path, tiny=True, format=99)
    with pytest.raises(CheckpointError, match="upgrade rs-sam"):
        load_adapter(path, build("sam_vit_b"))


def test_damaged_and_foreign_files_refused(tmp_path: Path) -> None:
    encoder = build("sam_vit_b")
    apply_lora(encoder)
    path = save_adapter(tmp_path / "good.pt", encoder)
    data = path.read_bytes()
    fresh = build("sam_vit_b")

    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes(data[: len(data) // 2])
    text = tmp_path / "text.pt"
    text.write_text("not a checkpoint\n")
    for bad in (damaged, text):
        with pytest.raises(CheckpointError, match="is not a readable LoRA adapter: it is") as err:
            load_adapter(bad, fresh)
        assert_one_line(err)
        assert "written by rs-sam train lora" in str(err.value)

    plain = tmp_path / "plain.pt"
    torch.save({"weight": torch.zeros(2)}, plain)
    with pytest.raises(CheckpointError, match="is not an rs-sam LoRA adapter"):
        load_adapter(plain, fresh)

    unsafe = tmp_path / "unsafe.pt"
    torch.save({ADAPTER_KEY: LoraSettings(), "state_dict": {}}, unsafe)  # arbitrary object
    with pytest.raises(CheckpointError, match=r"refused: .* contains code \(pickled ") as err:
        load_adapter(unsafe, fresh)
    assert "LoraSettings" in str(err.value) and "weights_only" not in str(err.value)

    with pytest.raises(CheckpointNotFoundError, match="does not exist"):
        load_adapter(tmp_path / "missing.pt", fresh)

    content = torch.load(path, weights_only=True)
    dropped = sorted(content["state_dict"])[0]
    del content["state_dict"][dropped]
    torch.save(content, tmp_path / "partial.pt")
    x = images()
    base = fresh.embed(x)
    with pytest.raises(
        CheckpointError, match=r"does not match the LoRA layers it describes: 1 missing keys \("
    ) as err:
        load_adapter(tmp_path / "partial.pt", fresh)
    assert_one_line(err)
    assert lora_settings(fresh) is None  # the injected LoRA was removed again
    assert not any(isinstance(m, LoraQKV) for m in fresh.modules())
    assert torch.equal(fresh.embed(x), base)
    assert all(not p.requires_grad for p in fresh.parameters())


def test_save_errors(tmp_path: Path) -> None:
    encoder = build("sam_vit_b")
    apply_lora(encoder)
    with pytest.raises(OutputPathError, match="does not exist"):
        save_adapter(tmp_path / "nowhere" / "x.pt", encoder)
    with pytest.raises(ConfigError, match="JSON"):
        save_adapter(tmp_path / "x.pt", encoder, metadata={"bad": object()})
    with pytest.raises(ConfigError, match="differ"):
        save_adapter(tmp_path / "x.pt", encoder, LoraSettings(rank=8))
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- merging


@pytest.mark.parametrize(("name", "decoder"), [("mobile_sam", False), ("sam_vit_b", True)])
def test_merge_matches_unmerged(tmp_path: Path, name: str, decoder: bool) -> None:
    encoder = build(name)
    base_keys = set(encoder.sam.state_dict())
    apply_lora(encoder, LoraSettings(rank=2, alpha=3, decoder=decoder))
    perturb_lora(encoder)
    x = images()
    expected = encoder(x)
    expected_masks = decode(encoder, expected.embedding)

    merged = merge_lora(encoder)
    assert merged == len(qkv_slices(encoder)) + (8 if decoder else 0)
    assert not any(isinstance(m, LoraQKV) for m in encoder.modules())
    assert not any("lora" in n for n, _ in encoder.named_modules())
    assert set(encoder.sam.state_dict()) == base_keys  # official key layout again
    assert all(type(attn.qkv) is nn.Linear for attn, _, _ in qkv_slices(encoder))
    assert all(not p.requires_grad for p in encoder.parameters())
    got = encoder(x)
    for a, b in zip(expected.features, got.features, strict=True):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)
    assert torch.allclose(decode(encoder, got.embedding), expected_masks, atol=1e-4, rtol=1e-4)
    assert count_lora_parameters(encoder).lora == 0
    assert lora_settings(encoder) is not None  # still known, for the record

    with pytest.raises(ConfigError, match="merged") as err:
        save_adapter(tmp_path / "x.pt", encoder)
    assert_one_line(err)
    with pytest.raises(ConfigError, match="was merged with a LoRA"):
        apply_lora(encoder)


class _RunsCode:
    """A pickle payload that runs a shell command when unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_adapter_that_runs_code_says_so_without_suggesting_weights_only_false(
    tmp_path: Path, legacy: bool
) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    content = {ADAPTER_KEY: {"format": 1}, "state_dict": {}, "hook": _RunsCode(marker)}
    torch.save(content, path, _use_new_zipfile_serialization=not legacy)
    for read in (read_adapter_metadata, lambda p: load_adapter(p, build("sam_vit_b"))):
        with pytest.raises(CheckpointError) as err:
            read(path)
        assert_one_line(err)
        text = str(err.value)
        assert text.startswith(f"refused: {path} contains code (pickled os.system)"), text
        assert "rs-sam will not run" in text and "written by rs-sam train lora" in text
        assert "weights_only" not in text and "corrupt" not in text
    assert not marker.exists()
