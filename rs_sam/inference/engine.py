"""Run chip jobs and hand each result to a sink: here, one after another, or on a cluster.

Computing a chip is independent of every other chip (a pure function of its
:class:`~rs_sam.inference.jobs.ChipJob`); writing results is the sink's job. With a
:class:`~rs_sam.inference.cluster.ClusterSpec` the same jobs run on dask workers (each runs
:func:`~rs_sam.inference.jobs.run_chip_job`) and feed the same sink, in chip order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from tqdm.auto import tqdm

from rs_sam.data.grid import ChipWindow
from rs_sam.data.normalize import JointStretch
from rs_sam.inference.cluster import ClusterSpec, connect, run_on_cluster
from rs_sam.inference.jobs import ChipJob, ChipJobCache, ChipTask, SourceSpec, run_chip_job
from rs_sam.models.recipe import ModelRecipe
from rs_sam.progress import ProgressCallback

R = TypeVar("R")

__all__ = ["ClusterSpec", "ProgressCallback", "chip_jobs", "run_chips"]


def run_chips(
    jobs: Sequence[ChipJob[R]],
    sink: Callable[[ChipWindow, R], None],
    *,
    cache: ChipJobCache | None = None,
    show_progress: bool = True,
    description: str = "chips",
    on_progress: ProgressCallback | None = None,
    cluster: ClusterSpec | None = None,
) -> int:
    """Run every job and pass its window and result to ``sink``, in order; returns the count.

    ``cache`` holds the run's model and readers (default: a fresh one, released after the
    run, so a model is built once per run as before). ``on_progress(done, total)`` is
    called after each chip; raising there stops the run. With a distributed ``cluster``
    the chips are computed on its workers (``cache`` is not used: each worker keeps its own).
    """
    with tqdm(total=len(jobs), desc=description, unit="chip", disable=not show_progress) as bar:

        def chip_done(done: int) -> None:
            bar.update(1)
            if on_progress is not None:
                on_progress(done, len(jobs))

        if cluster is not None and cluster.distributed and jobs:
            with connect(cluster) as client:
                run_on_cluster(client, jobs, sink, on_done=chip_done)
            return len(jobs)
        cache = ChipJobCache() if cache is None else cache
        for done, job in enumerate(jobs, start=1):
            sink(job.window, run_chip_job(job, cache))
            chip_done(done)
    return len(jobs)


def chip_jobs(
    windows: Sequence[ChipWindow],
    source: SourceSpec,
    stretch: JointStretch,
    recipe: ModelRecipe,
    task: ChipTask[R],
) -> list[ChipJob[R]]:
    """One job per window; source, stretch, recipe and task are shared by all."""
    return [ChipJob(window, source, stretch, recipe, task) for window in windows]
