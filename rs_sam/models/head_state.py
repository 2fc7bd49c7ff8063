"""What the trainable heads share: their weights apart from a frozen encoder, loaded strictly."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from torch import Tensor, nn

from rs_sam.checkpoints import compare_keys
from rs_sam.errors import ConfigError


class HeadState(nn.Module):
    """Mixin for a model with an ``encoder`` that may be frozen (``freeze_encoder``).

    Subclasses name the error raised for a state that does not fit and a hint on how to
    build a model that fits.
    """

    encoder: nn.Module
    freeze_encoder: bool
    state_error: ClassVar[type[Exception]] = ConfigError
    state_hint: ClassVar[str] = "build it with the encoder and options it was trained with"

    def head_state_dict(self) -> dict[str, Tensor]:
        """The weights that training changes: all but a frozen encoder's.

        Keys are those of :meth:`state_dict` (``encoder.*`` only when ``freeze_encoder`` is
        False), so a frozen-encoder checkpoint stays small.
        """
        state = self.state_dict()
        if self.freeze_encoder:
            return {k: v for k, v in state.items() if not k.startswith("encoder.")}
        return dict(state)

    def load_head_state_dict(self, state: Mapping[str, Tensor]) -> None:
        """Load what :meth:`head_state_dict` returned, strictly.

        Raises:
            state_error: missing, unexpected or differently shaped keys (the first few are
                listed, in :class:`~rs_sam.checkpoints.KeyMismatch`'s wording), with
                :attr:`state_hint`.
        """
        mismatch = compare_keys(self.head_state_dict(), state)
        if mismatch:
            raise self.state_error(
                f"head state does not fit this {type(self).__name__} ({mismatch}): "
                f"{self.state_hint}"
            )
        self.load_state_dict(dict(state), strict=False)
        if not self.freeze_encoder:
            self.train(self.training)  # refresh caches derived from encoder weights (TinyViT)

    def count_parameters(self, *, trainable_only: bool = True) -> int:
        """Number of parameters (only those that require grad when ``trainable_only``)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

