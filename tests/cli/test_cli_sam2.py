"""SAM 2.1 (``--encoder sam2_hiera_tiny``, tiny random build) through every zero-shot command."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import rasterio
from click.testing import CliRunner
from shapely.geometry import Point, box

from rs_sam.cli.main import cli
from tests.helpers.synthetic import ORIGIN, UTM33

SAM2 = ["--encoder", "sam2_hiera_tiny", "--weights", "random"]
GRID = ["--points-per-side", "4", "--pred-iou-thresh", "0", "--stability-thresh", "0", "-q"]


def run(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result.exit_code, result.output


def test_detect_change(pair_paths, tmp_path: Path, tiny_encoder) -> None:
    a, b = pair_paths
    out = tmp_path / "change.gpkg"
    code, text = run("detect-change", a, b, "-o", out, "--threshold", "1", *SAM2,
                     "--chip-size", "96", "--overlap", "16", *GRID)  # fmt: skip
    assert code == 0, text
    polygons = gpd.read_file(out)
    assert len(polygons) > 0 and polygons.crs.to_epsg() == 32633


def test_segment_anything(pair_paths, tmp_path: Path, tiny_encoder) -> None:
    out = tmp_path / "objects.gpkg"
    code, text = run("segment", pair_paths[0], "-o", out, *SAM2, "--chip-size", "128",
                     "--min-area", "0", *GRID)  # fmt: skip
    assert code == 0, text
    assert len(gpd.read_file(out)) > 0


def test_segment_prompt(pair_paths, tmp_path: Path, tiny_encoder) -> None:
    x0, y0 = ORIGIN * (50, 40)
    prompts = tmp_path / "prompts.gpkg"
    gpd.GeoDataFrame(
        [
            {"id": 1, "label": 1, "group": None, "geometry": Point(x0, y0)},
            {"id": 2, "label": 1, "group": None, "geometry": box(x0, y0 - 500, x0 + 400, y0)},
        ],
        geometry="geometry",
        crs=UTM33,
    ).to_file(prompts)
    out = tmp_path / "masks.gpkg"
    code, text = run("segment", pair_paths[0], "--mode", "prompt", "--prompts", prompts,
                     "-o", out, *SAM2, "--chip-size", "128", "-q")  # fmt: skip
    assert code == 0, text
    assert sorted(gpd.read_file(out)["prompt_id"].astype(str)) == ["1", "2"]


def test_sam_objects(pair_paths, tmp_path: Path, tiny_encoder) -> None:
    ids = tmp_path / "objects.tif"
    code, text = run("sam-objects", pair_paths[0], "-o", ids, *SAM2, "--chip-size", "128",
                     "--min-area", "0", *GRID)  # fmt: skip
    assert code == 0, text
    with rasterio.open(ids) as src:
        assert src.read(1).max() > 0


def test_hq_with_sam2_is_one_line(pair_paths, tmp_path: Path) -> None:
    code, text = run("segment", pair_paths[0], "-o", tmp_path / "x.gpkg", *SAM2, "--hq", "-q")
    assert code == 2
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1 and "'sam2_hiera_tiny' has SAM 2's decoder" in lines[0], text


def test_weights_list_shows_sam2_with_licence() -> None:
    code, text = run("weights", "list")
    assert code == 0, text
    rows = [line for line in text.splitlines() if line.startswith("sam2_hiera_")]
    assert [row.split()[0] for row in rows] == [
        "sam2_hiera_tiny", "sam2_hiera_small", "sam2_hiera_base_plus", "sam2_hiera_large"
    ]  # fmt: skip
    assert all("sam2.1_hiera_" in row and "Apache-2.0" in row for row in rows)


def test_offline_without_weights_names_the_url(pair_paths, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("RS_SAM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RS_SAM_OFFLINE", "1")
    code, text = run("segment", pair_paths[0], "-o", tmp_path / "x.gpkg",
                     "--encoder", "sam2_hiera_tiny", "-q")  # fmt: skip
    assert code == 1
    assert "sam2.1_hiera_tiny.pt" in text and "dl.fbaipublicfiles.com" in text


def test_weights_verify_identifies_both_layouts(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    meta = tmp_path / "fine_tuned.pt"  # Meta's layout: the Hiera-T stem and 12 blocks
    torch.save(
        {"model": {"image_encoder.trunk.patch_embed.proj.weight": torch.zeros(96, 3, 7, 7),
                   "image_encoder.trunk.blocks.11.norm1.weight": torch.zeros(768)}},
        meta,
    )  # fmt: skip
    hf = tmp_path / "model.safetensors"  # transformers' layout: Hiera-L
    save_file(
        {"vision_encoder.backbone.patch_embed.projection.weight": torch.zeros(144, 3, 7, 7),
         "vision_encoder.backbone.blocks.47.layer_norm1.weight": torch.zeros(1152)},
        str(hf),
    )  # fmt: skip
    for path, name in ((meta, "sam2_hiera_tiny"), (hf, "sam2_hiera_large")):
        code, text = run("weights", "verify", path)
        assert code == 0, text
        assert f"identified: {name}" in text


def test_checkpoint_folder_without_weights_is_one_line(pair_paths, tmp_path: Path) -> None:
    folder = tmp_path / "hf"
    folder.mkdir()
    code, text = run("segment", pair_paths[0], "-o", tmp_path / "x.gpkg", *SAM2[:2],
                     "--checkpoint", folder, "-q")  # fmt: skip
    assert code == 2
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1 and "holds no model.safetensors" in lines[0], text
