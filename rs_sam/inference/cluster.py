"""Chip jobs on a dask.distributed cluster: a running scheduler, or a local one started here.

Each worker runs :func:`~rs_sam.inference.jobs.run_chip_job` with its process's cache (the
model is built once per worker and kept; readers open the inputs on the worker, so the
inputs must be reachable from it). The client keeps a bounded number of chips in flight
per worker and hands results to the run's single sink **in chip order** (a small reorder
window), so the mosaic and the vectors are the local engine's, bit for bit, and client
memory does not grow with the raster. A worker that dies is replaced by its nanny and its
chips recomputed elsewhere (dask's own rescheduling).

dask is an optional dependency (``pip install 'rs-sam[distributed]'``).
"""

from __future__ import annotations

import contextlib
import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from rs_sam.data.grid import ChipWindow
from rs_sam.errors import ClusterError, ConfigError, MissingDependencyError
from rs_sam.inference.jobs import ChipJob, run_chip_job

if TYPE_CHECKING:
    from distributed import Client

R = TypeVar("R")

#: Chips queued or running per worker: enough to hide the client's sink time, few enough
#: that results waiting for the sink stay small.
CHIPS_IN_FLIGHT_PER_WORKER = 2
#: Seconds to wait for the first worker of a cluster.
WORKER_TIMEOUT_S = 120
#: Seconds to wait for a scheduler to answer.
CONNECT_TIMEOUT_S = 30


@dataclass(frozen=True)
class ClusterSpec:
    """Where chips run: ``address`` of a dask scheduler, or ``workers`` local processes.

    Neither: the local engine (this process).
    """

    address: str | None = None
    workers: int | None = None

    def __post_init__(self) -> None:
        if self.address is not None and self.workers is not None:
            raise ConfigError(
                "--cluster and --workers exclude each other: --cluster uses a running "
                "scheduler's workers, --workers starts local ones; give one"
            )
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"--workers {self.workers} must be at least 1")
        if self.address is not None and not self.address.strip():
            raise ConfigError("--cluster is empty; give a scheduler address, tcp://host:8786")

    @property
    def distributed(self) -> bool:
        return self.address is not None or self.workers is not None

    def describe(self) -> str:
        return f"cluster {self.address}" if self.address else f"{self.workers} local workers"


def require_distributed() -> None:
    """Raise the one-line install hint when dask.distributed is missing."""
    try:
        import distributed  # noqa: F401
    except ImportError as err:
        raise MissingDependencyError(
            "--cluster and --workers need dask.distributed; install it with "
            "pip install 'rs-sam[distributed]'"
        ) from err


#: Clients kept open by :func:`session` (several runs on one cluster), by spec.
_SESSIONS: dict[ClusterSpec, Client] = {}


@contextlib.contextmanager
def session(spec: ClusterSpec) -> Iterator[None]:
    """Keep the spec's cluster (and its workers' models) for every run inside the block."""
    if not spec.distributed or spec in _SESSIONS:
        yield
        return
    with connect(spec) as client:
        _SESSIONS[spec] = client
        try:
            yield
        finally:
            del _SESSIONS[spec]


@contextlib.contextmanager
def connect(spec: ClusterSpec) -> Iterator[Client]:
    """A client of the spec's cluster; a local cluster is started here and closed after.

    Inside a :func:`session` of the same spec, its open client.

    Raises:
        MissingDependencyError: dask.distributed is not installed.
        ConfigError: the scheduler cannot be reached, or has no worker in time.
    """
    if spec in _SESSIONS:
        yield _SESSIONS[spec]
        return
    require_distributed()
    from distributed import Client, LocalCluster

    if spec.address is not None:
        try:
            client = Client(spec.address, timeout=CONNECT_TIMEOUT_S)
        except OSError as err:
            raise ConfigError(
                f"cannot reach the dask scheduler at {spec.address} ({err}); start one with "
                "`dask scheduler` and check the address and port"
            ) from err
        with client:
            _wait_for_workers(client, spec)
            yield client
        return
    assert spec.workers is not None
    threads = max(1, (os.cpu_count() or 1) // spec.workers)  # torch threads per worker
    env = {name: str(threads) for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    with (
        LocalCluster(
            n_workers=spec.workers,
            threads_per_worker=1,  # one chip at a time per worker; torch uses `threads`
            processes=True,
            dashboard_address=None,
            env=env,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def _wait_for_workers(client: Client, spec: ClusterSpec) -> None:
    try:
        client.wait_for_workers(1, timeout=WORKER_TIMEOUT_S)
    except TimeoutError as err:
        raise ConfigError(
            f"the dask scheduler at {spec.address} has no worker after {WORKER_TIMEOUT_S} s; "
            "start workers with `dask worker ADDRESS`"
        ) from err


def run_on_cluster(
    client: Client,
    jobs: Sequence[ChipJob[R]],
    sink: Callable[[ChipWindow, R], None],
    *,
    on_done: Callable[[int], None],
    per_worker: int = CHIPS_IN_FLIGHT_PER_WORKER,
) -> None:
    """Compute ``jobs`` on the cluster's workers and pass each result to ``sink`` in order.

    At most ``per_worker`` chips per worker are queued or running at a time; ``on_done``
    gets the count of chips sunk so far. A failure of a chip (its exception, as on the
    local engine) stops the run and cancels what is still queued.
    """
    workers = max(1, len(client.scheduler_info(n_workers=-1).get("workers", {})))
    limit = max(1, per_worker * workers)
    queue = iter(enumerate(jobs))
    pending: deque[tuple[ChipWindow, Any]] = deque()

    def submit_next() -> None:
        item = next(queue, None)
        if item is not None:
            index, job = item
            # Earlier chips first; pure=False: a rerun recomputes rather than reuse.
            future = client.submit(run_chip_job, job, pure=False, priority=-index)
            pending.append((job.window, future))

    try:
        for _ in range(limit):
            submit_next()
        done = 0
        while pending:
            window, future = pending.popleft()
            result = _result(future, window)
            future.release()
            submit_next()  # keep the workers busy while the client sinks this chip
            sink(window, result)
            done += 1
            on_done(done)
    finally:
        if pending:
            client.cancel([future for _, future in pending])


def _result(future: Any, window: ChipWindow) -> Any:
    """The chip's result; a chip whose workers kept dying is one line, not a traceback."""
    from distributed import KilledWorker

    try:
        return future.result()
    except KilledWorker as err:
        raise ClusterError(
            f"the chip at row {window.row_off}, column {window.col_off} was lost with its "
            "dask worker several times (out of memory?); give the workers more memory or use "
            "a smaller --chip-size"
        ) from err
