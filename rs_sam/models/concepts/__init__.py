"""Concept segmentation models (SAM 3): text and example-box prompts -> instances.

* :mod:`~rs_sam.models.concepts.base`: the :class:`ConceptSegmenter` interface.
* :mod:`~rs_sam.models.concepts.registry`: :data:`CONCEPT_MODELS` (licence, gated weights).
* :mod:`~rs_sam.models.concepts.sam3`: SAM 3 (transformers' ``Sam3Model``) on one chip.
* :mod:`~rs_sam.models.concepts.sam3_config`: official and tiny configurations, tokenizers.
* :mod:`~rs_sam.models.concepts.loader`: :func:`load_concept_segmenter`, strict key checks.
"""

from rs_sam.models.concepts.base import Box, ConceptInstance, ConceptQuery, ConceptSegmenter
from rs_sam.models.concepts.loader import load_concept_segmenter
from rs_sam.models.concepts.registry import (
    CONCEPT_MODELS,
    DEFAULT_CONCEPT_MODEL,
    ConceptModelSpec,
    get_concept_model,
)
from rs_sam.models.concepts.sam3 import Sam3ConceptSegmenter

__all__ = [
    "CONCEPT_MODELS",
    "DEFAULT_CONCEPT_MODEL",
    "Box",
    "ConceptInstance",
    "ConceptModelSpec",
    "ConceptQuery",
    "ConceptSegmenter",
    "Sam3ConceptSegmenter",
    "get_concept_model",
    "load_concept_segmenter",
]
