"""Checkpoints of trained heads: small, self-describing, and loaded without running code.

A Lightning checkpoint written by ``rs-sam train`` holds the trainable weights and, under
the key ``"rs_sam"``, a :class:`HeadMetadata` record: the encoder and the sha256 of its
checkpoint, the chip size, bands and normalisation, the head's hyperparameters. That is
everything inference needs; the frozen encoder's weights are not stored.
"""

from __future__ import annotations

import dataclasses
import hashlib
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rs_sam.checkpoints import TRUSTED_HEAD, file_sha256, read_torch_file
from rs_sam.errors import (
    CheckpointError,
    CheckpointNotFoundError,
    ModelFileNotFoundError,
    RemoteInputError,
)
from rs_sam.models.encoders import (
    FrozenEncoder,
    RandomWeightsWarning,
    encoder_fingerprint,
    get_encoder,
)
from rs_sam.models.recipe import ModelRecipe, build_encoder

CHECKPOINT_KEY = "rs_sam"


@dataclass(frozen=True)
class HeadMetadata:
    """What a trained head needs besides its weights."""

    task: str  # "change" or "segment"
    encoder: str
    encoder_weights: str  # "official" or "random"
    encoder_sha256: str | None  # of the encoder checkpoint file; None for random weights
    tiny_encoder: bool
    input_size: int
    chip_size: int
    bands: tuple[int, ...] | None
    normalisation: str
    freeze_encoder: bool
    # change (SAM-CD)
    latent_classes: int = 0
    temperature: float = 0.0
    # segment (UNetFormer)
    backbone: str = "sam"  # "sam" (the registry encoder) or "resnet18"
    class_table: dict[str, Any] | None = None  # ClassTable.to_config()
    # a LoRA adapter merged into the encoder (`lora:` in the model section)
    lora_adapter: str | None = None
    lora_sha256: str | None = None

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["bands"] = list(self.bands) if self.bands else None
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: Path) -> HeadMetadata:
        names = {f.name for f in dataclasses.fields(cls)}
        required = {
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        }
        missing = sorted(required - set(values))
        if missing:
            raise CheckpointError(
                f"{source} has incomplete rs-sam metadata (missing {', '.join(missing)}); "
                "retrain it with this version of rs-sam"
            )
        values = {k: values[k] for k in names if k in values}
        values["bands"] = tuple(values["bands"]) if values["bands"] else None
        return cls(**values)


@dataclass(frozen=True)
class TaskEncoder:
    """The encoder of a training task and what identifies its weights."""

    encoder: FrozenEncoder
    sha256: str | None  # of the base checkpoint file; None for random weights
    lora_sha256: str | None  # of the LoRA adapter merged into it, if any

    @property
    def features_sha256(self) -> str | None:
        """What the encoder's features depend on (base and adapter), for the feature cache."""
        if self.lora_sha256 is None:
            return self.sha256
        return hashlib.sha256(f"{self.sha256}+{self.lora_sha256}".encode()).hexdigest()


def load_task_encoder(
    name: str,
    *,
    weights: str,
    checkpoint: str | Path | None,
    tiny: bool,
    lora: str | Path | None = None,
) -> TaskEncoder:
    """A task's registry encoder (on the CPU), with a LoRA adapter merged into it when ``lora``
    is set."""
    recipe = ModelRecipe(
        name,
        weights="random" if tiny else weights,  # type: ignore[arg-type]
        checkpoint=Path(checkpoint) if checkpoint is not None else None,
        lora=Path(lora) if lora is not None else None,
        merge_lora=True,
        device="cpu",
        tiny=tiny,
    )
    encoder = build_encoder(recipe)
    sha256 = encoder_fingerprint(encoder, checkpoint)
    return TaskEncoder(encoder, sha256, None if lora is None else file_sha256(lora))


def read_head_checkpoint(path: str | Path) -> tuple[HeadMetadata, dict[str, Any], dict[str, Any]]:
    """Metadata, hyperparameters and state dict of a checkpoint written by ``rs-sam train``.

    Raises:
        ModelFileNotFoundError: the file does not exist (bad input, exit 2).
        RemoteInputError: ``path`` is a URL.
        CheckpointError: not a checkpoint, unsafe to load, or without rs-sam metadata.
    """
    RemoteInputError.check(path, "model checkpoint")
    path = Path(path)
    if not path.is_file():
        raise ModelFileNotFoundError(f"model checkpoint {path} does not exist; check the path")
    content = read_torch_file(path, kind="rs-sam model checkpoint", trusted=TRUSTED_HEAD)
    if not isinstance(content, dict) or CHECKPOINT_KEY not in content:
        raise CheckpointError(
            f"{path} has no rs-sam metadata; pass a checkpoint written by `rs-sam train`"
        )
    metadata = HeadMetadata.from_dict(content[CHECKPOINT_KEY], path)
    get_encoder(metadata.encoder)  # an encoder this version does not know fails here
    return metadata, content.get("hyper_parameters", {}), content.get("state_dict", {})


def check_resume(path: str | Path, *, encoder: str, tiny_encoder: bool) -> None:
    """Refuse to resume a run whose checkpoint was trained with another encoder."""
    metadata, _, _ = read_head_checkpoint(path)
    if metadata.encoder != encoder or metadata.tiny_encoder != tiny_encoder:
        raise CheckpointError(
            f"{path} was trained with encoder '{metadata.encoder}' but the config asks for "
            f"'{encoder}'; use the matching config or start a new run folder"
        )


def rebuild_encoder(metadata: HeadMetadata, path: str | Path) -> FrozenEncoder:
    """The registry encoder a head was trained on, checked against the recorded sha256.

    Raises:
        CheckpointError: the available encoder weights are not the ones the head was
            trained on (a frozen encoder with official weights; their sha256 differ).
    """
    with warnings.catch_warnings():
        if metadata.encoder_weights == "random":
            # Trained on random features (tests, demos): say so once, loudly.
            warnings.simplefilter("ignore", RandomWeightsWarning)
            warnings.warn(
                RandomWeightsWarning(
                    f"{path} was trained on a RANDOM '{metadata.encoder}' encoder: its output "
                    "only demonstrates the pipeline"
                ),
                stacklevel=3,
            )
        encoder = build_encoder(
            ModelRecipe(
                metadata.encoder,
                weights="random" if metadata.encoder_weights == "random" else "official",
                lora=_recorded_adapter(metadata, path),
                merge_lora=True,
                device="cpu",
                tiny=metadata.tiny_encoder,
            )
        )
    if metadata.encoder_weights != "random" and metadata.freeze_encoder:
        found = encoder_fingerprint(encoder, None)
        if found != metadata.encoder_sha256:
            raise CheckpointError(
                f"{path} was trained on '{metadata.encoder}' weights with sha256 "
                f"{metadata.encoder_sha256} but the available file has {found}; "
                "use the encoder checkpoint it was trained with"
            )
    return encoder


def _recorded_adapter(metadata: HeadMetadata, path: str | Path) -> Path | None:
    """The LoRA adapter a head was trained with, found where training recorded it."""
    if metadata.lora_sha256 is None:
        return None
    adapter = Path(metadata.lora_adapter or "")
    if not adapter.is_file():
        raise CheckpointNotFoundError(
            f"{path} was trained on an encoder with the LoRA adapter {adapter}, which is not "
            "there; put the adapter back at that path"
        )
    if file_sha256(adapter) != metadata.lora_sha256:
        raise CheckpointError(
            f"LoRA adapter {adapter} is not the one {path} was trained with (sha256 differs); "
            "use the adapter of that training run"
        )
    return adapter


def split_model_state(
    state: dict[str, Any], *, frozen_encoder: bool
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A task's state dict -> (frozen encoder's weights, what ``load_head_state_dict`` takes).

    A frozen encoder's weights are in the checkpoint only when the registry cannot rebuild
    them (random weights); a fine-tuned encoder belongs to the head's weights.
    """
    weights = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
    if not frozen_encoder:
        return {}, weights
    prefix = "encoder."
    encoder = {k.removeprefix(prefix): v for k, v in weights.items() if k.startswith(prefix)}
    head = {k: v for k, v in weights.items() if not k.startswith(prefix)}
    return encoder, head
