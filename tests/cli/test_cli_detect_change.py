"""``rs-sam detect-change`` end to end on synthetic GeoTIFFs, and every bad input."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from affine import Affine
from click.testing import CliRunner
from rasterio.crs import CRS
from shapely.geometry import box

from rs_sam.cli.main import cli
from tests.conftest import CHANGE_COLS, CHANGE_ROWS
from tests.helpers.stand_ins import use_transparent_model
from tests.helpers.synthetic import ORIGIN, texture, warp_to, write_raster

FAST = ["--weights", "random", "--chip-size", "96", "--overlap", "16", "--points-per-side", "4",
        "--pred-iou-thresh", "0", "--stability-thresh", "0", "-q"]  # fmt: skip


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result.exit_code, result.output


def listing(folder: Path) -> set[str]:
    """Every file and folder under ``folder``, hidden ones (temporaries) included; the
    cache folder ``home`` that some tests point RS_SAM_HOME at is left out."""
    return {
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.relative_to(folder).parts[0] != "home"
    }


def test_detect_change_writes_polygons_on_a_grid(
    pair_paths: tuple[Path, Path], tmp_path: Path, tiny_encoder
) -> None:
    a, b = pair_paths
    out, prob = tmp_path / "out.gpkg", tmp_path / "score.tif"
    before = listing(tmp_path)
    code, text = run("detect-change", a, b, "-o", out, "--save-probability", prob,
                     "--threshold", "1", *FAST)  # fmt: skip
    assert code == 0, text
    assert listing(tmp_path) == before | {"out.gpkg", "score.tif"}  # no temporaries left
    polygons = gpd.read_file(out)
    assert list(polygons.columns) == ["id", "area_m2", "score_mean", "score_max", "geometry"]
    assert polygons.crs == CRS.from_epsg(32633)
    with rasterio.open(a) as src_a, rasterio.open(prob) as src_p:
        assert src_p.transform == src_a.transform and src_p.shape == src_a.shape
        assert src_p.dtypes[0] == "float32"
        score = src_p.read(1)
    assert np.all((score >= 0) & (score <= 1))
    assert len(polygons) > 0  # random embeddings of two different images differ by > 1 degree
    with rasterio.open(a) as src_a:
        left, bottom, right, top = src_a.bounds
    xmin, ymin, xmax, ymax = polygons.total_bounds
    assert left <= xmin and xmax <= right and bottom <= ymin and ymax <= top
    assert (polygons.score_max >= 1 / 180).all()


def test_b_in_another_crs_is_compared_on_a_grid(
    tmp_path: Path, pair_paths, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_transparent_model(monkeypatch.setattr)  # polygons where the colour changed
    a, b = pair_paths
    b_wgs84 = warp_to(b, tmp_path / "b_4326.tif", CRS.from_epsg(4326))
    out = tmp_path / "out.geojson"
    code, text = run("detect-change", a, b_wgs84, "-o", out, "--threshold", "30", "--weights",
                     "random", "--chip-size", "96", "--overlap", "16", "-q")  # fmt: skip
    assert code == 0, text
    polygons = gpd.read_file(out)
    assert polygons.crs == CRS.from_epsg(32633)
    # b, warped back onto a's grid, differs from a where the change was painted, and only there
    left, top = ORIGIN * (CHANGE_COLS.start, CHANGE_ROWS.start)
    right, bottom = ORIGIN * (CHANGE_COLS.stop, CHANGE_ROWS.stop)
    painted = box(left, bottom, right, top)
    detected = polygons.union_all()
    assert detected.contains(painted.buffer(-130))  # within one 12 px mask block
    assert painted.buffer(130).contains(detected)


def test_uint16_multiband_with_nodata_border(tmp_path: Path, tiny_encoder) -> None:
    data = (texture(120, 140, bands=4, seed=2) * 4000 + 100).astype(np.uint16)
    data[:, :, :30] = 0
    a = write_raster(tmp_path / "a.tif", data, nodata=0)
    later = data.copy()
    later[:, 40:80, 60:100] = 4000
    b = write_raster(tmp_path / "b.tif", later, nodata=0)
    out, prob = tmp_path / "out.parquet", tmp_path / "p.tif"
    code, text = run("detect-change", a, b, "-o", out, "--save-probability", prob,
                     "--bands", "3,2,1", "--threshold", "1", *FAST)  # fmt: skip
    assert code == 0, text
    with rasterio.open(prob) as src:
        score = src.read(1)
        assert (score[:, :30] == src.nodata).all()  # nodata never becomes change
    polygons = gpd.read_parquet(out)
    assert len(polygons) > 0
    assert polygons.total_bounds[0] >= ORIGIN.c + 30 * ORIGIN.a  # none in the nodata border


def test_existing_output_needs_overwrite(pair_paths, tmp_path: Path, tiny_encoder) -> None:
    a, b = pair_paths
    out = tmp_path / "out.gpkg"
    out.write_bytes(b"precious")
    code, text = run("detect-change", a, b, "-o", out, *FAST)
    assert code == 2 and "exists; pass --overwrite" in text
    assert out.read_bytes() == b"precious"
    code, text = run("detect-change", a, b, "-o", out, "--overwrite", *FAST)
    assert code == 0, text
    assert gpd.read_file(out).crs is not None


def _bad_inputs(tmp_path: Path, a: Path, b: Path) -> dict[str, tuple[list, str]]:
    rgb = (texture(60, 60, seed=3) * 255).astype(np.uint8)
    corrupt = tmp_path / "corrupt.tif"
    corrupt.write_bytes(b"II*\x00garbage" * 10)
    nocrs = write_raster(tmp_path / "nocrs.tif", rgb, crs=None)
    rotated = write_raster(tmp_path / "rot.tif", rgb, transform=ORIGIN @ Affine.rotation(10))
    far = write_raster(tmp_path / "far.tif", rgb, transform=ORIGIN @ Affine.translation(1e5, 0))
    four = write_raster(tmp_path / "four.tif", np.concatenate([rgb, rgb[:1]]))
    empty_a = write_raster(tmp_path / "empty_a.tif", np.zeros_like(rgb), nodata=0)
    empty_b = write_raster(tmp_path / "empty_b.tif", np.zeros_like(rgb), nodata=0)
    out = tmp_path / "out.gpkg"
    return {
        "missing file": ([tmp_path / "missing.tif", b, "-o", out], "does not exist"),
        "not a raster": ([corrupt, b, "-o", out], "not a readable raster"),
        "no CRS": ([nocrs, b, "-o", out], "has no CRS"),
        "rotated": ([rotated, b, "-o", out], "rotated or sheared"),
        "no overlap": ([a, far, "-o", out], "do not overlap"),
        "band counts": ([a, four, "-o", out], "different band counts"),
        "all nodata": ([empty_a, empty_b, "-o", out], "only nodata"),
        "missing folder": ([a, b, "-o", tmp_path / "nowhere" / "out.gpkg"], "does not exist"),
        "bad suffix": ([a, b, "-o", tmp_path / "out.txt"], ".gpkg"),
        "unknown encoder": ([a, b, "-o", out, "--encoder", "sam_vit_z"], "sam_vit_z"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing file",
        "not a raster",
        "no CRS",
        "rotated",
        "no overlap",
        "band counts",
        "all nodata",
        "missing folder",
        "bad suffix",
        "unknown encoder",
    ],
)
def test_bad_input_is_one_line_and_leaves_nothing(
    case: str, pair_paths, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = pair_paths
    args, expected = _bad_inputs(tmp_path, a, b)[case]
    monkeypatch.setenv("RS_SAM_HOME", str(tmp_path / "home"))
    before = listing(tmp_path)
    code, text = run("detect-change", *args, "--weights", "random", "-q")
    assert code == 2, text
    lines = [line for line in text.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1 and expected in lines[0], text
    assert "Traceback" not in text
    assert listing(tmp_path) == before


class _RunsCode:
    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)


def _bad_checkpoint(tmp_path: Path, kind: str) -> tuple[list[str], str]:
    import torch

    home = tmp_path / "home"
    if kind == "code inside":
        path = tmp_path / "evil.pth"
        torch.save({"model": _RunsCode(tmp_path / "pwned")}, path)
        return ["--checkpoint", str(path)], "refused"
    if kind == "wrong architecture":
        path = tmp_path / "vit.pth"
        torch.save({"image_encoder.patch_embed.proj.weight": torch.zeros(768, 3, 16, 16)}, path)
        return ["--checkpoint", str(path)], "sam_vit_b"
    # A cached "official" file of the right size whose bytes are not the official ones.
    cached = home / "checkpoints" / "mobile_sam.pt"
    cached.parent.mkdir(parents=True)
    with cached.open("wb") as f:
        f.truncate(40_728_226)
    return [], "sha256"


@pytest.mark.parametrize("kind", ["code inside", "wrong architecture", "wrong sha256"])
def test_bad_checkpoint_is_refused(
    kind: str, pair_paths, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = pair_paths
    monkeypatch.setenv("RS_SAM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RS_SAM_OFFLINE", "1")
    extra, expected = _bad_checkpoint(tmp_path, kind)
    out = tmp_path / "out.gpkg"
    before = listing(tmp_path)
    code, text = run("detect-change", a, b, "-o", out, "--weights", "official", *extra, "-q")
    assert code != 0, text
    lines = [line for line in text.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1 and expected in lines[0], text
    assert not (tmp_path / "pwned").exists()  # the pickle's code never ran
    assert listing(tmp_path) == before


def test_offline_without_weights_names_the_url(pair_paths, tmp_path: Path, monkeypatch) -> None:
    a, b = pair_paths
    monkeypatch.setenv("RS_SAM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RS_SAM_OFFLINE", "1")
    before = listing(tmp_path)
    code, text = run("detect-change", a, b, "-o", tmp_path / "out.gpkg", "-q")
    assert code == 1
    assert "mobile_sam.pt" in text and "https://" in text and str(tmp_path / "home") in text
    assert listing(tmp_path) == before
