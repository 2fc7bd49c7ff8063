"""Chip jobs: picklable, the model built once per process, the local engine = run_chip_job."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from rs_sam.change.chip_tasks import ZeroShotChangeTask
from rs_sam.data.grid import chip_windows
from rs_sam.data.normalize import JointStretch
from rs_sam.data.pair import BitemporalPair
from rs_sam.data.rasters import open_date
from rs_sam.data.scene import Scene
from rs_sam.inference.engine import chip_jobs, run_chips
from rs_sam.inference.jobs import PROCESS_CACHE, ChipJob, ChipJobCache, run_chip_job
from rs_sam.models import recipe as recipe_module
from rs_sam.models.mask_proposals import ProposalSettings
from rs_sam.models.recipe import ModelRecipe
from rs_sam.segmentation.chip_tasks import SamObjectsTask
from tests.helpers.stand_ins import blob_scene, blobs
from tests.helpers.synthetic import write_raster

TINY = ModelRecipe("mobile_sam", weights="random", device="cpu", tiny=True)
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # random weights, said loudly


def _change_jobs(pair_paths: tuple[Path, Path]) -> list[ChipJob]:
    a, b = pair_paths
    pair = BitemporalPair(open_date(a), open_date(b), bands=(1, 2, 3))
    task = ZeroShotChangeTask(
        ProposalSettings(points_per_side=4, pred_iou_thresh=0.0, stability_thresh=0.0)
    )
    windows = chip_windows(pair.grid, 96, 16)
    return chip_jobs(windows, pair.source, JointStretch.fit(pair), TINY, task)


def _object_jobs(tmp_path: Path) -> list[ChipJob]:
    scene = Scene(open_date(write_raster(tmp_path / "img.tif", blob_scene())), bands=(1, 2, 3))
    task = SamObjectsTask(scene.grid, ProposalSettings(), generator=blobs)
    windows = chip_windows(scene.grid, 64, 16)
    return chip_jobs(windows, scene.source, JointStretch.fit_scene(scene), TINY, task)


def _objects(result: list) -> list[tuple]:
    return [
        (o.mask.row, o.mask.col, o.mask.array().tobytes(), o.score, o.stability, o.pixels, o.cut)
        for o in result
    ]


def test_a_change_job_survives_pickling_and_gives_the_same_chip(pair_paths) -> None:
    job = _change_jobs(pair_paths)[4]  # the chip over the painted change
    torch.manual_seed(0)
    here = run_chip_job(job, ChipJobCache())
    copy = pickle.loads(pickle.dumps(job))
    assert copy == job and hash(copy.recipe) == hash(job.recipe)
    torch.manual_seed(0)  # the same random encoder in the "other process"
    there = run_chip_job(copy, ChipJobCache())
    assert here.proposals > 0 and here.valid.any()
    np.testing.assert_array_equal(here.probability, there.probability)
    np.testing.assert_array_equal(here.valid, there.valid)


def test_an_objects_job_survives_pickling(tmp_path: Path) -> None:
    jobs = _object_jobs(tmp_path)
    for job in jobs:
        copy = pickle.loads(pickle.dumps(job))
        assert _objects(run_chip_job(copy, ChipJobCache())) == _objects(
            run_chip_job(job, ChipJobCache())
        )
    assert any(run_chip_job(job, ChipJobCache()) for job in jobs)


def test_the_model_is_built_once_per_process(
    pair_paths, tiny_encoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[str] = []

    def counting(name: str, **kwargs):
        built.append(name)
        return tiny_encoder(name, **kwargs)

    monkeypatch.setattr(recipe_module, "load_encoder", counting)
    jobs = _change_jobs(pair_paths)
    PROCESS_CACHE.clear()
    try:
        for job in jobs:
            run_chip_job(job)
        for job in jobs:  # as a worker receives them: equal copies share the model
            run_chip_job(pickle.loads(pickle.dumps(job)))
        assert built == ["mobile_sam"]
        other = ChipJob(jobs[0].window, jobs[0].source, jobs[0].stretch,
                        ModelRecipe("sam_vit_b", weights="random", device="cpu", tiny=True),
                        jobs[0].task)  # fmt: skip
        run_chip_job(other)
        assert built == ["mobile_sam", "sam_vit_b"]
        source = jobs[0].source
        assert PROCESS_CACHE.reader(source) is PROCESS_CACHE.reader(
            pickle.loads(pickle.dumps(source))
        )
    finally:
        PROCESS_CACHE.clear()


def test_a_run_builds_its_model_once(pair_paths, tiny_encoder, monkeypatch) -> None:
    built: list[str] = []

    def counting(name: str, **kwargs):
        built.append(name)
        return tiny_encoder(name, **kwargs)

    monkeypatch.setattr(recipe_module, "load_encoder", counting)
    jobs = _change_jobs(pair_paths)
    cache = ChipJobCache()
    assert run_chips(jobs, lambda *_: None, cache=cache, show_progress=False) == len(jobs) > 1
    assert built == ["mobile_sam"] and cache.builds == 1


def test_the_local_engine_gives_the_sequence_of_run_chip_job(tmp_path: Path) -> None:
    jobs = _object_jobs(tmp_path)
    done: list[tuple[int, int]] = []
    found: list[tuple] = []
    run_chips(
        jobs,
        lambda window, result: found.append((window, _objects(result))),
        show_progress=False,
        on_progress=lambda n, total: done.append((n, total)),
    )
    expected = [(job.window, _objects(run_chip_job(job, ChipJobCache()))) for job in jobs]
    assert found == expected and any(objects for _, objects in found)
    assert done == [(n, len(jobs)) for n in range(1, len(jobs) + 1)]
