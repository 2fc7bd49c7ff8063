"""The catalogue of bad inputs at the CLI: one table, one row per case.

Each row is (case id, argv, expected exit code, expected fragment of the one ``Error:``
line). ``{d}`` in the argv is the test's folder, which holds every file of ``FILES`` (made
fresh for each row): rasters good and bad, an existing output, a folder named like an
output, pickles that would run code, a YAML file with a ``!!python`` tag. For every row the
command must exit with the code, print one ``Error:`` line holding the fragment and no
traceback, create nothing in the folder (its whole listing, hidden files included, is
compared) and leave every file there byte-identical (the pickles' code never ran: it would
create ``{d}/pwned``). Adding a case is adding a row; cases being fixed are rows marked
``xfail(strict=True)`` with their issue item, and flip when fixed.
"""

from __future__ import annotations

import hashlib
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch
from _pytest.mark import ParameterSet
from affine import Affine
from click.testing import CliRunner

from rs_sam.cli.main import cli
from tests.helpers.synthetic import ORIGIN, texture, write_raster
from tests.helpers.tiny_models import use_tiny_encoders

DC = "detect-change {d}/a.tif {d}/b.tif -o {d}/new.gpkg --weights random -q"
SEG = "segment {d}/a.tif -o {d}/new.gpkg --weights random -q"
OBJ = "sam-objects {d}/a.tif -o {d}/o.tif --weights random -q"
# the real loaders (no tiny model): the checkpoint is read before any model is built
REAL = "detect-change {d}/a.tif {d}/b.tif -o {d}/new.gpkg -q"


def fixing(item: str, *row: object) -> ParameterSet:
    """A row whose case issue 12 ``item`` is fixing: expected to fail until then."""
    mark = pytest.mark.xfail(strict=True, reason=f"issue 12 item {item}, being fixed")
    return pytest.param(*row, id=str(row[0]), marks=mark)


# (case id, argv, exit code, fragment of the error line)
CASES = [
    # inputs
    ("missing input", "detect-change {d}/missing.tif {d}/b.tif -o {d}/new.gpkg -q", 2,
     "missing.tif does not exist"),
    ("empty file", "detect-change {d}/empty.tif {d}/b.tif -o {d}/new.gpkg -q", 2,
     "empty.tif is not a readable raster"),
    ("text file", "detect-change {d}/text.tif {d}/b.tif -o {d}/new.gpkg -q", 2,
     "text.tif is not a readable raster"),
    ("no CRS", "detect-change {d}/nocrs.tif {d}/b.tif -o {d}/new.gpkg -q", 2, "has no CRS"),
    ("rotated", "detect-change {d}/rot.tif {d}/b.tif -o {d}/new.gpkg -q", 2,
     "rotated or sheared"),
    ("no overlap", "detect-change {d}/a.tif {d}/far.tif -o {d}/new.gpkg -q", 2,
     "do not overlap"),
    ("band counts differ", "detect-change {d}/a.tif {d}/four.tif -o {d}/new.gpkg -q", 2,
     "different band counts"),
    ("only nodata", "detect-change {d}/zero.tif {d}/zero.tif -o {d}/new.gpkg -q", 2,
     "contains only nodata"),
    ("unreachable URL", "detect-change http://127.0.0.1:9/a.tif {d}/b.tif -o {d}/new.gpkg -q",
     2, "http://127.0.0.1:9/a.tif cannot be reached"),
    ("URL scheme", "segment ftp://host/a.tif -o {d}/new.gpkg -q", 2,
     "ftp://host/a.tif: ftp:// URLs are not supported"),
    ("URL as output", "detect-change {d}/a.tif {d}/b.tif -o s3://bucket/new.gpkg -q", 2,
     "s3://bucket/new.gpkg: outputs are written to local files only"),
    ("segment, missing input", "segment {d}/missing.tif -o {d}/new.gpkg -q", 2,
     "missing.tif does not exist"),
    ("segment, text file", "segment {d}/text.tif -o {d}/new.gpkg -q", 2,
     "not a readable raster"),
    ("segment, no CRS", "segment {d}/nocrs.tif -o {d}/new.gpkg -q", 2, "has no CRS"),
    ("sam-objects, missing input", "sam-objects {d}/missing.tif -o {d}/o.tif -q", 2,
     "missing.tif does not exist"),
    # bands
    ("band beyond the raster", f"{DC} --bands 5", 2, "band(s) [5] do not exist"),
    ("two bands", f"{DC} --bands 1,2", 2, "must name 1 or 3 bands"),
    ("band 0", f"{DC} --bands 0", 2, "numbered from 1"),
    ("bands not numbers", f"{DC} --bands x", 2, "is not a list of band numbers"),
    # outputs
    ("output folder missing", "detect-change {d}/a.tif {d}/b.tif -o {d}/nowhere/new.gpkg -q",
     2, "does not exist; create it"),
    ("output suffix", "detect-change {d}/a.tif {d}/b.tif -o {d}/new.txt -q", 2,
     "unsupported suffix '.txt'"),
    ("output exists", "detect-change {d}/a.tif {d}/b.tif -o {d}/out.gpkg -q", 2,
     "exists; pass --overwrite"),
    ("segment, output exists", "segment {d}/a.tif -o {d}/out.gpkg -q", 2,
     "exists; pass --overwrite"),
    ("output is a folder", "detect-change {d}/a.tif {d}/b.tif -o {d}/dir.gpkg -q --overwrite",
     2, "is a directory"),
    ("probability raster exists", f"{DC} --save-probability {{d}}/a.tif", 2,
     "exists; pass --overwrite"),
    ("probability raster suffix", f"{DC} --save-probability {{d}}/p.png", 2, "must end in .tif"),
    ("object map suffix", "sam-objects {d}/a.tif -o {d}/o.png -q", 2, "must end in .tif"),
    ("boundary map suffix", f"{OBJ} --boundary {{d}}/e.png", 2, "must end in .tif"),
    ("two outputs one file", f"{OBJ} --boundary {{d}}/o.tif", 2, "are the same file"),
    ("two outputs one file via ./", f"{OBJ} --boundary {{d}}/./o.tif", 2, "are the same file"),
    # numeric options at their edges
    ("chip size 0", f"{DC} --chip-size 0", 2, "too small; use at least 32"),
    ("chip size negative", f"{DC} --chip-size -64", 2, "too small"),
    ("overlap = chip size", f"{DC} --chip-size 64 --overlap 64", 2, "overlap=64 is too large"),
    ("overlap negative", f"{DC} --overlap -1", 2, "overlap=-1 is invalid"),
    ("points per side 0", f"{DC} --points-per-side 0", 2, "must be positive"),
    ("batch size 0", f"{DC} --batch-size 0", 2, "must be positive"),
    ("pred-iou above 1", f"{DC} --pred-iou-thresh 1.5", 2, "must be between 0 and 1"),
    ("stability below 0", f"{DC} --stability-thresh -0.5", 2, "must be between 0 and 1"),
    ("skip-covered 0", f"{SEG} --skip-covered 0", 2, "skip_covered 0.0 must be in (0, 1]"),
    ("bf16 with HQ-SAM", f"{SEG} --encoder sam_hq_vit_tiny --hq --decoder-precision bfloat16", 2,
     "not available with HQ-SAM decoding"),
    ("box NMS above 1", f"{SEG} --box-nms-thresh 2", 2, "must be between 0 and 1"),
    ("threshold negative", f"{DC} --threshold -1", 2, "must be an angle in (0, 180)"),
    ("threshold above 180", f"{DC} --threshold 181", 2, "must be an angle in (0, 180)"),
    ("min area not understood", f"{DC} --min-area abc", 2, "is not understood"),
    ("min area negative", f"{DC} --min-area=-5m2", 2, "must be positive"),
    ("simplify negative", f"{DC} --simplify -1", 2, "simplify=-1.0 is invalid"),
    ("nodata not a number", f"{DC} --nodata abc", 2, "is not a valid float"),
    # choices and option combinations
    ("unknown encoder", f"{DC} --encoder sam_vit_z", 2, "unknown encoder 'sam_vit_z'"),
    ("encoder without SAM decoder", f"{SEG} --encoder fastsam_s", 2, "has no SAM mask decoder"),
    ("hq without an HQ encoder", f"{SEG} --hq", 2, "--hq needs an HQ-SAM encoder"),
    ("unknown device", f"{DC} --device tpu", 2, "'tpu' is not one of"),
    ("unknown weights", f"{DC} --weights best", 2, "'best' is not one of"),
    ("unknown encoder runtime", f"{DC} --encoder-runtime onnx", 2, "'onnx' is not one of"),
    ("openvino with a ViT", f"{SEG} --encoder sam_vit_b --encoder-runtime openvino", 2,
     "does not run 'sam_vit_b'"),
    ("openvino on a GPU", f"{DC} --device cuda --encoder-runtime openvino", 2,
     "runs on the CPU, not on cuda"),
    ("prompt mode without prompts", f"{SEG} --mode prompt", 2, "--mode prompt needs --prompts"),
    ("classes without model", f"{SEG} --save-classes {{d}}/c.tif", 2, "need --model"),
    ("semantic without model", f"{DC} --semantic", 2, "needs a SAM-CD model"),
    ("latent without semantic", f"{DC} --save-latent {{d}}/l.tif", 2, "needs --semantic"),
    ("weights fetch unknown", "weights fetch sam_vit_z", 2, "unknown encoder 'sam_vit_z'"),
    # model files that would run code, or are not model files
    ("checkpoint runs code", f"{REAL} --checkpoint {{d}}/evil.pth", 2, "rs-sam will not run"),
    ("legacy checkpoint runs code", f"{REAL} --checkpoint {{d}}/legacy.pth", 2,
     "rs-sam will not run"),
    ("checkpoint is text", f"{REAL} --checkpoint {{d}}/text.tif", 2, "not a readable checkpoint"),
    ("model runs code", f"{REAL} --model {{d}}/evil.pth", 2, "rs-sam will not run"),
    ("segment model runs code", "segment {d}/a.tif -o {d}/new.gpkg -q --model {d}/evil.pth", 2,
     "rs-sam will not run"),
    ("lora runs code", f"{REAL} --weights random --lora {{d}}/evil.pth", 2,
     "rs-sam will not run"),
    ("verify runs code", "weights verify {d}/evil.pth", 2, "rs-sam will not run"),
    ("verify legacy runs code", "weights verify {d}/legacy.pth", 2, "rs-sam will not run"),
    ("verify text file", "weights verify {d}/text.tif", 2, "not a readable checkpoint"),
    # found by this catalogue: exit 1 and a traceback (like item 8's missing --model)
    ("verify missing file", "weights verify {d}/missing.pth", 2, "does not exist"),
    ("missing model", f"{REAL} --model {{d}}/missing.pth", 2, "missing.pth"),
    ("missing checkpoint", f"{REAL} --checkpoint {{d}}/missing.pth", 2, "missing.pth"),
    ("missing lora", f"{REAL} --weights random --lora {{d}}/missing.pth", 2, "missing.pth"),
    # training configs
    ("config runs code", "train change --config {d}/evil.yaml", 2, "python"),
    ("config missing", "train segment --config {d}/missing.yaml", 2, "missing.yaml"),
    ("config is not YAML", "train lora --config {d}/text.tif", 2, "text.tif"),
]  # fmt: skip


class _RunsCode:
    """Unpickling this creates ``marker``: proof that a file's code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


def _make_files(d: Path) -> None:
    rgb = (texture(80, 90, seed=1) * 200 + 20).astype(np.uint8)
    write_raster(d / "a.tif", rgb)
    write_raster(d / "b.tif", rgb[:, ::-1].copy())
    (d / "empty.tif").write_bytes(b"")
    (d / "text.tif").write_text("not a raster\n")
    write_raster(d / "nocrs.tif", rgb, crs=None)
    write_raster(d / "rot.tif", rgb, transform=ORIGIN @ Affine.rotation(10))
    write_raster(d / "far.tif", rgb, transform=ORIGIN @ Affine.translation(1e5, 0))
    write_raster(d / "four.tif", np.concatenate([rgb, rgb[:1]]))
    write_raster(d / "zero.tif", np.zeros_like(rgb), nodata=0)
    (d / "out.gpkg").write_bytes(b"precious")
    (d / "dir.gpkg").mkdir()
    torch.save({"model": _RunsCode(d / "pwned")}, d / "evil.pth")
    torch.save(
        {"model": _RunsCode(d / "pwned")}, d / "legacy.pth", _use_new_zipfile_serialization=False
    )
    (d / "evil.yaml").write_text(f"data: !!python/object/apply:pathlib.Path.touch ['{d}/pwned']\n")


def _state(folder: Path) -> dict[str, str]:
    """Every path under ``folder`` (hidden ones too) with its bytes' digest ("" for folders)."""
    return {
        p.relative_to(folder).as_posix(): (
            hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else ""
        )
        for p in folder.rglob("*")
    }


@pytest.mark.parametrize(
    ("case", "argv", "code", "fragment"),
    [row if isinstance(row, ParameterSet) else pytest.param(*row, id=row[0]) for row in CASES],
)
def test_bad_input(
    case: str,
    argv: str,
    code: int,
    fragment: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder = tmp_path / "work"
    folder.mkdir()
    _make_files(folder)
    monkeypatch.setenv("RS_SAM_HOME", str(tmp_path / "home"))  # outside the compared folder
    monkeypatch.setenv("RS_SAM_OFFLINE", "1")
    if not argv.startswith(REAL):
        use_tiny_encoders(monkeypatch.setattr)  # fast; the REAL rows fail before any model
    before = _state(folder)
    result = CliRunner().invoke(cli, shlex.split(argv.format(d=folder)))
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert result.exit_code == code, result.output
    assert len(errors) == 1 and fragment in errors[0], result.output
    assert "Traceback" not in result.output
    assert _state(folder) == before  # nothing new, nothing changed, no code ran
