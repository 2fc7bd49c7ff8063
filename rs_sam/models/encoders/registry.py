"""The encoder registry: a plain dict of frozen :class:`EncoderSpec`, and :func:`load_encoder`.

Adapters and heads read ``channels``/``strides`` from the spec (or from ``encoder.channels``
for tiny test builds); nothing downstream writes channel counts for one checkpoint.

Published checkpoint figures (sizes and sha256) come from public material: the MobileSAM
figures are the third-party ones in the project references; the SAM figures agree across
many public manifests and download logs (e.g. micro-sam's checksum table, a ``wget`` log
showing ``Length: 375042383`` for ViT-B); the FastSAM figures from public manifests pinning
the ultralytics asset files. HQ-SAM files are those of the official Hugging Face repository
``lkeab/hq-sam``: ``sam_hq_vit_b.pth`` 379,335,069 bytes with the sha256 in the project
references; ``sam_hq_vit_h.pth`` 2,570,940,653 bytes and its sha256 as pinned by several
public manifests (refiners' conversion recipe, Intel's Geti model map); the
``sam_hq_vit_tiny.pth`` sha256 from the same manifests (no public byte count found);
nothing public was found for ``sam_hq_vit_l.pth``. SAM 2.1 files are Meta's
``sam2.1_hiera_{tiny,small,base_plus,large}.pt`` (``dl.fbaipublicfiles.com/segment_anything_2/
092824/``, Apache-2.0): no byte count or sha256 of them was found published (download scripts
and model cards give rounded MB only), so both are None. They are pickled state dicts read
with ``torch.load(weights_only=True)`` like every .pt here; transformers' ``model.safetensors``
of the same weights (a file, or a Hugging Face model folder) loads too with ``--checkpoint``.
Missing figures are None and then not checked.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from rs_sam.checkpoints import CheckpointSpec, file_sha256, resolve_checkpoint, weights_file
from rs_sam.errors import ConfigError, UnknownEncoderError
from rs_sam.models.encoders.base import FrozenEncoder, RandomWeightsWarning
from rs_sam.models.encoders.fastsam import build_fastsam
from rs_sam.models.encoders.sam import (
    HQ_BACKBONES,
    build_mobile_sam,
    build_sam_vit,
    tinyvit_channels,
    vit_channels,
)
from rs_sam.models.encoders.sam2 import build_sam2, hiera_channels

SAM_PIXEL_MEAN = (123.675, 116.28, 103.53)  # ImageNet mean in 0..255 (segment_anything)
SAM_PIXEL_STD = (58.395, 57.12, 57.375)
YOLO_PIXEL_MEAN = (0.0, 0.0, 0.0)  # YOLO only scales 0..255 to 0..1
YOLO_PIXEL_STD = (255.0, 255.0, 255.0)
STRIDES = (4, 8, 16, 32)
DEFAULT_ENCODER = "mobile_sam"

Weights = Literal["official", "random"]


@dataclass(frozen=True)
class EncoderSpec:
    """Everything rs-sam knows about one encoder, without building it.

    Attributes:
        name: Registry key (``mobile_sam``, ``sam_vit_b``, ``sam_hq_vit_b``...).
        family: Image-encoder family: ``"sam"`` (ViT), ``"mobile_sam"`` (TinyViT),
            ``"sam2"`` (SAM 2.1's Hiera) or ``"fastsam"``; HQ-SAM variants belong to their
            backbone's.
        builder: ``builder(spec, *, tiny) -> FrozenEncoder`` with random weights.
        checkpoint: Official checkpoint (URL, file name, published size and sha256).
        licence: Licence of code and weights (SPDX id).
        input_size: Side of the square model input in pixels.
        pixel_mean: Per-channel mean subtracted from 0..255 RGB.
        pixel_std: Per-channel std dividing 0..255 RGB.
        strides: Strides of the four feature maps.
        channels: Channels of the four feature maps.
        embedding_dim: Channels of the SAM image embedding; None when there is none.
        extra: pip extra to install (``pip install 'rs-sam[extra]'``), None when built in.
        description: One line for listings.
        hq: HQ-SAM: the mask decoder is ``MaskDecoderHQ`` (HQ output token), which
            ``--hq``/``--hq-only`` decoding needs.
    """

    name: str
    family: Literal["sam", "mobile_sam", "sam2", "fastsam"]
    builder: Callable[..., FrozenEncoder] = field(repr=False)
    checkpoint: CheckpointSpec
    licence: str
    input_size: int
    pixel_mean: tuple[float, float, float]
    pixel_std: tuple[float, float, float]
    strides: tuple[int, int, int, int]
    channels: tuple[int, int, int, int]
    embedding_dim: int | None
    extra: str | None
    description: str
    hq: bool = False


_SAM_URL = "https://dl.fbaipublicfiles.com/segment_anything/"
_ULTRALYTICS_URL = "https://github.com/ultralytics/assets/releases/download/v8.4.0/"
_HQ_SAM_URL = "https://huggingface.co/lkeab/hq-sam/resolve/main/"
_SAM2_URL = "https://dl.fbaipublicfiles.com/segment_anything_2/092824/"


def _sam_vit(name: str, filename: str, size: int, sha256: str, what: str) -> EncoderSpec:
    return EncoderSpec(
        name=name,
        family="sam",
        builder=build_sam_vit,
        checkpoint=CheckpointSpec(_SAM_URL + filename, filename, size, sha256),
        licence="Apache-2.0",
        input_size=1024,
        pixel_mean=SAM_PIXEL_MEAN,
        pixel_std=SAM_PIXEL_STD,
        strides=STRIDES,
        channels=vit_channels(name),
        embedding_dim=256,
        extra=None,
        description=what,
    )


def _sam_hq(name: str, size: int | None, sha256: str | None, what: str) -> EncoderSpec:
    backbone = HQ_BACKBONES[name]
    tinyvit = backbone == "mobile_sam"
    filename = f"{name}.pth"
    return EncoderSpec(
        name=name,
        family="mobile_sam" if tinyvit else "sam",
        builder=build_mobile_sam if tinyvit else build_sam_vit,
        checkpoint=CheckpointSpec(_HQ_SAM_URL + filename, filename, size, sha256),
        licence="Apache-2.0",
        input_size=1024,
        pixel_mean=SAM_PIXEL_MEAN,
        pixel_std=SAM_PIXEL_STD,
        strides=STRIDES,
        channels=tinyvit_channels(backbone) if tinyvit else vit_channels(backbone),
        embedding_dim=256,
        extra=None,
        description=what,
        hq=True,
    )


def _sam2(name: str, what: str) -> EncoderSpec:
    filename = name.replace("sam2_", "sam2.1_") + ".pt"  # sam2.1_hiera_tiny.pt ...
    return EncoderSpec(
        name=name,
        family="sam2",
        builder=build_sam2,
        checkpoint=CheckpointSpec(_SAM2_URL + filename, filename),  # no published figures
        licence="Apache-2.0",
        input_size=1024,
        pixel_mean=SAM_PIXEL_MEAN,  # ImageNet mean/std, as transformers' Sam2ImageProcessor
        pixel_std=SAM_PIXEL_STD,
        strides=STRIDES,
        channels=hiera_channels(name),
        embedding_dim=256,
        extra=None,
        description=what,
    )


def _fastsam(
    name: str,
    filename: str,
    size: int,
    sha256: str,
    channels: tuple[int, int, int, int],
    what: str,
) -> EncoderSpec:
    return EncoderSpec(
        name=name,
        family="fastsam",
        builder=build_fastsam,
        checkpoint=CheckpointSpec(_ULTRALYTICS_URL + filename, filename, size, sha256),
        licence="AGPL-3.0",
        input_size=1024,
        pixel_mean=YOLO_PIXEL_MEAN,
        pixel_std=YOLO_PIXEL_STD,
        strides=STRIDES,
        channels=channels,  # measured by FastSamEncoder's probe; tests check they agree
        embedding_dim=None,
        extra="fastsam",
        description=what,
    )


ENCODERS: dict[str, EncoderSpec] = {
    spec.name: spec
    for spec in (
        EncoderSpec(
            name="mobile_sam",
            family="mobile_sam",
            builder=build_mobile_sam,
            checkpoint=CheckpointSpec(
                "https://github.com/ChaoningZhang/MobileSAM/raw/master/weights/mobile_sam.pt",
                "mobile_sam.pt",
                40_728_226,
                "6dbb90523a35330fedd7f1d3dfc66f995213d81b29a5ca8108dbcdd4e37d6c2f",
            ),
            licence="Apache-2.0",
            input_size=1024,
            pixel_mean=SAM_PIXEL_MEAN,
            pixel_std=SAM_PIXEL_STD,
            strides=STRIDES,
            channels=tinyvit_channels("mobile_sam"),
            embedding_dim=256,
            extra=None,
            description="MobileSAM: TinyViT-5M image encoder distilled from SAM ViT-H (default)",
        ),
        _sam_vit(
            "sam_vit_b",
            "sam_vit_b_01ec64.pth",
            375_042_383,
            "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
            "SAM ViT-B (Meta), 89.7 M image-encoder parameters",
        ),
        _sam_vit(
            "sam_vit_l",
            "sam_vit_l_0b3195.pth",
            1_249_524_607,
            "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
            "SAM ViT-L (Meta)",
        ),
        _sam_vit(
            "sam_vit_h",
            "sam_vit_h_4b8939.pth",
            2_564_550_879,
            "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
            "SAM ViT-H (Meta), the largest and slowest",
        ),
        _sam_hq(
            "sam_hq_vit_b",
            379_335_069,
            "14a9d662cd6f5a9c2dba6d40ab0058d88d287e4a18fd6fdc6ad5fb1a3fdeaa57",
            "HQ-SAM ViT-B: SAM ViT-B + HQ output token (segment --hq / --hq-only)",
        ),
        _sam_hq(
            "sam_hq_vit_l",
            None,
            None,
            "HQ-SAM ViT-L: SAM ViT-L + HQ output token",
        ),
        _sam_hq(
            "sam_hq_vit_h",
            2_570_940_653,
            "a7ac14a085326d9fa6199c8c698c4f0e7280afdbb974d2c4660ec60877b45e35",
            "HQ-SAM ViT-H: SAM ViT-H + HQ output token",
        ),
        _sam_hq(
            "sam_hq_vit_tiny",
            None,
            "0f32c075ccdd870ae54db2f7630e7a0878ede5a2b06d05d6fe02c65a82fb7196",
            "Light HQ-SAM: MobileSAM's TinyViT + HQ output token",
        ),
        _sam2("sam2_hiera_tiny", "SAM 2.1 Hiera-T (Meta): 4-stage Hiera pyramid, SAM 2 decoder"),
        _sam2("sam2_hiera_small", "SAM 2.1 Hiera-S (Meta)"),
        _sam2("sam2_hiera_base_plus", "SAM 2.1 Hiera-B+ (Meta)"),
        _sam2("sam2_hiera_large", "SAM 2.1 Hiera-L (Meta), the largest SAM 2.1"),
        _fastsam(
            "fastsam_s",
            "FastSAM-s.pt",
            23_851_578,
            "c9f78716a81c7aff0d608ccc73e1b82ab3aaad86005049f6a92106a0be6d0844",
            (64, 128, 256, 512),
            "FastSAM-s: YOLOv8s-seg, no SAM embedding (needs the fastsam extra)",
        ),
        _fastsam(
            "fastsam_x",
            "FastSAM-x.pt",
            144_972_346,
            "752cadc2828edb1cd4bc4f9eb587100631af06ea2108f4c9ed56df4755701e76",
            (160, 320, 640, 640),
            "FastSAM-x: YOLOv8x-seg, no SAM embedding (needs the fastsam extra)",
        ),
    )
}


def list_encoders() -> list[str]:
    """Names of the registered encoders, the default (``mobile_sam``) first."""
    return list(ENCODERS)


def get_encoder(name: str) -> EncoderSpec:
    """The spec of encoder ``name``.

    Raises:
        UnknownEncoderError: ``name`` is not registered; the message lists the choices.
    """
    try:
        return ENCODERS[name]
    except (KeyError, TypeError):
        raise UnknownEncoderError(
            f"unknown encoder {name!r}; choose one of: {', '.join(ENCODERS)}"
        ) from None


def load_encoder(
    name: str = DEFAULT_ENCODER,
    *,
    weights: Weights = "official",
    checkpoint: str | Path | None = None,
    device: str | torch.device = "cpu",
    tiny: bool = False,
) -> FrozenEncoder:
    """Build a frozen encoder, with official (or random) weights, on ``device``.

    Args:
        name: Registry name (see :func:`list_encoders`).
        weights: ``"official"`` loads the checkpoint (``checkpoint`` if given, else the cached
            file, else a verified download); ``"random"`` keeps random weights and warns
            with :class:`RandomWeightsWarning` (results are meaningless: tests and benchmarks).
        checkpoint: Explicit checkpoint file (official weights only).
        device: Where the encoder runs.
        tiny: Reduced architecture of the same family (input 256) for fast tests; random
            weights only.

    Raises:
        UnknownEncoderError: Unknown ``name``.
        ConfigError: Invalid ``weights``/``device`` or contradictory options.
        MissingDependencyError: FastSAM without the ``fastsam`` extra.
        CheckpointNotFoundError, CheckpointError: See :mod:`rs_sam.checkpoints`.
    """
    spec = get_encoder(name)
    if weights not in ("official", "random"):
        raise ConfigError(f"weights={weights!r} is not one of 'official', 'random'")
    if weights == "random" and checkpoint is not None:
        raise ConfigError(
            f"checkpoint={checkpoint!s} was given with weights='random'; use weights='official' "
            "to load it"
        )
    if tiny and weights == "official":
        raise ConfigError(
            f"tiny=True builds a reduced '{name}' that has no official weights; "
            "pass weights='random' (tests and benchmarks only)"
        )
    try:
        target = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ConfigError(
            f"device={device!r} is not a torch device (e.g. 'cpu', 'cuda:0')"
        ) from err
    encoder = spec.builder(spec, tiny=tiny)
    if weights == "official":
        encoder.load_checkpoint(resolve_checkpoint(spec, checkpoint))
        encoder.random_weights = False
    else:
        warnings.warn(
            RandomWeightsWarning(
                f"encoder '{name}' was built with RANDOM weights: its features and masks are "
                "meaningless; use weights='random' only for tests and benchmarks"
            ),
            stacklevel=2,
        )
    return encoder.freeze().to(target)


def encoder_fingerprint(encoder: FrozenEncoder, checkpoint: str | Path | None) -> str | None:
    """sha256 of the file the encoder's weights came from (None for random weights)."""
    if encoder.random_weights:
        return None
    if checkpoint is not None:
        return file_sha256(weights_file(checkpoint))  # a Hugging Face folder: its weights
    spec = encoder.spec
    return spec.checkpoint.sha256 or file_sha256(resolve_checkpoint(spec, download=False))
