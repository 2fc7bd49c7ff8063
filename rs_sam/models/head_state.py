"""What the trainable heads share: their weights apart from a frozen encoder, loaded strictly."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

from torch import Tensor, nn

from rs_sam.errors import ConfigError

#: How many offending keys a state-dict mismatch error lists.
_KEYS_SHOWN = 5


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
                listed), with :attr:`state_hint`.
        """
        expected = self.head_state_dict()
        missing = [k for k in expected if k not in state]
        unexpected = [k for k in state if k not in expected]
        reshaped = [
            f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
            for k, v in expected.items()
            if k in state and tuple(state[k].shape) != tuple(v.shape)
        ]
        problems = [
            f"{what} {_first(keys)}"
            for what, keys in (
                ("missing", missing),
                ("unexpected", unexpected),
                ("shape", reshaped),
            )
            if keys
        ]
        if problems:
            raise self.state_error(
                f"head state does not fit this {type(self).__name__} ({'; '.join(problems)}): "
                f"{self.state_hint}"
            )
        self.load_state_dict(dict(state), strict=False)
        if not self.freeze_encoder:
            self.train(self.training)  # refresh caches derived from encoder weights (TinyViT)

    def count_parameters(self, *, trainable_only: bool = True) -> int:
        """Number of parameters (only those that require grad when ``trainable_only``)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)


def _first(keys: Sequence[str]) -> str:
    shown = ", ".join(keys[:_KEYS_SHOWN])
    more = len(keys) - _KEYS_SHOWN
    return f"[{shown}{f', ... {more} more' if more > 0 else ''}]"
