"""ModelRecipe: a hashable, picklable description, and the one encoder builder."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from rs_sam.models import recipe as recipe_module
from rs_sam.models.recipe import ModelRecipe, build_encoder


def test_a_recipe_is_a_value() -> None:
    recipe = ModelRecipe("mobile_sam", checkpoint=Path("base.pt"), lora=Path("a.safetensors"))
    copy = pickle.loads(pickle.dumps(recipe))
    assert copy == recipe and hash(copy) == hash(recipe)
    assert {recipe: 1}[copy] == 1
    assert ModelRecipe("mobile_sam", merge_lora=True) != ModelRecipe("mobile_sam")
    with pytest.raises(AttributeError):
        recipe.encoder = "sam_vit_b"  # type: ignore[misc]


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_build_encoder_loads_what_the_recipe_names(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, dict]] = []
    real = recipe_module.load_encoder

    def spy(name: str, **kwargs):
        calls.append((name, kwargs))
        return real(name, **kwargs)

    monkeypatch.setattr(recipe_module, "load_encoder", spy)
    encoder = build_encoder(ModelRecipe("mobile_sam", weights="random", device="cpu", tiny=True))
    assert encoder.spec.name == "mobile_sam" and encoder.random_weights
    (name, kwargs), = calls
    assert name == "mobile_sam"
    assert kwargs["tiny"] and kwargs["weights"] == "random" and str(kwargs["device"]) == "cpu"
