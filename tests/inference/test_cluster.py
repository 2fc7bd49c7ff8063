"""Chips on a dask.distributed cluster give the local engine's output, even when a worker dies.

The cluster is a real ``LocalCluster`` of two worker processes that build the tiny random
encoders (a worker preload). The local runs use one torch thread, as each worker does:
float rounding then matches bit for bit, so outputs are compared exactly.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio

from rs_sam.change import ChangeSettings, detect
from rs_sam.errors import ConfigError, MissingDependencyError
from rs_sam.inference.cluster import ClusterSpec, require_distributed
from rs_sam.segmentation import anything, prompt_segmentation, sam_objects
from rs_sam.segmentation.settings import SegmentSettings
from tests.helpers.frames import assert_same_frames
from tests.helpers.synthetic import paint_change, texture, write_raster

distributed = pytest.importorskip("distributed", reason="the distributed extra is not installed")

PRELOAD = {"distributed.worker.preload": ["tests.helpers.tiny_worker"]}
SAM = {"weights": "random", "points_per_side": 4, "pred_iou_thresh": 0.0,
       "stability_thresh": 0.0}  # fmt: skip


@pytest.fixture(scope="module")
def cluster() -> Iterator[distributed.LocalCluster]:
    """Two worker processes, one torch thread each, building tiny random encoders."""
    import dask

    with (
        dask.config.set(PRELOAD),
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            env={"OMP_NUM_THREADS": "1"},
        ) as local,
    ):
        yield local


@pytest.fixture(scope="module")
def big_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 256 x 288 pair with painted changes: 20 chips of 64 px."""
    root = tmp_path_factory.mktemp("pair")
    image = (texture(256, 288, seed=3) * 200 + 20).astype(np.uint8)
    changed = paint_change(image, slice(40, 120), slice(60, 200), 250)
    changed = paint_change(changed, slice(150, 230), slice(10, 90), 5)
    return write_raster(root / "a.tif", image), write_raster(root / "b.tif", changed)


def change(a: Path, b: Path, out: Path, **engine) -> gpd.GeoDataFrame:
    settings = ChangeSettings(chip_size=64, overlap=8, threshold=20.0, **SAM, **engine)
    detect.detect_change(a, b, out, settings=settings, show_progress=False)
    return gpd.read_file(out)


def test_change_on_a_cluster_equals_the_local_engine(cluster, one_thread, big_pair, tmp_path):
    a, b = big_pair
    local = change(a, b, tmp_path / "local.gpkg")
    remote = change(a, b, tmp_path / "remote.gpkg", cluster=cluster.scheduler_address)
    assert_same_frames(local, remote)


def test_segment_anything_on_a_cluster_equals_the_local_engine(
    cluster, one_thread, big_pair, tmp_path
):
    image = big_pair[1]
    runs = {}
    for name, engine in (("local", {}), ("remote", {"cluster": cluster.scheduler_address})):
        settings = SegmentSettings(chip_size=64, overlap=16, **SAM, **engine)
        out = tmp_path / f"{name}.gpkg"
        anything.segment_anything(image, out, settings=settings, show_progress=False)
        runs[name] = gpd.read_file(out)
    assert_same_frames(runs["local"], runs["remote"])


def test_segment_prompts_on_a_cluster_equal_the_local_engine(
    cluster, one_thread, big_pair, tmp_path
):
    from shapely.geometry import Point

    image = big_pair[1]
    with rasterio.open(image) as src:
        transform, crs = src.transform, src.crs
    points = [transform * (c, r) for r, c in ((60, 100), (200, 50), (30, 250), (230, 270))]
    prompts = gpd.GeoDataFrame({"label": [1] * 4}, geometry=[Point(p) for p in points], crs=crs)
    prompts.to_file(tmp_path / "prompts.gpkg")
    runs = {}
    for name, engine in (("local", {}), ("remote", {"cluster": cluster.scheduler_address})):
        settings = SegmentSettings(chip_size=64, overlap=16, **SAM, **engine)
        out = tmp_path / f"{name}.gpkg"
        prompt_segmentation.segment_prompts(
            image, tmp_path / "prompts.gpkg", out, settings=settings, context=16,
            multimask="all", show_progress=False,
        )  # fmt: skip
        runs[name] = gpd.read_file(out)
    assert_same_frames(runs["local"], runs["remote"])


@pytest.mark.slow
def test_sam_objects_on_a_cluster_equal_the_local_engine(cluster, one_thread, big_pair, tmp_path):
    maps = {}
    for name, engine in (("local", {}), ("remote", {"cluster": cluster.scheduler_address})):
        settings = SegmentSettings(chip_size=64, overlap=16, **SAM, **engine)
        out = tmp_path / f"{name}.tif"
        sam_objects.sam_objects(big_pair[0], out, settings=settings, show_progress=False)
        with rasterio.open(out) as src:
            maps[name] = src.read(1)
    assert maps["local"].max() > 3
    assert np.array_equal(maps["local"], maps["remote"])


def test_a_worker_killed_mid_run_does_not_change_the_output(
    cluster, one_thread, big_pair, tmp_path
):
    a, b = big_pair
    local = change(a, b, tmp_path / "local.gpkg")
    client = distributed.Client(cluster)
    killed: list[int] = []

    def kill_a_worker(done: int, total: int) -> None:
        if done == 3 and not killed:  # chips of both workers are in flight
            pid = next(iter(client.run(os.getpid).values()))
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    settings = ChangeSettings(
        chip_size=64, overlap=8, threshold=20.0, cluster=cluster.scheduler_address, **SAM
    )
    out = tmp_path / "remote.gpkg"
    try:
        detect.detect_change(
            a, b, out, settings=settings, show_progress=False, on_progress=kill_a_worker
        )
        client.wait_for_workers(2, timeout=60)  # the nanny replaced it
        alive = set(client.run(os.getpid).values())
    finally:
        client.close()
    assert killed and killed[0] not in alive
    assert_same_frames(local, gpd.read_file(out))


@pytest.mark.slow
def test_local_workers_option(one_thread, big_pair, tmp_path) -> None:
    """--workers N starts (and closes) its own local cluster; the preload reaches it."""
    import dask

    a, b = big_pair
    local = change(a, b, tmp_path / "local.gpkg")
    with dask.config.set(PRELOAD):
        remote = change(a, b, tmp_path / "remote.gpkg", workers=2)
    assert_same_frames(local, remote)


def test_cluster_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="exclude each other"):
        ChangeSettings(cluster="tcp://h:1", workers=2)
    with pytest.raises(ConfigError, match="at least 1"):
        SegmentSettings(workers=0)
    assert not ClusterSpec().distributed and ClusterSpec(workers=1).distributed


def test_an_unreachable_scheduler_is_one_line(monkeypatch, pair_paths, tmp_path) -> None:
    from rs_sam.inference import cluster as cluster_module

    monkeypatch.setattr(cluster_module, "CONNECT_TIMEOUT_S", 1)
    a, b = pair_paths
    settings = ChangeSettings(chip_size=96, overlap=16, cluster="tcp://127.0.0.1:1", **SAM)
    with pytest.raises(
        ConfigError, match=r"cannot reach the dask scheduler at tcp://127\.0\.0\.1:1"
    ):
        detect.detect_change(a, b, tmp_path / "c.gpkg", settings=settings, show_progress=False)
    assert not (tmp_path / "c.gpkg").exists()


def test_missing_dask_names_the_extra(monkeypatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(MissingDependencyError, match=r"rs-sam\[distributed\]"):
        require_distributed()


@pytest.mark.slow
def test_semantic_segmentation_on_a_cluster_equals_the_local_engine(
    cluster, one_thread, big_pair, tmp_path
):
    """A trained UNetFormer head (its file names the tiny encoder) on workers."""
    from click.testing import CliRunner

    from rs_sam.cli.main import cli
    from rs_sam.segmentation import semantic
    from tests.helpers.train_configs import segment_config

    config = segment_config(tmp_path)
    trained = CliRunner().invoke(cli, ["train", "segment", "--config", str(config), "-q"])
    assert trained.exit_code == 0, trained.output
    model = tmp_path / "run" / "checkpoints" / "last.ckpt"
    runs = {}
    for name, engine in (("local", {}), ("remote", {"cluster": cluster.scheduler_address})):
        settings = SegmentSettings(chip_size=64, overlap=16, **engine)
        out = tmp_path / f"{name}.gpkg"
        semantic.segment_semantic(big_pair[1], model, out, settings=settings, show_progress=False)
        runs[name] = gpd.read_file(out)
    assert_same_frames(runs["local"], runs["remote"])


def test_a_chip_whose_workers_keep_dying_is_one_line() -> None:
    from distributed import KilledWorker

    from rs_sam.data.grid import ChipWindow
    from rs_sam.errors import ClusterError
    from rs_sam.inference.cluster import _result

    class Lost:
        def result(self):
            raise KilledWorker("run_chip_job-1", "tcp://127.0.0.1:1", 3)

    with pytest.raises(ClusterError, match="row 64, column 128 was lost") as caught:
        _result(Lost(), ChipWindow(64, 128, 64, index=3))
    assert caught.value.exit_code == 1 and "\n" not in str(caught.value)
