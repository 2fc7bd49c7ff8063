"""Pick the torch device from a user's choice."""

from __future__ import annotations

import torch

from rs_sam.errors import ConfigError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(choice: str) -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then the CPU; explicit choices must exist."""
    if choice not in DEVICE_CHOICES and not choice.startswith("cuda:"):
        raise ConfigError(
            f"device {choice!r} is unknown; choose one of {', '.join(DEVICE_CHOICES)}"
        )
    if choice == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if choice.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"device {choice!r} was asked for but CUDA is not available; use --device cpu"
        )
    if choice == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device 'mps' was asked for but MPS is not available; use --device cpu")
    return torch.device(choice)
