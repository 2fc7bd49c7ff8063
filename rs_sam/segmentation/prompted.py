"""Decoding point and box prompts on a chip with SAM's prompt encoder and mask decoder.

Coordinates: a prompt on a chip is in continuous chip pixel coordinates (x = column,
y = row, pixel centres at +0.5, see :mod:`rs_sam.segmentation.prompts`). The encoder resizes the
square chip of side ``C`` to its square input of side ``S`` (bilinear, ``align_corners=False``,
:meth:`FrozenEncoder.preprocess`), which maps continuous coordinates by ``u * S / C``. SAM's
prompt encoder adds 0.5 to every coordinate it gets (it takes pixel indices), so the
coordinates passed to it are ``u * S / C - 0.5``: a point at a chip pixel's centre lands
on the centre of the same place in the model input.

Masks follow SAM's conventions: three ambiguity masks for a single point without a box,
one mask otherwise (several points, or a box), unless ``multimask="all"`` asks for the
three. ``"best"`` keeps the mask with the highest predicted IoU. The decoder's low-resolution
logits (``4E x 4E`` for an ``E x E`` embedding) are resized bilinearly (``align_corners=False``)
straight to the chip's side and thresholded at 0. SAM's predictor resizes to ``S`` first,
then to the image size; for a square chip without padding both are the same geometry, and
the direct resize skips the ``S x S`` intermediate.

HQ-SAM (``hq="add"`` or ``"only"``, an ``sam_hq_*`` encoder and the early-layer features of
:meth:`FrozenEncoder.embed_hq`) decodes every prompt, points or box, through the HQ decoder
(:class:`~rs_sam.models.decoding.SamDecoder`): one mask per prompt, SAM's mask
(its single mask, or the best ambiguity mask for a lone point) plus the HQ token's logits,
or the HQ token's alone; ``index`` is the SAM mask used. ``multimask="all"`` has no HQ
counterpart.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Literal, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from rs_sam.data.grid import ChipWindow
from rs_sam.errors import ConfigError
from rs_sam.models.decoding import (
    HQ_MODES,
    ChipFeatures,
    HqMode,
    SamDecoder,
    hq_encoder_error,
)
from rs_sam.models.encoders.base import FrozenEncoder
from rs_sam.segmentation.prompts import Prompt, PromptError

__all__ = [
    "Multimask",
    "PromptMask",
    "decode_logits",
    "decode_prompt",
    "decode_prompts",
    "shift_prompt",
    "uses_multimask",
]

Multimask = Literal["best", "all"]

#: Prompts with a box decoded together by the official decoder (it copies the embedding per
#: prompt: 4 MiB each for a 64x64x256 embedding).
DEFAULT_BATCH = 16


class PromptMask(NamedTuple):
    """One mask of a prompt.

    Attributes:
        mask: ``(C, C)`` bool at chip resolution.
        score: SAM's predicted IoU.
        index: position among the decoder's outputs: 0..2 for the three ambiguity masks,
            0 for the single mask (with HQ decoding: the SAM mask the HQ logits went with).
    """

    mask: np.ndarray
    score: float
    index: int


def shift_prompt(prompt: Prompt, window: ChipWindow) -> Prompt:
    """``prompt`` from raster pixel coordinates to pixel coordinates of ``window``'s chip."""
    return prompt.shifted(-float(window.col_off), -float(window.row_off))


def uses_multimask(prompt: Prompt, multimask: Multimask = "best") -> bool:
    """Whether the decoder is asked for three masks: one point without a box, or ``"all"``."""
    return multimask == "all" or (len(prompt.points) == 1 and prompt.box is None)


def decode_prompt(
    encoder: FrozenEncoder,
    features: ChipFeatures,
    prompt_in_chip: Prompt,
    chip_size: int,
    *,
    multimask: Multimask = "best",
    hq: HqMode = "off",
) -> list[PromptMask]:
    """The mask(s) of one prompt on one chip.

    Args:
        encoder: a SAM encoder (with ``prompt_encoder`` and ``mask_decoder``).
        features: what the encoder produced for the chip (``SamDecoder.features``): the
            ``(1, 256, E, E)`` embedding, and with ``hq`` HQ-SAM's early-layer features.
        prompt_in_chip: the prompt in the chip's pixel coordinates (:func:`shift_prompt`).
        chip_size: side ``C`` of the chip the embedding was computed from.
        multimask: ``"best"``: the mask with the highest predicted IoU; ``"all"``: the three
            ambiguity masks.
        hq: ``"off"``, or HQ-SAM decoding ``"add"``/``"only"`` (see :func:`decode_logits`).

    Returns:
        One :class:`PromptMask` (``"best"``) or three (``"all"``), masks ``(C, C)`` bool.
    """
    return decode_prompts(
        encoder, features, [prompt_in_chip], chip_size, multimask, hq=hq
    )[0]


@torch.inference_mode()
def decode_prompts(
    encoder: FrozenEncoder,
    features: ChipFeatures,
    prompts: list[Prompt],
    chip_size: int,
    multimask: Multimask = "best",
    *,
    batch_size: int = DEFAULT_BATCH,
    hq: HqMode = "off",
) -> list[list[PromptMask]]:
    """The masks of many prompts sharing one chip, as :func:`decode_prompt` for each.

    Prompts with the same number of points and the same box presence are decoded together
    (see :func:`decode_logits`); only the kept masks are resized to the chip.

    Returns:
        One list per prompt, in order, of one (``"best"``, or any HQ decoding) or three
        (``"all"``) masks.
    """
    decoded = _decode(
        encoder, features, prompts, chip_size, multimask, batch_size, hq=hq
    )
    out = []
    for logits, iou, index in decoded:
        order = [int(iou.argmax())] if multimask == "best" else list(range(len(iou)))
        masks = _upsample(logits[order], chip_size) > 0
        out.append(
            [
                PromptMask(mask=masks[k].cpu().numpy(), score=float(iou[i]), index=int(index[i]))
                for k, i in enumerate(order)
            ]
        )
    return out


@torch.inference_mode()
def decode_logits(
    encoder: FrozenEncoder,
    features: ChipFeatures,
    prompts: list[Prompt],
    chip_size: int,
    multimask: Multimask = "best",
    *,
    batch_size: int = DEFAULT_BATCH,
    hq: HqMode = "off",
) -> list[tuple[Tensor, Tensor]]:
    """SAM's low-resolution logits and predicted IoU of each prompt on one chip.

    Prompts are grouped by shape (number of points, box or not); each group is decoded in
    batches of ``batch_size`` with one decoder call per batch
    (:meth:`~rs_sam.models.decoding.SamDecoder.decode`: point-only groups through the fast
    decoder, equal to the official forward up to float rounding; groups with a box through
    the official forward).

    Args:
        encoder: a SAM encoder (with ``prompt_encoder`` and ``mask_decoder``).
        features: what the encoder produced for the chip (see :func:`decode_prompt`).
        prompts: prompts in the chip's pixel coordinates.
        chip_size: side ``C`` of the chip.
        multimask: ``"all"`` asks every prompt for three masks; ``"best"`` follows SAM's
            rule (:func:`uses_multimask`).
        batch_size: prompts per decoder call, >= 1.
        hq: ``"off"``: SAM's decoder as above. ``"add"``/``"only"``: every group through
            HQ-SAM's decoder (an ``sam_hq_*`` encoder): one mask per prompt, SAM's (single,
            or the best ambiguity mask when SAM's rule asks for three) plus the HQ token's
            logits, or the HQ token's alone; ``multimask`` must be ``"best"``.

    Returns:
        Per prompt, in order: logits ``(M, 4E, 4E)`` and predicted IoU ``(M,)``, M = 3 or 1
        (always 1 with HQ decoding), on the embedding's device.

    Raises:
        ConfigError: the encoder has no SAM decoder, bad ``multimask``, ``chip_size`` or
            ``batch_size``, or an embedding of the wrong shape; ``hq`` with an encoder that
            is not HQ-SAM, without its early-layer features, or with ``multimask="all"``.
        PromptError: a prompt with neither points nor a box.
    """
    decoded = _decode(
        encoder, features, prompts, chip_size, multimask, batch_size, hq=hq
    )
    return [(logits, iou) for logits, iou, _ in decoded]


def _decode(
    encoder: FrozenEncoder,
    features: ChipFeatures,
    prompts: list[Prompt],
    chip_size: int,
    multimask: Multimask,
    batch_size: int,
    *,
    hq: HqMode,
) -> list[tuple[Tensor, Tensor, Tensor]]:
    """:func:`decode_logits` plus, per prompt, the decoder output index of each mask ``(M,)``."""
    _check(encoder, features.embedding, chip_size, multimask, batch_size)
    _check_hq(encoder, features, multimask, hq)
    decoder = SamDecoder.for_encoder(encoder, hq)
    # HQ-SAM's global-local fusion depends on the image only: once per chip, not per batch
    features = decoder.prepare(features)
    scale = encoder.input_size / chip_size
    groups: dict[tuple[int, bool], list[int]] = defaultdict(list)
    for i, prompt in enumerate(prompts):
        if len(prompt.points) == 0 and prompt.box is None:
            raise PromptError(f"prompt {prompt.id} has neither points nor a box; give it one")
        groups[(len(prompt.points), prompt.box is not None)].append(i)
    results: list[tuple[Tensor, Tensor, Tensor]] = [None] * len(prompts)  # type: ignore[list-item]
    device = features.embedding.device
    for (n_points, has_box), members in groups.items():
        multimask_output = multimask == "all" or (n_points == 1 and not has_box)
        for start in range(0, len(members), batch_size):
            batch = [prompts[i] for i in members[start : start + batch_size]]
            points = labels = boxes = None
            if n_points:
                xy = np.stack([p.points for p in batch]) * scale - 0.5
                points = torch.as_tensor(xy, dtype=torch.float32, device=device)
                labels = torch.as_tensor(np.stack([p.labels for p in batch]), device=device)
            if has_box:
                box = np.stack([p.box for p in batch]) * scale - 0.5
                boxes = torch.as_tensor(box, dtype=torch.float32, device=device)
            logits, iou, indices, _ = decoder.decode(
                features, points=points, labels=labels, boxes=boxes, multimask=multimask_output
            )
            for k, i in enumerate(members[start : start + batch_size]):
                results[i] = (logits[k], iou[k], indices[k])
    return results


def _check(
    encoder: FrozenEncoder, embedding: Tensor, chip_size: int, multimask: str, batch_size: int
) -> None:
    """Check that the encoder has a SAM decoder and the arguments fit it."""
    prompt_encoder, mask_decoder = encoder.prompt_encoder, encoder.mask_decoder
    if prompt_encoder is None or mask_decoder is None:
        raise ConfigError(
            f"encoder '{encoder.spec.name}' has no SAM prompt decoder; use a SAM encoder such "
            "as 'mobile_sam' or 'sam_vit_b' for prompts"
        )
    if multimask not in ("best", "all"):
        raise ConfigError(f"multimask={multimask!r} is invalid; use 'best' or 'all'")
    if isinstance(chip_size, bool) or not isinstance(chip_size, int) or chip_size < 1:
        raise ConfigError(f"chip_size={chip_size!r} is invalid; use the chip's side in pixels")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size={batch_size!r} is invalid; use an integer >= 1")
    side = tuple(prompt_encoder.image_embedding_size)
    expected = (1, encoder.embedding_dim, *side)
    if tuple(embedding.shape) != expected:
        raise ConfigError(
            f"embedding has shape {tuple(embedding.shape)}, expected {expected}; pass "
            f"encoder.embed(chip) of one chip"
        )


def _check_hq(encoder: FrozenEncoder, features: ChipFeatures, multimask: str, hq: str) -> None:
    """Check that ``hq`` decoding, when on, has an HQ-SAM encoder and its features."""
    if hq not in HQ_MODES:
        raise ConfigError(f"hq={hq!r} is invalid; use one of {', '.join(HQ_MODES)}")
    if hq == "off":
        return
    if encoder.hq_decoder is None:
        raise hq_encoder_error(encoder.spec.name)
    if multimask != "best":
        raise ConfigError(
            "HQ-SAM decoding gives one mask per prompt; use --multimask best with --hq/--hq-only"
        )
    side = tuple(features.embedding.shape[-2:])
    interm = features.interm
    if interm is None or interm.ndim != 4 or interm.shape[0] != 1 or interm.shape[-2:] != side:
        got = "none" if interm is None else f"shape {tuple(interm.shape)}"
        raise ConfigError(
            f"HQ-SAM decoding needs the chip's early-layer features (1, D, {side[0]}, "
            f"{side[1]}), got {got}: pass SamDecoder.for_encoder(encoder, hq).features(chip)"
        )


def _upsample(logits: Tensor, chip_size: int) -> Tensor:
    """``(M, h, w)`` low-resolution logits -> ``(M, C, C)`` (bilinear, no corner alignment)."""
    return F.interpolate(
        logits[None].float(), size=(chip_size, chip_size), mode="bilinear", align_corners=False
    )[0]
