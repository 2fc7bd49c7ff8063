"""Concept segmentation models (SAM 3): text and example-box prompts -> instances."""

from rs_sam.models.concepts.base import Box, ConceptInstance, ConceptQuery, ConceptSegmenter

__all__ = ["Box", "ConceptInstance", "ConceptQuery", "ConceptSegmenter"]
