"""FastSAM-s / FastSAM-x (YOLOv8-seg) as frozen encoders.

Needs the optional ``ultralytics`` package (AGPL-3.0; ``pip install 'rs-sam[fastsam]'``), which
is imported only when a FastSAM encoder is built. The architecture is built from ultralytics'
own ``yolov8{s,x}-seg.yaml`` with one class (FastSAM's class-agnostic "object"), never from the
checkpoint file, and the weights are recovered from the official pickle without running it
(:func:`rs_sam.checkpoints.load_ultralytics_state_dict`).

Features come from forward hooks on the layers found by a probe pass: for each stride 4/8/16/32
the head's input at that stride (the neck outputs P3/P4/P5) or, where the head has none
(stride 4), the deepest backbone layer at that stride. Channels are read from the probe, not
written down for one checkpoint. Layers after the last feature layer (the segmentation head)
are dropped: rs-sam does not use FastSAM's masks, and their weights are not loaded.
FastSAM has no SAM image embedding: :meth:`FrozenEncoder.embed` raises for it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from rs_sam.checkpoints import load_into_model, load_ultralytics_state_dict
from rs_sam.errors import ConfigError, MissingDependencyError
from rs_sam.models.encoders.base import EncoderOutput, FrozenEncoder

if TYPE_CHECKING:
    from rs_sam.models.encoders.registry import EncoderSpec

_YOLO_SCALES = {"fastsam_s": "s", "fastsam_x": "x"}  # FastSAM-s = YOLOv8s-seg, -x = YOLOv8x-seg
_TINY_SCALE = "n"
_TINY_INPUT_SIZE = 256
_PROBE_SIZE = 64  # probe input side: a multiple of the largest stride (32)
_FEATURE_STRIDES = (4, 8, 16, 32)
_LAYER_KEY = re.compile(r"model\.(\d+)\.")


def _import_ultralytics(name: str) -> tuple[Any, Callable[[str], dict[str, Any]]]:
    """``SegmentationModel`` and ``yaml_model_load`` from ultralytics, or a clear error."""
    try:
        from ultralytics.nn.tasks import SegmentationModel, yaml_model_load
    except ImportError as err:
        raise MissingDependencyError(
            f"encoder '{name}' needs the optional ultralytics package (AGPL-3.0): "
            "pip install 'rs-sam[fastsam]'"
        ) from err
    return SegmentationModel, yaml_model_load


def _probe(model: nn.Module, layers: nn.Sequential) -> dict[int, tuple[int, int]]:
    """Stride and channels of every layer that outputs one map: ``{index: (stride, C)}``."""
    found: dict[int, tuple[int, int]] = {}

    def record(index: int) -> Callable[[nn.Module, Any, Any], None]:
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            if isinstance(output, Tensor) and output.ndim == 4:
                found[index] = (_PROBE_SIZE // output.shape[-1], output.shape[1])

        return hook

    handles = [layer.register_forward_hook(record(i)) for i, layer in enumerate(layers)]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, _PROBE_SIZE, _PROBE_SIZE))
    finally:
        for handle in handles:
            handle.remove()
    return found


def _feature_layers(
    name: str, layers: nn.Sequential, found: dict[int, tuple[int, int]]
) -> list[int]:
    """Layer index per stride: the head's input at that stride, else the deepest such layer."""
    head_from = getattr(layers[-1], "f", [])
    head_inputs = [head_from] if isinstance(head_from, int) else list(head_from)
    chosen = []
    for stride in _FEATURE_STRIDES:
        candidates = [i for i in head_inputs if found.get(i, (0, 0))[0] == stride]
        candidates = candidates or [i for i, (s, _) in found.items() if s == stride]
        if not candidates:
            raise ConfigError(f"encoder '{name}': the YOLO model has no map at stride {stride}")
        chosen.append(max(candidates))
    return chosen


class FastSamEncoder(FrozenEncoder):
    """FastSAM (YOLOv8-seg) backbone + neck maps at strides 4/8/16/32.

    Args:
        spec: Registry entry.
        model: An ultralytics ``SegmentationModel`` (random weights).
        input_size: Side of the square model input.
    """

    model: Any  # ultralytics SegmentationModel

    def __init__(self, spec: EncoderSpec, model: nn.Module, *, input_size: int) -> None:
        layers: Any = model.model
        found = _probe(model, layers)
        layer_ids = _feature_layers(spec.name, layers, found)
        channels = tuple(found[i][1] for i in layer_ids)
        super().__init__(
            spec,
            input_size=input_size,
            channels=(channels[0], channels[1], channels[2], channels[3]),
            embedding_dim=None,
        )
        self.layer_ids = layer_ids
        self.last_layer = max(layer_ids)
        kept = layers[: self.last_layer + 1]  # drop the unused head; keys keep their indices
        model.model = kept
        self.model = model
        self._captured: dict[int, Tensor] = {}
        for index in layer_ids:
            kept[index].register_forward_hook(self._capture(index))

    def _capture(self, index: int) -> Callable[[nn.Module, Any, Any], None]:
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            self._captured[index] = output

        return hook

    def _encode(self, x: Tensor) -> EncoderOutput:
        self._captured = {}
        try:
            self.model(x)
            features = [self._captured[i] for i in self.layer_ids]
        finally:
            self._captured = {}
        return EncoderOutput(features=features, embedding=None)

    def _is_unused(self, key: str) -> bool:
        match = _LAYER_KEY.match(key)
        return match is not None and int(match.group(1)) > self.last_layer

    def load_checkpoint(self, path: Path) -> None:
        """Load an official FastSAM file (pickled ultralytics model) without executing it."""
        state_dict = load_ultralytics_state_dict(path)
        load_into_model(
            self.model, state_dict, encoder=self.spec.name, source=path, ignore=self._is_unused
        )
        self.train(False)


def build_fastsam(spec: EncoderSpec, *, tiny: bool = False) -> FastSamEncoder:
    """Random-weight FastSAM encoder (YOLOv8-seg from ultralytics' yaml, one class)."""
    segmentation_model, yaml_model_load = _import_ultralytics(spec.name)
    scale = _TINY_SCALE if tiny else _YOLO_SCALES[spec.name]
    cfg = dict(yaml_model_load(f"yolov8{scale}-seg.yaml"))
    cfg["nc"] = 1  # FastSAM detects one class-agnostic "object" class
    model = segmentation_model(cfg, ch=3, nc=1, verbose=False)
    return FastSamEncoder(spec, model, input_size=_TINY_INPUT_SIZE if tiny else spec.input_size)
