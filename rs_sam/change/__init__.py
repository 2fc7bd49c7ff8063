"""Change detection: zero-shot (AnyChange latent matching)."""

from rs_sam.change.detect import ChangeResult, detect_change
from rs_sam.change.settings import ChangeSettings

__all__ = ["ChangeResult", "ChangeSettings", "detect_change"]
