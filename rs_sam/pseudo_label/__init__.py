"""Training data without labelling: pseudo-labels from proposals, and their review loop.

:func:`pseudo_label` turns proposals (zero-shot change, SAM objects, concepts, or a polygon
file) into a label raster on the image's grid, a review file and a training config;
:func:`labels_from_review` rebuilds the labels from the reviewed file.
"""

from rs_sam.pseudo_label.engine import PseudoLabelResult, labels_from_review, pseudo_label
from rs_sam.pseudo_label.review import ReviewFileError, RunRecord

__all__ = [
    "PseudoLabelResult",
    "ReviewFileError",
    "RunRecord",
    "labels_from_review",
    "pseudo_label",
]
