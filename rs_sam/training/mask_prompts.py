"""SAM prompts sampled from binary masks, in the model input's pixel frame.

* :func:`sample_prompts` (HQ-SAM training): the objects (8-connected regions) of a chip's
  target mask, each with one prompt of a kind: a (jittered) box, random foreground points,
  or a coarse noisy mask (:func:`noisy_mask_prompt`).
* :func:`prompts_from_masks` (SamLP stage 2): boxes and points from a predicted mask, per
  region of it or for all of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import Tensor

from rs_sam.data.labels import IGNORE
from rs_sam.errors import ConfigError

__all__ = [
    "MASK_PROMPT_LOGIT",
    "PROMPT_TYPES",
    "ObjectPrompts",
    "Prompts",
    "find_objects",
    "noisy_mask_prompt",
    "prompts_from_masks",
    "sample_prompts",
]

#: Prompt kinds a training chip draws from.
PROMPT_TYPES = ("box", "point", "mask")
#: Logit given to SAM's prompt encoder inside (+) and outside (-) a mask prompt. SAM takes
#: its previous low-resolution logits as mask input; the official HQ-SAM training passes
#: 0/255 masks, far out of that range.
MASK_PROMPT_LOGIT = 10.0


@dataclass(frozen=True)
class ObjectPrompts:
    """Prompts of ``N`` objects of one chip, all of one kind, in the model input's frame.

    Attributes:
        kind: ``box``, ``point`` or ``mask``.
        boxes: ``(N, 4)`` x0, y0, x1, y1 in model-input pixels, shifted by -0.5 as SAM's
            prompt encoder expects (rs-sam's inference convention), or None.
        points: ``(N, P, 2)`` x, y foreground points, same frame, or None.
        masks: ``(N, 1, m, m)`` mask-prompt logits at the prompt encoder's mask size, or None.
        targets: ``(N, H, W)`` int64 per object: 1 = the object, 0 = other labelled pixels,
            255 = unlabelled (chip resolution).
    """

    kind: str
    boxes: Tensor | None
    points: Tensor | None
    masks: Tensor | None
    targets: Tensor

    @property
    def count(self) -> int:
        return int(self.targets.shape[0])

    def to(self, device: torch.device | str) -> ObjectPrompts:
        def move(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.to(device)

        return ObjectPrompts(
            self.kind,
            move(self.boxes),
            move(self.points),
            move(self.masks),
            self.targets.to(device),
        )


def noisy_mask_prompt(
    masks: Tensor, size: int, *, rng: np.random.Generator, factor: int = 8
) -> Tensor:
    """Coarse, noisy 0/1 masks at ``size`` x ``size`` (the official ``misc.masks_noise``).

    The masks are shrunk to the prompt size (antialiased bilinear), then Gaussian noise
    (sigma 1) is added where they differ from a ``factor``-times down- and re-upsampled copy
    (the boundary band), and the result is thresholded at 0.5.

    Args:
        masks: ``(N, H, W)`` float 0/1.
        size: Side of the output (the prompt encoder's ``mask_input_size``).
    """
    m = masks.to(torch.float32).unsqueeze(1)
    if tuple(m.shape[-2:]) != (size, size):
        shrink = m.shape[-1] > size
        m = F.interpolate(m, size=(size, size), mode="bilinear", antialias=shrink)
    small = F.interpolate(m, size=(max(1, size // factor),) * 2, mode="bilinear")
    recovered = F.interpolate(small, size=(size, size), mode="bilinear")
    band = ((m - recovered).abs() >= 0.01).to(torch.float32)
    noise = torch.from_numpy(rng.standard_normal(m.shape).astype(np.float32))
    return ((m + noise * band) > 0.5).to(torch.float32)


def find_objects(mask: np.ndarray, min_area: int) -> tuple[np.ndarray, list[int]]:
    """8-connected regions of ``mask == 1``: the label image and the ids of those of at least
    ``min_area`` pixels, largest first (ties by id)."""
    labels, count = ndimage.label(mask == 1, structure=np.ones((3, 3), dtype=bool))
    if count == 0:
        return labels, []
    areas = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    order = np.argsort(-areas, kind="stable")
    return labels, [int(i) + 1 for i in order if areas[i] >= min_area]


def sample_prompts(
    mask: Tensor,
    *,
    kind: str,
    input_size: int,
    mask_size: int,
    points: int = 10,
    box_noise: float = 0.0,
    max_objects: int | None = None,
    min_area: int = 16,
    rng: np.random.Generator | None = None,
) -> ObjectPrompts | None:
    """Objects of one chip's binary mask and a prompt of ``kind`` for each.

    Args:
        mask: ``(H, W)`` 0/1/255 (255 = unlabelled); the chip is square.
        kind: ``box``, ``point`` or ``mask``.
        input_size: Side of the model input the chip is resized to (prompt coordinates are in
            its pixels).
        mask_size: Side of the prompt encoder's mask input (``mask`` prompts).
        points: Foreground points per object (``point`` prompts), drawn without replacement
            (with replacement from objects of fewer pixels).
        box_noise: Box jitter scale (see the module docstring; 0 = exact boxes).
        max_objects: At most this many objects (random ones with ``rng``, else the largest).
        min_area: Objects of fewer pixels are left out.
        rng: Random generator (training). None: deterministic (validation); points and mask
            noise then come from a fixed seed and boxes are exact.

    Returns:
        The prompts, or None when the chip has no object.
    """
    if kind not in PROMPT_TYPES:
        raise ValueError(f"prompt kind {kind!r} is not one of {', '.join(PROMPT_TYPES)}")
    array = mask.detach().cpu().numpy()
    labels, ids = find_objects(array, min_area)
    if not ids:
        return None
    fixed = rng is None
    rng = np.random.default_rng(0) if rng is None else rng
    if max_objects is not None and len(ids) > max_objects:
        if fixed:
            ids = ids[:max_objects]
        else:
            ids = [ids[i] for i in sorted(rng.choice(len(ids), size=max_objects, replace=False))]
    side = array.shape[-1]
    scale = input_size / side
    slices = ndimage.find_objects(labels)
    ignored = torch.from_numpy(array == IGNORE)
    label_t = torch.from_numpy(labels)
    targets = torch.stack([(label_t == i).to(torch.int64) for i in ids])
    targets[:, ignored] = IGNORE
    boxes = coords = prompt_masks = None
    if kind == "box":
        rows = []
        for i in ids:
            r, c = slices[i - 1]
            x0, y0, x1, y1 = float(c.start), float(r.start), float(c.stop), float(r.stop)
            if box_noise > 0 and not fixed:
                cx, cy, w, h = (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0
                jitter = rng.uniform(-1.0, 1.0, size=4) * box_noise
                cx, cy = cx + jitter[0] * w / 2, cy + jitter[1] * h / 2
                w, h = max(1.0, w + jitter[2] * w), max(1.0, h + jitter[3] * h)
                x0, y0, x1, y1 = cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
            rows.append(np.clip([x0, y0, x1, y1], 0.0, side))
        boxes = torch.tensor(np.asarray(rows) * scale - 0.5, dtype=torch.float32)
    elif kind == "point":
        picks = []
        for i in ids:
            ys, xs = np.nonzero(labels == i)
            chosen = rng.choice(len(ys), size=points, replace=len(ys) < points)
            picks.append(np.stack([xs[chosen], ys[chosen]], axis=-1))
        coords = torch.tensor((np.asarray(picks) + 0.5) * scale - 0.5, dtype=torch.float32)
    else:
        noisy = noisy_mask_prompt((targets == 1).to(torch.float32), mask_size, rng=rng)
        prompt_masks = (noisy * 2 - 1) * MASK_PROMPT_LOGIT
    return ObjectPrompts(kind, boxes, coords, prompt_masks, targets)


# ----------------------------------------------------------------------------- SamLP


@dataclass(frozen=True)
class Prompts:
    """SAM prompts of one chip, in the model input's pixel frame.

    Attributes:
        boxes: ``(N, 4)`` XYXY boxes, or None.
        points: ``(N, P, 2)`` XY foreground points, or None.
    """

    boxes: Tensor | None
    points: Tensor | None

    @property
    def count(self) -> int:
        source = self.boxes if self.boxes is not None else self.points
        return 0 if source is None else int(source.shape[0])


def prompts_from_masks(
    logits: Tensor,
    *,
    input_size: int,
    mode: Literal["regions", "mask"] = "regions",
    box: bool = True,
    points: int = 1,
    max_prompts: int = 16,
    min_area: int = 2,
    rng: np.random.Generator | None = None,
) -> list[Prompts | None]:
    """Box and point prompts from predicted low-resolution masks (stage 2).

    Args:
        logits: ``(B, h, w)`` mask logits in the decoder's low-resolution frame (a square
            ``h = w`` covering the model input).
        input_size: Side of the model input (prompt coordinates are in its pixels).
        mode: ``regions``: a prompt per 8-connected region of ``logits > 0`` (the largest
            ``max_prompts``, regions under ``min_area`` pixels dropped); ``mask``: one prompt
            for all of it.
        box: Give each prompt the box around its pixels.
        points: Foreground points per prompt, drawn inside its pixels. Without ``rng``
            (validation) the first is the region's most interior pixel and the rest are drawn
            with a fixed seed, so prompts are deterministic.
        rng: Random generator for the points (training).

    Returns:
        One :class:`Prompts` per chip, None where the mask is empty (decode without prompts).
    """
    if not box and points < 1:
        raise ConfigError("stage-2 prompts need a box or at least one point; set box or points")
    fixed = rng is None
    rng = np.random.default_rng(0) if rng is None else rng
    array = (logits.detach() > 0).cpu().numpy()
    size = array.shape[-1]
    scale = input_size / size
    out: list[Prompts | None] = []
    for mask in array:
        if mode == "regions":
            labels, order = find_objects(mask, min_area)
        else:
            labels = mask.astype(np.int32)
            order = [1] if mask.any() and int(mask.sum()) >= min_area else []
        order = order[:max_prompts]
        if not order:
            out.append(None)
            continue
        slices = ndimage.find_objects(labels)
        distance = ndimage.distance_transform_edt(mask) if fixed and points > 0 else None
        boxes, coords = [], []
        for region in order:
            rows, cols = slices[region - 1]
            if box:
                boxes.append(
                    [
                        cols.start * scale,
                        rows.start * scale,
                        cols.stop * scale - 1,
                        rows.stop * scale - 1,
                    ]
                )
            if points > 0:
                ys, xs = np.nonzero(labels[rows, cols] == region)
                picks = list(rng.integers(0, len(ys), size=points))
                if distance is not None:
                    inside = distance[rows, cols][ys, xs]
                    picks[0] = int(np.argmax(inside))
                coords.append(
                    [
                        [
                            (xs[i] + cols.start + 0.5) * scale - 0.5,
                            (ys[i] + rows.start + 0.5) * scale - 0.5,
                        ]
                        for i in picks
                    ]
                )
        out.append(
            Prompts(
                boxes=torch.tensor(boxes, dtype=torch.float32) if box else None,
                points=torch.tensor(coords, dtype=torch.float32) if points > 0 else None,
            )
        )
    return out
