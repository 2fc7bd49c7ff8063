"""Make rs-sam's commands build the tiny random encoder configurations (fast tests)."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any

import torch


def use_tiny_encoders(setattr_: Callable[[Any, str, Any], None] = setattr) -> Callable[..., Any]:
    """Patch the one encoder loader (that of :func:`rs_sam.models.recipe.build_encoder`, which
    every pipeline and training task builds its model with); returns the tiny loader.

    ``setattr_`` is ``monkeypatch.setattr`` in tests (undone after the test) or the builtin
    in a child process.
    """
    from rs_sam.models import recipe
    from rs_sam.models.encoders import load_encoder

    @functools.wraps(load_encoder)
    def load_tiny(name: str, **kwargs: Any) -> Any:
        torch.manual_seed(0)  # the same random model in every run
        kwargs["tiny"] = True
        kwargs["weights"] = "random"
        kwargs.pop("checkpoint", None)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return load_encoder(name, **kwargs)

    setattr_(recipe, "load_encoder", load_tiny)
    return load_tiny
