"""Inputs from web servers and object storage: COGs read by windows through GDAL.

A local HTTP server with byte ranges (``tests.helpers.range_server``, started and stopped
by a fixture) serves Cloud-Optimized GeoTIFFs written here. A chip reads a small fraction
of the file, change detection and segmentation over HTTP give the local files' polygons,
a source opens its URL in another process, and unreachable or refused URLs are one-line
errors (CLI exit 2) naming the input.
"""

from __future__ import annotations

import multiprocessing
import pickle
import shutil
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from rasterio.windows import Window

from rs_sam.change import ChangeSettings, detect
from rs_sam.cli.main import cli
from rs_sam.data.grid import ChipWindow
from rs_sam.data.normalize import JointStretch
from rs_sam.data.pair import BitemporalPair, PairSource
from rs_sam.data.rasters import open_date, parse_date_input
from rs_sam.data.remote import GDAL_DEFAULTS, gdal_path, remote_env, remote_options
from rs_sam.data.scene import Scene
from rs_sam.errors import RasterNotFoundError, RemoteInputError
from rs_sam.segmentation.anything import segment_anything
from rs_sam.segmentation.settings import SegmentSettings
from tests.helpers.frames import assert_same_frames
from tests.helpers.range_server import ServedFiles, serve_folder
from tests.helpers.stand_ins import blob_scene, blobs
from tests.helpers.synthetic import ORIGIN, UTM33, paint_change, texture

SAM = {"weights": "random", "points_per_side": 4, "pred_iou_thresh": 0.0,
       "stability_thresh": 0.0}  # fmt: skip
PROXIES = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")


def write_cog(path: Path, data: np.ndarray, blocksize: int = 256) -> Path:
    """(bands, H, W) uint8 as a COG: tiled, deflate, internal overviews."""
    count, height, width = data.shape
    profile = {"driver": "COG", "width": width, "height": height, "count": count,
               "dtype": data.dtype.name, "crs": UTM33, "transform": ORIGIN,
               "compress": "deflate", "predictor": 2, "blocksize": blocksize}  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedFiles]:
    """A 2048² RGB COG (``big.tif``), a 128 x 160 pair with painted changes (``a.tif``,
    ``b.tif``: 9 chips of 64 px), a's bands as single-band files (``B1.tif``...) and a
    blob scene (``blobs.tif``), served over HTTP with byte ranges."""
    root = tmp_path_factory.mktemp("served")
    rng = np.random.default_rng(0)
    big = texture(2048, 2048, seed=5) * 180 + rng.uniform(0, 60, (3, 2048, 2048))
    write_cog(root / "big.tif", big.astype(np.uint8))
    image = (texture(128, 160, seed=3) * 200 + 20).astype(np.uint8)
    changed = paint_change(image, slice(20, 60), slice(30, 100), 250)
    changed = paint_change(changed, slice(75, 115), slice(5, 45), 5)
    write_cog(root / "a.tif", image)
    write_cog(root / "b.tif", changed)
    write_cog(root / "blobs.tif", blob_scene())
    for band in range(3):
        write_cog(root / f"B{band + 1}.tif", image[band : band + 1])
    with pytest.MonkeyPatch.context() as patch:
        for name in PROXIES:  # GDAL's curl would send 127.0.0.1 to a proxy
            patch.delenv(name, raising=False)
        with serve_folder(root) as served:
            yield served


def sent(server: ServedFiles, name: str) -> float:
    """The fraction of ``name``'s bytes the server has sent."""
    return server.bytes_sent[name] / (server.root / name).stat().st_size


# --- URLs and paths -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("https://host/dir/a.tif", "/vsicurl/https://host/dir/a.tif"),
        ("http://host:8080/a.tif?sig=x,y", "/vsicurl/http://host:8080/a.tif?sig=x,y"),
        ("s3://bucket/key/a.tif", "/vsis3/bucket/key/a.tif"),
        ("gs://bucket/key/a.tif", "/vsigs/bucket/key/a.tif"),
        ("HTTPS://host/a.tif", "/vsicurl/https://host/a.tif"),
        ("/vsiaz/container/a.tif", "/vsiaz/container/a.tif"),
        ("/vsicurl/https://host/a.tif", "/vsicurl/https://host/a.tif"),
        (Path("https://host/a.tif"), "/vsicurl/https://host/a.tif"),  # Path folds '//'
        (Path("s3://bucket/a.tif"), "/vsis3/bucket/a.tif"),
    ],
)
def test_urls_map_to_gdal_paths(given: object, expected: str) -> None:
    assert gdal_path(given) == expected


def test_an_unsupported_scheme_is_refused_by_name() -> None:
    with pytest.raises(RemoteInputError, match=r"ftp://host/a.tif: ftp:// URLs are not supp"):
        gdal_path("ftp://host/a.tif")


def test_date_inputs_keep_urls_and_split_lists_only_between_paths() -> None:
    assert parse_date_input("https://h/a.tif?sig=1,2") == ["https://h/a.tif?sig=1,2"]
    assert parse_date_input("s3://b/B04.tif, s3://b/B03.tif,/vsigs/b/B02.tif") == [
        "s3://b/B04.tif",
        "s3://b/B03.tif",
        "/vsigs/b/B02.tif",
    ]
    assert parse_date_input("b1.tif,https://h/b2.tif?x=1,2") == [
        Path("b1.tif"),
        "https://h/b2.tif?x=1,2",
    ]
    assert parse_date_input([Path("b1.tif"), "http://x/b2.tif"]) == [
        Path("b1.tif"),
        "http://x/b2.tif",
    ]
    assert parse_date_input("b1.tif,b2.tif") == [Path("b1.tif"), Path("b2.tif")]
    assert parse_date_input(Path("https://h/a.tif")) == ["https://h/a.tif"]  # '//' mended


def test_the_gdal_settings_do_not_override_the_users(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GDAL_HTTP_MAX_RETRY", "7")
    assert "GDAL_HTTP_MAX_RETRY" not in remote_options()
    with rasterio.Env(VSI_CACHE="FALSE"):
        assert "VSI_CACHE" not in remote_options()
        with remote_env():
            assert str(rasterio.env.get_gdal_config("VSI_CACHE")).upper() == "FALSE"
            assert str(rasterio.env.get_gdal_config("GDAL_HTTP_MAX_RETRY")) == "7"
            assert rasterio.env.getenv()["GDAL_DISABLE_READDIR_ON_OPEN"] == "EMPTY_DIR"
    assert set(remote_options()) < set(GDAL_DEFAULTS)


# --- reads by windows ---------------------------------------------------------------------


def test_one_chip_reads_a_small_fraction_of_the_file(server: ServedFiles) -> None:
    server.reset()
    scene = Scene(open_date(f"{server.url}/big.tif"), bands=(1, 2, 3))
    opened = sent(server, "big.tif")
    chip = scene.read_chip(ChipWindow(row_off=768, col_off=1024, size=256, index=0))
    with rasterio.open(server.root / "big.tif") as src:
        expected = src.read(window=Window(1024, 768, 256, 256)).astype(np.float32)
    assert np.array_equal(chip.image, expected) and chip.valid.all()
    one_chip = sent(server, "big.tif")
    # the header and one chip of 1/64 of the raster: a few tiles, not the file
    assert opened < 0.01 and one_chip < 0.05, (opened, one_chip)
    JointStretch.fit_scene(scene)  # the stretch reads an overview (1024² at most)
    assert sent(server, "big.tif") < 0.25, sent(server, "big.tif")
    assert all(method in {"HEAD", "GET"} for method, _, _ in server.requests)
    assert {name for _, name, _ in server.requests} == {"big.tif"}  # no side-car probes


def _read_chip(source: bytes) -> np.ndarray:
    """Unpickle a pair source, open it and read one chip of a (as a dask worker does)."""
    pair = pickle.loads(source).open()
    return pair.read_chip(ChipWindow(row_off=64, col_off=64, size=64, index=0)).image_a


def _pair_source(server: ServedFiles) -> tuple[bytes, np.ndarray]:
    """A pickled pair source over HTTP, and the pixels its chip of a must give."""
    a = open_date(f"{server.url}/a.tif")
    b = open_date(f"{server.url}/b.tif")
    source = BitemporalPair(a, b, bands=(1, 2, 3)).source
    assert isinstance(source, PairSource) and source.a.path.startswith("/vsicurl/http://")
    with rasterio.open(server.root / "a.tif") as src:
        expected = src.read(window=Window(64, 64, 64, 64)).astype(np.float32)
    return pickle.dumps(source), expected


def test_a_pickled_pair_source_reopens_its_urls(server: ServedFiles) -> None:
    source, expected = _pair_source(server)
    assert len(source) < 4000  # headers and paths, no pixels
    assert not rasterio.env.hasenv()  # the source sets up GDAL for remote reads itself
    assert np.array_equal(_read_chip(source), expected)


@pytest.mark.slow
def test_a_pair_source_opens_its_urls_in_another_process(server: ServedFiles) -> None:
    source, expected = _pair_source(server)
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=spawn) as pool:
        image = pool.submit(_read_chip, source).result(timeout=120)
    assert np.array_equal(image, expected)


def test_band_files_at_urls_are_stacked(server: ServedFiles, tmp_path: Path) -> None:
    bands = ",".join(f"{server.url}/B{band}.tif?v=1,2" for band in (3, 1, 2))
    info = open_date(bands, workdir=tmp_path)
    assert info.remote and info.count == 3 and info.label == bands
    chip = Scene(info, bands=(1, 2, 3)).read_chip(ChipWindow(0, 0, 64, 0))
    with rasterio.open(server.root / "a.tif") as src:
        expected = src.read((3, 1, 2), window=Window(0, 0, 64, 64)).astype(np.float32)
    assert np.array_equal(chip.image, expected)


# --- runs over HTTP equal runs on the local files -----------------------------------------


@pytest.mark.filterwarnings("ignore:encoder 'mobile_sam' runs with RANDOM weights")
def test_detect_change_over_http_equals_the_local_files(
    server: ServedFiles, tmp_path: Path, one_thread
) -> None:
    settings = ChangeSettings(chip_size=64, overlap=8, threshold=20.0, **SAM)
    runs = {}
    for name, root in (("local", str(server.root)), ("remote", server.url)):
        out = tmp_path / f"{name}.gpkg"
        detect.detect_change(
            f"{root}/a.tif", f"{root}/b.tif", out, settings=settings, show_progress=False
        )
        runs[name] = gpd.read_file(out)
    assert_same_frames(runs["local"], runs["remote"])
    assert server.bytes_sent["a.tif"] > 0 and server.bytes_sent["b.tif"] > 0


def test_segment_over_http_equals_the_local_file(server: ServedFiles, tmp_path: Path) -> None:
    runs = {}
    for name, root in (("local", str(server.root)), ("remote", server.url)):
        out = tmp_path / f"{name}.gpkg"
        settings = SegmentSettings(chip_size=64, overlap=16)
        segment_anything(
            f"{root}/blobs.tif", out, settings=settings, generator=blobs, show_progress=False
        )
        runs[name] = gpd.read_file(out)
    assert_same_frames(runs["local"], runs["remote"])


# --- one-line errors ----------------------------------------------------------------------


def test_a_missing_url_is_not_found_until_it_is_there(server: ServedFiles) -> None:
    for _ in range(2):  # GDAL's cache of the failure neither hides the status nor sticks
        with pytest.raises(RasterNotFoundError, match=r"/late.tif was not found .*404"):
            open_date(f"{server.url}/late.tif")
    shutil.copy(server.root / "a.tif", server.root / "late.tif")
    assert open_date(f"{server.url}/late.tif").width == 160


def cli_error(*args: object) -> str:
    """Run the CLI; assert exit 2 with one ``Error:`` line and no traceback; return it."""
    result = CliRunner().invoke(cli, [str(a) for a in args])
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert result.exit_code == 2, result.output
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    return errors[0]


@pytest.mark.parametrize(
    ("name", "fragments"),
    [
        ("missing.tif", ("missing.tif was not found on the server", "404", "check the URL")),
        ("forbidden/a.tif", ("forbidden/a.tif: access denied", "403", "GDAL_HTTP_HEADERS")),
    ],
)
def test_a_refused_url_is_one_line_at_the_cli(
    server: ServedFiles, tmp_path: Path, name: str, fragments: tuple[str, ...]
) -> None:
    url = f"{server.url}/{name}"
    line = cli_error("detect-change", url, server.root / "b.tif", "-o", tmp_path / "c.gpkg", "-q")
    assert url in line and all(fragment in line for fragment in fragments), line
    assert list(tmp_path.iterdir()) == []


def test_s3_without_credentials_names_the_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                 "AWS_PROFILE", "AWS_NO_SIGN_REQUEST", "AWS_WEB_IDENTITY_TOKEN_FILE"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no metadata server probe
    line = cli_error("segment", "s3://no-such-bucket/a.tif", "-o", tmp_path / "o.gpkg", "-q")
    assert "s3://no-such-bucket/a.tif" in line and "AWS_NO_SIGN_REQUEST=YES" in line, line


def test_a_url_as_output_is_refused(server: ServedFiles, tmp_path: Path) -> None:
    a = f"{server.url}/a.tif"
    line = cli_error("detect-change", a, a, "-o", "s3://bucket/change.gpkg", "-q")
    assert "s3://bucket/change.gpkg" in line and "local files only" in line, line
