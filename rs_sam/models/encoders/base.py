"""The frozen-encoder contract every decoder, adapter and zero-shot method relies on.

An encoder takes RGB chips in 0..255, resizes and normalises them itself, and returns four
feature maps at strides 4/8/16/32 of its input size (channels in ``encoder.channels``) plus,
for the SAM family, the SAM image embedding that the prompt encoder and mask decoder consume
(and, for SAM 2, the high-resolution features its mask decoder also takes).
Encoders are frozen: no parameter requires grad and ``.train()`` leaves them in eval mode, so
a Lightning module can call ``.train()`` on its parent every epoch.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, Self

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rs_sam.errors import ConfigError, InputRasterError

if TYPE_CHECKING:
    from rs_sam.models.encoders.registry import EncoderSpec


class RandomWeightsWarning(UserWarning):
    """An encoder runs with random weights: its outputs are meaningless."""


@dataclass(frozen=True)
class EncoderOutput:
    """What :meth:`FrozenEncoder.forward` returns.

    Attributes:
        features: Four maps ``(B, C_i, S/s_i, S/s_i)`` for strides ``s_i`` = 4, 8, 16, 32 of the
            model input size ``S``; ``C_i`` = ``encoder.channels[i]``.
        embedding: The SAM image embedding ``(B, E_c, S/16, S/16)`` (``E_c`` =
            ``encoder.embedding_dim``), or None for encoders without one (FastSAM).
    """

    features: list[Tensor]
    embedding: Tensor | None


class HqEmbedding(NamedTuple):
    """What :meth:`FrozenEncoder.embed_hq` returns: HQ-SAM's two image inputs.

    Attributes:
        embedding: The SAM image embedding ``(B, embedding_dim, S/16, S/16)``, as
            :meth:`FrozenEncoder.embed`.
        interm: The early-layer features ``(B, D, S/16, S/16)`` (channels first) that
            HQ-SAM's decoder fuses with the embedding: the tokens of the first
            global-attention block of a ViT (``D`` = its width), the input of TinyViT's
            stage 2 (``D`` = 160 for ``sam_hq_vit_tiny``).
    """

    embedding: Tensor
    interm: Tensor


class HighResEmbedding(NamedTuple):
    """What :meth:`FrozenEncoder.embed_high_res` returns: SAM 2's two image inputs.

    Attributes:
        embedding: The SAM image embedding ``(B, embedding_dim, S/16, S/16)``, as
            :meth:`FrozenEncoder.embed`.
        high_res: The stride-4 and stride-8 maps SAM 2's mask decoder adds while upscaling,
            ``(B, C/8, S/4, S/4)`` and ``(B, C/4, S/8, S/8)`` (``C`` = ``embedding_dim``).
    """

    embedding: Tensor
    high_res: tuple[Tensor, Tensor]


class EncoderRuntime(Protocol):
    """Runs an encoder's methods some other way than PyTorch's eager mode (e.g. OpenVINO)."""

    def run(self, encoder: FrozenEncoder, method: str, x: Tensor) -> Any:
        """What ``getattr(encoder, method)(x)`` returns."""
        ...


class FrozenEncoder(nn.Module, ABC):
    """A pretrained image encoder whose weights never change.

    Subclasses implement :meth:`_encode` (and :meth:`_embed` when they have a SAM embedding)
    on already resized and normalised input, and :meth:`load_checkpoint`.

    Args:
        spec: Registry entry of the encoder.
        input_size: Side of the square model input (``spec.input_size``, smaller when tiny).
        channels: Channels of the four feature maps (``spec.channels``, others when tiny).
        embedding_dim: Channels of the SAM embedding, None when there is none.
    """

    pixel_mean: Tensor  # (1, 3, 1, 1), non-persistent buffers
    pixel_std: Tensor

    def __init__(
        self,
        spec: EncoderSpec,
        *,
        input_size: int,
        channels: tuple[int, int, int, int],
        embedding_dim: int | None,
    ) -> None:
        super().__init__()
        self._spec = spec
        self._input_size = input_size
        self._channels = channels
        self._embedding_dim = embedding_dim
        self.random_weights = True  # cleared once a checkpoint is loaded
        #: How the image encoder runs (None: PyTorch); see openvino_runtime.use_runtime.
        self.runtime: EncoderRuntime | None = None
        mean = torch.tensor(spec.pixel_mean, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(spec.pixel_std, dtype=torch.float32).view(1, 3, 1, 1)
        self.register_buffer("pixel_mean", mean, persistent=False)
        self.register_buffer("pixel_std", std, persistent=False)

    # ------------------------------------------------------------------ description
    @property
    def spec(self) -> EncoderSpec:
        """The registry entry this encoder was built from."""
        return self._spec

    @property
    def input_size(self) -> int:
        """Side of the square model input; chips are resized to it."""
        return self._input_size

    @property
    def channels(self) -> tuple[int, int, int, int]:
        """Channels of the feature maps at strides 4, 8, 16, 32."""
        return self._channels

    @property
    def strides(self) -> tuple[int, int, int, int]:
        """Strides of the feature maps relative to the model input: (4, 8, 16, 32)."""
        return self._spec.strides

    @property
    def embedding_dim(self) -> int | None:
        """Channels of the SAM image embedding; None for encoders without one."""
        return self._embedding_dim

    @property
    def device(self) -> torch.device:
        """Device of the encoder's tensors."""
        return self.pixel_mean.device

    @property
    def prompt_encoder(self) -> nn.Module | None:
        """The official ``segment_anything`` PromptEncoder, or None (FastSAM)."""
        return None

    @property
    def mask_decoder(self) -> nn.Module | None:
        """The official ``segment_anything`` MaskDecoder, or None (FastSAM)."""
        return None

    @property
    def hq_decoder(self) -> nn.Module | None:
        """``segment_anything_hq``'s ``MaskDecoderHQ`` of an HQ-SAM encoder, else None."""
        return None

    @property
    def has_high_res(self) -> bool:
        """Whether the SAM decoder also takes high-resolution features (SAM 2)."""
        return False

    # ------------------------------------------------------------------ freezing
    def freeze(self) -> Self:
        """Stop gradients to every parameter and switch to eval mode."""
        for parameter in self.parameters():
            parameter.requires_grad_(False)
        return self.train(False)

    def train(self, mode: bool = True) -> Self:
        """Stay in eval mode whatever ``mode`` says (a frozen encoder keeps BN/dropout fixed)."""
        return super().train(False)

    # ------------------------------------------------------------------ inference
    def preprocess(self, images: Tensor) -> Tensor:
        """Resize and normalise RGB chips for the model.

        Args:
            images: ``(B, 3, H, W)`` RGB in 0..255, ``H == W``, any real dtype and device.

        Returns:
            ``(B, 3, S, S)`` float32 on the encoder's device, ``S`` = ``input_size``:
            bilinear resize (antialiased when shrinking), then ``(x - mean) / std``.
        """
        if images.ndim != 4 or images.shape[1] != 3 or images.shape[0] == 0:
            raise InputRasterError(
                f"images must be a (B, 3, H, W) RGB batch with B >= 1; got shape "
                f"{tuple(images.shape)}: select or convert to three bands first"
            )
        height, width = images.shape[-2:]
        if height != width:
            raise InputRasterError(
                f"images must be square chips; got {height}x{width}: tile or pad the raster "
                f"into square chips (e.g. {self.input_size}x{self.input_size}) first"
            )
        if images.is_complex() or images.dtype == torch.bool:
            raise InputRasterError(
                f"images must hold real RGB values in 0..255; got dtype {images.dtype}"
            )
        x = images.to(device=self.device, dtype=torch.float32)
        if height != self.input_size:
            x = F.interpolate(
                x,
                size=(self.input_size, self.input_size),
                mode="bilinear",
                align_corners=False,
                antialias=height > self.input_size,
            )
        return (x - self.pixel_mean) / self.pixel_std

    def forward(self, images: Tensor) -> EncoderOutput:
        """Feature pyramid (and SAM embedding) of RGB chips.

        Args:
            images: ``(B, 3, H, W)`` RGB in 0..255 with ``H == W``.

        Returns:
            :class:`EncoderOutput` with maps at strides 4/8/16/32 of ``input_size``.
        """
        self._warn_if_random()
        with torch.no_grad():
            return self._run("_encode", self.preprocess(images))

    def embed(self, images: Tensor) -> Tensor:
        """The SAM image embedding of RGB chips.

        Args:
            images: ``(B, 3, H, W)`` RGB in 0..255 with ``H == W``.

        Returns:
            ``(B, embedding_dim, S/16, S/16)``, ``S`` = ``input_size`` ((B, 256, 64, 64) for
            the 1024-pixel models).
        """
        if self.embedding_dim is None:
            raise ConfigError(
                f"encoder '{self.spec.name}' has no SAM image embedding ({self.spec.description}); "
                "use a SAM encoder such as 'mobile_sam' or 'sam_vit_b' for embeddings and prompts"
            )
        self._warn_if_random()
        with torch.no_grad():
            return self._run("_embed", self.preprocess(images))

    def embed_hq(self, images: Tensor) -> HqEmbedding:
        """The SAM embedding and the early-layer features HQ-SAM's decoder needs.

        One pass through the image encoder; ``embedding`` equals :meth:`embed`'s.

        Args:
            images: ``(B, 3, H, W)`` RGB in 0..255 with ``H == W``.

        Raises:
            ConfigError: The encoder is not an HQ-SAM encoder (``sam_hq_*``).
        """
        if self.hq_decoder is None:
            raise ConfigError(
                f"encoder '{self.spec.name}' is not an HQ-SAM encoder; HQ decoding needs one "
                "such as 'sam_hq_vit_b' (or 'sam_hq_vit_tiny')"
            )
        self._warn_if_random()
        with torch.no_grad():
            return self._run("_embed_hq", self.preprocess(images))

    def embed_high_res(self, images: Tensor) -> HighResEmbedding:
        """The SAM embedding and the high-resolution features SAM 2's decoder needs.

        One pass through the image encoder; ``embedding`` equals :meth:`embed`'s.

        Args:
            images: ``(B, 3, H, W)`` RGB in 0..255 with ``H == W``.

        Raises:
            ConfigError: The encoder's decoder takes no such features (not SAM 2).
        """
        if not self.has_high_res:
            raise ConfigError(
                f"encoder '{self.spec.name}' has no high-resolution decoder features; "
                "they are SAM 2's (e.g. 'sam2_hiera_tiny')"
            )
        self._warn_if_random()
        with torch.no_grad():
            return self._run("_embed_high_res", self.preprocess(images))

    def _run(self, method: str, x: Tensor) -> Any:
        """``getattr(self, method)(x)``, through the runtime when one is set."""
        if self.runtime is None:
            return getattr(self, method)(x)
        return self.runtime.run(self, method, x)

    def _warn_if_random(self) -> None:
        if self.random_weights:
            warnings.warn(
                RandomWeightsWarning(
                    f"encoder '{self.spec.name}' runs with RANDOM weights: its features and "
                    "masks are meaningless; use this only for tests and benchmarks"
                ),
                stacklevel=3,
            )

    @abstractmethod
    def _encode(self, x: Tensor) -> EncoderOutput:
        """Pyramid and embedding of normalised input ``(B, 3, S, S)``."""

    def _embed(self, x: Tensor) -> Tensor:
        """SAM embedding of normalised input ``(B, 3, S, S)``; override for a cheaper path."""
        embedding = self._encode(x).embedding
        if embedding is None:  # pragma: no cover - guarded by embed()
            raise ConfigError(f"encoder '{self.spec.name}' has no SAM image embedding")
        return embedding

    def _embed_hq(self, x: Tensor) -> HqEmbedding:
        """Embedding and early-layer features of normalised input; HQ-SAM encoders override."""
        raise ConfigError(f"encoder '{self.spec.name}' has no HQ-SAM features")

    def _embed_high_res(self, x: Tensor) -> HighResEmbedding:
        """Embedding and high-resolution features of normalised input; SAM 2 overrides."""
        raise ConfigError(f"encoder '{self.spec.name}' has no high-resolution decoder features")

    @abstractmethod
    def load_checkpoint(self, path: Path) -> None:
        """Load official weights from ``path`` (checked key by key), in place."""
