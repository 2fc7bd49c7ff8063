"""Concept-capable models (text and example-box prompts): name, licence, where the files are.

Their weights are Hugging Face model repositories (a folder: ``config.json``,
``model.safetensors``, tokenizer files), cached under
``$RS_SAM_HOME/checkpoints/<name>/``; a gated repository needs the user's Hugging Face token
(:mod:`rs_sam.checkpoints.hub`).
"""

from __future__ import annotations

from dataclasses import dataclass

from rs_sam.errors import UnknownEncoderError


@dataclass(frozen=True)
class ConceptModelSpec:
    """A concept segmentation model and its official weights.

    Attributes:
        name: rs-sam name (``--encoder``, ``rs-sam weights fetch NAME``).
        description: One line for listings.
        licence: The weights' licence.
        hf_repo: Hugging Face model repository of the weights.
        gated: Whether the repository needs an accepted access request and a token.
        files: The repository's files rs-sam downloads (weights, config, tokenizer).
        access_url: Where to request access (the repository's page).
    """

    name: str
    description: str
    licence: str
    hf_repo: str
    gated: bool
    files: tuple[str, ...]
    access_url: str

    @property
    def weights_file(self) -> str:
        """The weights file among :attr:`files`."""
        return "model.safetensors"


CONCEPT_MODELS: dict[str, ConceptModelSpec] = {
    "sam3": ConceptModelSpec(
        name="sam3",
        description="SAM 3 (Meta, 2025): every instance of a text or example-box concept",
        licence="SAM License (Meta)",
        hf_repo="facebook/sam3",
        gated=True,
        files=(
            "config.json",
            "model.safetensors",
            "processor_config.json",
            "tokenizer.json",
            "tokenizer_config.json",
            "special_tokens_map.json",
            "vocab.json",
            "merges.txt",
        ),
        access_url="https://huggingface.co/facebook/sam3",
    ),
}

DEFAULT_CONCEPT_MODEL = "sam3"


def get_concept_model(name: str) -> ConceptModelSpec:
    """The spec of a concept model.

    Raises:
        UnknownEncoderError: ``name`` is not a concept model; the message lists the choices.
    """
    try:
        return CONCEPT_MODELS[name]
    except KeyError:
        raise UnknownEncoderError(
            f"unknown concept model '{name}'; choose one of {', '.join(CONCEPT_MODELS)}"
        ) from None
