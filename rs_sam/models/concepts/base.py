"""Concept segmentation: every instance of a concept (a text, example boxes) in one chip.

A :class:`ConceptSegmenter` is SAM 3's promptable concept segmentation seen from a chip:
given the chip's pixels and a few :class:`ConceptQuery` (a text such as "building", and/or
positive/negative example boxes in the chip's pixels), it returns, per query, the instances
found, each a full-chip mask with a confidence score. The tiled pipeline
(:mod:`rs_sam.segmentation.concepts`) merges them across chips.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

#: A box in the chip's pixel coordinates: (x0, y0, x1, y1), columns then rows.
Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class ConceptQuery:
    """One concept to find: a text, example boxes, or both.

    Attributes:
        label: What the output's ``prompt`` column says: the text, or ``"exemplar"``.
        text: The concept's noun phrase, None for boxes alone.
        boxes: Example boxes in the chip's pixels (may be empty with a text).
        positive: For each box, True for "like this", False for "not like this".
    """

    label: str
    text: str | None = None
    boxes: tuple[Box, ...] = ()
    positive: tuple[bool, ...] = ()

    def __post_init__(self) -> None:
        if len(self.boxes) != len(self.positive):
            raise ValueError("a concept query needs one positive/negative flag per box")
        if self.text is None and not self.boxes:
            raise ValueError("a concept query needs a text or at least one box")


@dataclass(frozen=True)
class ConceptInstance:
    """One instance found in a chip: its mask at the chip's size and its confidence."""

    mask: np.ndarray  # (S, S) bool
    score: float  # 0..1


class ConceptSegmenter(Protocol):
    """Instances of each query in one chip.

    ``image`` is the stretched chip, ``(3, S, S)`` float32 RGB in 0..255; the result has one
    list per query, in the queries' order. Instances below the segmenter's own detection
    threshold may be left out; the pipeline applies ``--score-thresh`` on top.
    """

    def __call__(
        self, image: np.ndarray, queries: Sequence[ConceptQuery]
    ) -> list[list[ConceptInstance]]: ...
