"""What a LoRA is: its settings (rank, alpha, dropout, targets) and its parameter counts."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from rs_sam.errors import ConfigError

#: The parts of a fused ``qkv`` projection, in their row order.
PARTS = ("q", "k", "v")


@dataclass(frozen=True)
class LoraSettings:
    """Where and how large the LoRA updates are.

    Attributes:
        rank: Rank of every update (SamLP: 2).
        alpha: LoRA alpha; the update is scaled by ``alpha / rank``. None means ``rank``
            (scale 1, SamLP's choice).
        dropout: Dropout on the LoRA input (0 = none, SamLP). Active only while
            :func:`set_lora_train_mode` says so (see the package docstring).
        targets: Parts of the image encoder's fused ``qkv`` that get an update, a subset of
            ``("q", "k", "v")`` in any order (SamLP: q and v).
        decoder: Also put LoRA (via peft) on the mask decoder's attention ``q_proj``/``v_proj``.
    """

    rank: int = 2
    alpha: float | None = None
    dropout: float = 0.0
    targets: tuple[str, ...] = ("q", "v")
    decoder: bool = False

    def __post_init__(self) -> None:
        rank = self.rank
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
            raise ConfigError(f"LoRA rank={rank!r} must be a positive integer (SamLP uses 2)")
        alpha = self.alpha
        if alpha is not None and (
            isinstance(alpha, bool)
            or not isinstance(alpha, int | float)
            or not math.isfinite(alpha)
            or alpha <= 0
        ):
            raise ConfigError(
                f"LoRA alpha={alpha!r} must be a positive number, or None to use the rank"
            )
        dropout = self.dropout
        if (
            isinstance(dropout, bool)
            or not isinstance(dropout, int | float)
            or not 0.0 <= dropout < 1.0
        ):
            raise ConfigError(f"LoRA dropout={dropout!r} must be in [0, 1); use 0 for none")
        targets = self.targets
        if isinstance(targets, str) or not isinstance(targets, Iterable):
            raise ConfigError(
                f"LoRA targets={targets!r} must be a list of parts such as ['q', 'v']"
            )
        targets = tuple(targets)
        unknown = [t for t in targets if t not in PARTS]
        if unknown or not targets:
            raise ConfigError(
                f"LoRA targets={list(targets)!r} must be a non-empty subset of "
                f"{list(PARTS)} (SamLP: ['q', 'v'])"
            )
        if len(set(targets)) != len(targets):
            raise ConfigError(f"LoRA targets={list(targets)!r} lists a part twice; list each once")
        if not isinstance(self.decoder, bool):
            raise ConfigError(f"LoRA decoder={self.decoder!r} must be true or false")
        object.__setattr__(self, "targets", tuple(t for t in PARTS if t in targets))
        if alpha is not None:
            object.__setattr__(self, "alpha", float(alpha))
        object.__setattr__(self, "dropout", float(dropout))

    @property
    def scaling(self) -> float:
        """Factor of every update: ``alpha / rank`` (1 when alpha is None)."""
        return 1.0 if self.alpha is None else self.alpha / self.rank

    def to_dict(self) -> dict[str, Any]:
        """Plain values (lists, not tuples) for configs and adapter files."""
        values = dataclasses.asdict(self)
        values["targets"] = list(self.targets)
        return values

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> LoraSettings:
        """Settings from :meth:`to_dict` output or a config section.

        Raises:
            ConfigError: Unknown keys or invalid values.
        """
        if not isinstance(values, Mapping):
            raise ConfigError(f"LoRA settings must be a mapping; got {type(values).__name__}")
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise ConfigError(
                f"unknown LoRA setting(s) {', '.join(map(str, unknown))}; valid: {', '.join(names)}"
            )
        kwargs = dict(values)
        if "targets" in kwargs and isinstance(kwargs["targets"], list):
            kwargs["targets"] = tuple(kwargs["targets"])
        return cls(**kwargs)


@dataclass(frozen=True)
class LoraInfo:
    """Parameter counts of an encoder carrying LoRA.

    Attributes:
        image_encoder: LoRA parameters in the image encoder.
        mask_decoder: LoRA parameters in the mask decoder (peft).
        trainable: Parameters of the whole encoder that require grad now.
        total: All parameters of the encoder (base and LoRA).
        image_layers: Fused ``qkv`` layers carrying LoRA.
        decoder_layers: Mask-decoder Linears carrying LoRA.
    """

    image_encoder: int
    mask_decoder: int
    trainable: int
    total: int
    image_layers: int
    decoder_layers: int

    @property
    def lora(self) -> int:
        """All LoRA parameters."""
        return self.image_encoder + self.mask_decoder

    @property
    def trainable_fraction(self) -> float:
        """``trainable / total``."""
        return self.trainable / self.total if self.total else 0.0

