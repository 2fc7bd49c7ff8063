"""Issue 12, bad inputs at the CLI: unreadable pixels, thin and tiny rasters, missing model
files, remote inputs, negative areas and oversized chips.

Every refusal is exit 2 with one ``Error:`` line, no traceback, and no new file in the
folder (its whole listing is compared before and after).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner, Result

from rs_sam.change import detect
from rs_sam.cli.main import cli
from rs_sam.inference import chip_size
from tests.helpers.damaged_rasters import cut_in_half, vrt_of
from tests.helpers.synthetic import texture, write_raster

SAM = ["--weights", "random", "--points-per-side", "4", "--pred-iou-thresh", "0",
       "--stability-thresh", "0", "-q"]  # fmt: skip
FAST = [*SAM, "--chip-size", "96", "--overlap", "16"]


def invoke(*args: object) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def refused(args: list[object], folder: Path, fragments: tuple[str, ...]) -> str:
    """Run ``args``; assert exit 2, one error line holding ``fragments``, nothing written."""
    before = listing(folder)
    result = invoke(*args)
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert result.exit_code == 2, result.output
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    assert listing(folder) == before
    return errors[0]


def _rgb(height: int, width: int, seed: int = 0) -> np.ndarray:
    return (texture(height, width, seed=seed) * 200 + 20).astype(np.uint8)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """A good pair, a truncated GeoTIFF and a VRT whose source file was deleted."""
    good = write_raster(tmp_path / "good.tif", _rgb(300, 300))
    later = write_raster(tmp_path / "later.tif", _rgb(300, 300, seed=1))
    gone = write_raster(tmp_path / "gone.tif", _rgb(300, 300, seed=2))
    vrt = vrt_of(gone, tmp_path / "mosaic.vrt")
    gone.unlink()
    return {"good": good, "later": later, "cut": cut_in_half(tmp_path / "cut.tif"), "vrt": vrt}


# --- item 2: pixels that cannot be read -----------------------------------------------

UNREADABLE: dict[str, Callable[[dict[str, Path], Path], list[object]]] = {
    "detect-change, truncated a": lambda f, o: ["detect-change", f["cut"], f["later"],
                                                "-o", o / "out.gpkg"],
    "detect-change, truncated b": lambda f, o: ["detect-change", f["good"], f["cut"],
                                                "-o", o / "out.gpkg"],
    "segment, truncated": lambda f, o: ["segment", f["cut"], "-o", o / "out.gpkg"],
    "sam-objects, truncated": lambda f, o: ["sam-objects", f["cut"], "-o", o / "objects.tif"],
    "detect-change, VRT source gone": lambda f, o: ["detect-change", f["vrt"], f["later"],
                                                    "-o", o / "out.gpkg"],
    "segment, VRT source gone": lambda f, o: ["segment", f["vrt"], "-o", o / "out.gpkg"],
    "sam-objects, VRT source gone": lambda f, o: ["sam-objects", f["vrt"],
                                                  "-o", o / "objects.tif"],
}  # fmt: skip


@pytest.mark.parametrize("case", list(UNREADABLE))
def test_unreadable_pixels_name_the_file_and_window(
    case: str, files: dict[str, Path], tmp_path: Path, tiny_encoder
) -> None:
    bad = files["vrt" if "VRT" in case else "cut"]
    where = f"{bad} in rows 0-299, columns 0-299"
    line = refused([*UNREADABLE[case](files, tmp_path), *FAST], tmp_path,
                   ("cannot read the pixels of", where))  # fmt: skip
    assert str(files["good"]) not in line and str(files["later"]) not in line


# --- item 7: thin and tiny rasters ----------------------------------------------------


@pytest.mark.parametrize("shape", [(1, 3000), (7, 5)])
@pytest.mark.slow
def test_thin_and_tiny_pairs_are_compared(shape, tmp_path: Path, tiny_encoder) -> None:
    a = write_raster(tmp_path / "a.tif", _rgb(*shape))
    b = write_raster(tmp_path / "b.tif", _rgb(*shape, seed=1))
    prob = tmp_path / "p.tif"
    result = invoke("detect-change", a, b, "-o", tmp_path / "out.gpkg",
                    "--save-probability", prob, *FAST)  # fmt: skip
    assert result.exit_code == 0, result.output
    with rasterio.open(prob) as src:
        score = src.read(1)
        assert score.shape == shape and (score != src.nodata).all()  # every pixel was compared


@pytest.mark.parametrize("shape", [(1, 3000), (7, 5)])
@pytest.mark.slow
def test_thin_and_tiny_rasters_are_segmented(shape, tmp_path: Path, tiny_encoder) -> None:
    image = write_raster(tmp_path / "a.tif", _rgb(*shape))
    result = invoke("segment", image, "-o", tmp_path / "out.gpkg", *FAST)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out.gpkg").is_file()


# --- item 8: a missing file the user named is bad input ----------------------------------

MISSING: dict[str, Callable[[dict[str, Path], Path], list[object]]] = {
    "segment --model": lambda f, o: ["segment", f["good"], "-o", o / "out.gpkg",
                                     "--model", o / "missing.ckpt", *FAST],
    "detect-change --model": lambda f, o: ["detect-change", f["good"], f["later"],
                                           "-o", o / "out.gpkg", "--model", o / "missing.ckpt",
                                           *FAST],
    "segment --lora": lambda f, o: ["segment", f["good"], "-o", o / "out.gpkg",
                                    "--lora", o / "missing.pt", *FAST],
    "sam-objects --lora": lambda f, o: ["sam-objects", f["good"], "-o", o / "objects.tif",
                                        "--lora", o / "missing.pt", *FAST],
    "evaluate change --model": lambda f, o: ["evaluate", "change", "--model", o / "missing.ckpt",
                                             "--data", o, "-q"],
    "evaluate segment --model": lambda f, o: ["evaluate", "segment",
                                              "--model", o / "missing.ckpt", "--data", o, "-q"],
}  # fmt: skip


@pytest.mark.parametrize("case", list(MISSING))
def test_a_missing_model_file_is_bad_input(
    case: str, files: dict[str, Path], tmp_path: Path, tiny_encoder
) -> None:
    refused(MISSING[case](files, tmp_path), tmp_path, ("missing.", "does not exist"))


def test_a_missing_official_checkpoint_offline_stays_exit_1(
    files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RS_SAM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RS_SAM_OFFLINE", "1")
    result = invoke("detect-change", files["good"], files["later"], "-o", tmp_path / "out.gpkg",
                    "--weights", "official", "--chip-size", "96", "-q")  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "is not cached" in result.output and "RS_SAM_OFFLINE" in result.output


# --- item 10: remote inputs, negative areas ---------------------------------------------

URL = "http://127.0.0.1:9/scene.tif"  # nothing listens on the discard port
REMOTE: dict[str, Callable[[dict[str, Path], Path], list[object]]] = {
    "segment --model": lambda f, o: ["segment", f["good"], "-o", o / "out.gpkg",
                                     "--model", "https://example.com/m.ckpt"],
    "segment --prompts": lambda f, o: ["segment", f["good"], "-o", o / "out.gpkg",
                                       "--mode", "prompt", "--prompts", "http://x/p.geojson"],
}  # fmt: skip


UNREACHABLE: dict[str, Callable[[dict[str, Path], Path], list[object]]] = {
    "detect-change a": lambda f, o: ["detect-change", URL, f["later"], "-o", o / "out.gpkg"],
    "detect-change b": lambda f, o: ["detect-change", f["good"], URL, "-o", o / "out.gpkg"],
    "segment": lambda f, o: ["segment", URL, "-o", o / "out.gpkg"],
    "sam-objects": lambda f, o: ["sam-objects", URL, "-o", o / "objects.tif"],
}  # fmt: skip


@pytest.mark.parametrize("case", list(UNREACHABLE))
def test_an_unreachable_raster_url_is_named(
    case: str, files: dict[str, Path], tmp_path: Path, tiny_encoder
) -> None:
    refused([*UNREACHABLE[case](files, tmp_path), *FAST], tmp_path,
            (f"{URL} cannot be reached", "check the URL"))  # fmt: skip


@pytest.mark.parametrize("case", list(REMOTE))
def test_a_remote_model_or_prompt_file_is_not_supported_yet(
    case: str, files: dict[str, Path], tmp_path: Path, tiny_encoder
) -> None:
    line = refused([*REMOTE[case](files, tmp_path), *FAST], tmp_path,
                   ("remote inputs are not supported yet (download the file first",))  # fmt: skip
    assert "://" in line  # the URL as given, not a mangled local path


@pytest.mark.parametrize("command", ["segment", "detect-change"])
def test_a_negative_min_area_must_be_positive(
    command: str, files: dict[str, Path], tmp_path: Path, tiny_encoder
) -> None:
    inputs = [files["good"]] if command == "segment" else [files["good"], files["later"]]
    line = refused([command, *inputs, "-o", tmp_path / "out.gpkg", "--min-area=-5m2", *FAST],
                   tmp_path, ("min_area '-5m2' must be positive",))  # fmt: skip
    assert "not understood" not in line


# --- item 4: the chip size ---------------------------------------------------------------


@pytest.mark.parametrize("command", ["segment", "detect-change", "sam-objects"])
def test_a_chip_beyond_the_machine_memory_is_refused(
    command: str, tmp_path: Path, tiny_encoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(chip_size, "machine_memory_bytes", lambda: 2**30)
    strip = write_raster(tmp_path / "strip.tif", _rgb(1, 4096))  # needs a 4096-pixel chip
    inputs = [strip, strip] if command == "detect-change" else [strip]
    out = tmp_path / ("objects.tif" if command == "sam-objects" else "out.gpkg")
    refused([command, *inputs, "-o", out, *SAM, "--chip-size", "4096"], tmp_path,
            ("chip size 4096 needs about 1.5 GiB", "1.0 GiB", "at most 3328"))  # fmt: skip


def test_a_chip_larger_than_the_raster_is_capped(
    files: dict[str, Path], tmp_path: Path, tiny_encoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes: list[int] = []

    def stop(grid, size, overlap):
        sizes.append(size)
        raise KeyboardInterrupt  # nothing more to see: stop before any chip is computed

    monkeypatch.setattr(detect, "chip_windows", stop)
    invoke("detect-change", files["good"], files["later"], "-o", tmp_path / "out.gpkg",
           *SAM, "--chip-size", "100000")  # fmt: skip
    assert sizes == [1024]  # mobile_sam's input: the 300 x 300 raster in one chip
