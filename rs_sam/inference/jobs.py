"""One chip job: a picklable description of the work for one chip, and the function running it.

A :class:`ChipJob` holds the chip's window, what to read (a source such as
:class:`~rs_sam.data.scene.SceneSource` or :class:`~rs_sam.data.pair.PairSource`), the fitted
stretch, the model's :class:`~rs_sam.models.recipe.ModelRecipe` and the pipeline's per-chip
task, and nothing live: no model, no open dataset. :func:`run_chip_job` runs it in any
process; a :class:`ChipJobCache` builds the model and opens the readers once per process (or
per run) and keeps them, keyed by recipe and source.

The tasks are defined by the pipelines (``change``, ``segment``) and called here through the
:class:`ChipTask` protocol, so this layer imports none of them.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from rs_sam.data.grid import ChipWindow
from rs_sam.data.normalize import JointStretch
from rs_sam.models.recipe import ModelRecipe

R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)


class ChipReader(Protocol):
    """An open source: reads one chip (a ``ChipImage`` or ``ChipPair``) of a window."""

    def read_chip(self, window: ChipWindow) -> Any: ...


class SourceSpec(Protocol):
    """What to read, as a small picklable, hashable value that opens its reader anywhere."""

    def open(self) -> ChipReader: ...


class ChipTask(Protocol[R_co]):
    """A pipeline's per-chip work: how to build its model, and how to compute one chip.

    ``model_key`` names what :meth:`build_model` depends on besides the recipe (so that
    tasks of one run share one model); :meth:`compute` is a pure function of its inputs.
    """

    @property
    def model_key(self) -> Hashable: ...

    def build_model(self, recipe: ModelRecipe) -> Any: ...

    def compute(self, model: Any, chip: Any, stretch: JointStretch) -> R_co: ...


@dataclass(frozen=True)
class ChipJob(Generic[R]):
    """The work for one chip; picklable when its source, recipe and task are."""

    window: ChipWindow
    source: SourceSpec
    stretch: JointStretch
    recipe: ModelRecipe
    task: ChipTask[R]


class ChipJobCache:
    """Models and open readers of one process (or one run), built on first use and kept.

    Args:
        max_models: models kept at once (least recently used go first).
        max_readers: open readers kept at once.
    """

    def __init__(self, *, max_models: int = 2, max_readers: int = 8) -> None:
        self._models: OrderedDict[Hashable, Any] = OrderedDict()
        self._readers: OrderedDict[Hashable, ChipReader] = OrderedDict()
        self._max_models = max_models
        self._max_readers = max_readers
        self.builds = 0  # models built so far (for tests and benchmarks)

    def add_reader(self, source: SourceSpec, reader: ChipReader) -> None:
        """Use an already open ``reader`` for ``source`` (the local engine's own scene)."""
        _put(self._readers, _key(source), reader, self._max_readers)

    def reader(self, source: SourceSpec) -> ChipReader:
        key = _key(source)
        if key not in self._readers:
            _put(self._readers, key, source.open(), self._max_readers)
        self._readers.move_to_end(key)
        return self._readers[key]

    def model(self, recipe: ModelRecipe, task: ChipTask[Any]) -> Any:
        key = (recipe, type(task), _key(task.model_key))
        if key not in self._models:
            model = task.build_model(recipe)
            self.builds += 1
            _put(self._models, key, model, self._max_models)
        self._models.move_to_end(key)
        return self._models[key]

    def clear(self) -> None:
        self._models.clear()
        self._readers.clear()


#: The cache of this process, used by :func:`run_chip_job` when none is given (workers).
PROCESS_CACHE = ChipJobCache()


def run_chip_job(job: ChipJob[R], cache: ChipJobCache | None = None) -> R:
    """Read the job's chip, build (or reuse) its model, and compute the chip's result."""
    cache = PROCESS_CACHE if cache is None else cache
    chip = cache.reader(job.source).read_chip(job.window)
    model = cache.model(job.recipe, job.task)
    return job.task.compute(model, chip, job.stretch)


def _key(value: Any) -> Hashable:
    """``value`` itself when hashable, else its identity (a live stand-in in tests)."""
    try:
        hash(value)
    except TypeError:
        return ("id", id(value))
    return value


def _put(store: OrderedDict[Hashable, Any], key: Hashable, value: Any, limit: int) -> None:
    store[key] = value
    store.move_to_end(key)
    while len(store) > limit:
        store.popitem(last=False)
