"""``rs-sam batch``: one command on many scenes, with a manifest and resume."""

from rs_sam.batch.runner import FORMATS, BatchResult, run_batch, run_scene
from rs_sam.batch.scenes import BatchScene, SceneOutcome, read_manifest, read_scenes

__all__ = [
    "FORMATS",
    "BatchResult",
    "BatchScene",
    "SceneOutcome",
    "read_manifest",
    "read_scenes",
    "run_batch",
    "run_scene",
]
