"""``--lora`` / ``--merge-lora`` on ``segment`` and ``detect-change`` (tiny random SAM)."""

from __future__ import annotations

import warnings
from pathlib import Path

import geopandas as gpd
import pytest
import torch
from click.testing import CliRunner

from rs_sam.cli.main import cli
from rs_sam.models.lora import (
    LoraSettings,
    apply_lora,
    decoder_part_prefixes,
    lora_state_dict,
    save_adapter,
)


def _adapter(path: Path, tiny_encoder, name: str = "mobile_sam") -> Path:
    """A LoRA adapter with non-zero updates for the tiny random ``name`` encoder."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        encoder = tiny_encoder(name, weights="random")
    apply_lora(encoder, LoraSettings(rank=2))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for key, value in encoder.named_parameters():
            if "lora_B" in key:
                value.copy_(torch.randn(value.shape, generator=generator) * 0.5)
    assert any("lora_B" in key for key in lora_state_dict(encoder))
    save_adapter(path, encoder)
    return path


def run(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result.exit_code, result.output


SEGMENT = ("--weights", "random", "--chip-size", "128", "--points-per-side", "4",
           "--pred-iou-thresh", "0", "--stability-thresh", "0", "-q")  # fmt: skip


def segment_three_ways(tmp_path: Path, image: Path, adapter: Path) -> dict[str, gpd.GeoDataFrame]:
    """`rs-sam segment` without the adapter, with it, and with it merged."""
    outputs = {}
    for name, extra in (("plain", ()), ("lora", ("--lora", adapter)),
                        ("merged", ("--lora", adapter, "--merge-lora"))):  # fmt: skip
        out = tmp_path / f"{name}.gpkg"
        code, text = run("segment", image, "-o", out, *SEGMENT, *extra)
        assert code == 0, text
        outputs[name] = gpd.read_file(out)
    return outputs


def test_segment_with_lora_merged_or_not(tmp_path: Path, pair_paths, tiny_encoder) -> None:
    adapter = _adapter(tmp_path / "adapter.pt", tiny_encoder)
    outputs = segment_three_ways(tmp_path, pair_paths[0], adapter)
    assert len(outputs["lora"]) == len(outputs["merged"])
    assert outputs["lora"]["score"].to_numpy() == pytest.approx(
        outputs["merged"]["score"].to_numpy(), abs=1e-4
    )
    differs = len(outputs["plain"]) != len(outputs["lora"]) or not outputs["plain"][
        "score"
    ].to_numpy() == pytest.approx(outputs["lora"]["score"].to_numpy(), abs=1e-4)
    assert differs  # the adapter changes the encoder


def test_segment_loads_the_decoder_parts_of_an_adapter(
    tmp_path: Path, pair_paths, tiny_encoder
) -> None:
    """An adapter whose LoRA is still zero but whose decoder parts trained changes the masks."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        encoder = tiny_encoder("mobile_sam", weights="random")
    apply_lora(encoder, LoraSettings(rank=2))
    prefixes = decoder_part_prefixes(encoder, ["output_upscaling", "output_hypernetworks_mlps"])
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for key, value in encoder.sam.named_parameters():
            if key.startswith(prefixes):
                value.add_(torch.randn(value.shape, generator=generator) * 0.5)
    adapter = save_adapter(tmp_path / "parts.pt", encoder, extra_prefixes=prefixes)
    outputs = segment_three_ways(tmp_path, pair_paths[0], adapter)
    assert outputs["lora"]["score"].to_numpy() == pytest.approx(
        outputs["merged"]["score"].to_numpy(), abs=1e-4
    )
    plain, lora = outputs["plain"]["score"].to_numpy(), outputs["lora"]["score"].to_numpy()
    assert len(plain) != len(lora) or not plain == pytest.approx(lora, abs=1e-4)


def test_adapter_for_another_encoder_is_refused(tmp_path: Path, pair_paths, tiny_encoder) -> None:
    adapter = _adapter(tmp_path / "vit.pt", tiny_encoder, "sam_vit_b")
    code, text = run("segment", pair_paths[0], "-o", tmp_path / "o.gpkg", *SEGMENT,
                     "--lora", adapter)  # fmt: skip
    assert code == 2 and "sam_vit_b" in text and len(text.strip().splitlines()) == 1
    assert not (tmp_path / "o.gpkg").exists()


def test_detect_change_with_lora(tmp_path: Path, pair_paths, tiny_encoder) -> None:
    adapter = _adapter(tmp_path / "adapter.pt", tiny_encoder)
    a, b = pair_paths
    out = tmp_path / "changes.gpkg"
    code, text = run("detect-change", a, b, "-o", out, "--weights", "random",
                     "--chip-size", "128", "--points-per-side", "4", "--lora", adapter,
                     "--merge-lora", "-q")  # fmt: skip
    assert code == 0, text
    assert out.exists()
