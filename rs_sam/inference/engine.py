"""Run a pure per-chip function over a chip sequence and hand each result to a sink.

Computing a chip is independent of every other chip (a pure function of its window and
the model); writing results is the sink's job. A distributed engine can therefore swap
this loop for one that maps chips over workers and feeds the same sink.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from tqdm.auto import tqdm

from rs_sam.data.grid import ChipWindow
from rs_sam.progress import ProgressCallback

R = TypeVar("R")


def run_chips(
    windows: Sequence[ChipWindow],
    compute: Callable[[ChipWindow], R],
    sink: Callable[[ChipWindow, R], None],
    *,
    show_progress: bool = True,
    description: str = "chips",
    on_progress: ProgressCallback | None = None,
) -> int:
    """Compute every chip in order and pass its result to ``sink``; returns the count.

    ``on_progress(done, total)`` is called after each chip; raising there stops the run.
    """
    with tqdm(total=len(windows), desc=description, unit="chip", disable=not show_progress) as bar:
        for done, window in enumerate(windows, start=1):
            sink(window, compute(window))
            bar.update(1)
            if on_progress is not None:
                on_progress(done, len(windows))
    return len(windows)
