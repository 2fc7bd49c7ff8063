"""Semantic segmentation with a trained UNetFormer: raster -> class polygons (and rasters).

raster -> chips on its grid -> stretch to 0..255 -> UNetFormer -> per-class probabilities
blended across chip overlaps (on-disk mosaic) -> each pixel's class (argmax) -> polygons per
class, merged across block borders (so same-class polygons touching across chip borders
are one) -> vector file; optionally the class raster (with a colour table) and the
per-class probabilities.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import torch

from rs_sam.data.bands import select_bands
from rs_sam.data.class_table import ClassTable
from rs_sam.data.grid import ChipWindow, chip_windows
from rs_sam.data.normalize import JointStretch
from rs_sam.data.rasters import DateInput, open_date
from rs_sam.data.scene import Scene
from rs_sam.devices import resolve_device
from rs_sam.errors import CheckpointError
from rs_sam.inference.classes import write_class_raster, write_class_scores
from rs_sam.inference.engine import ProgressCallback, run_chips
from rs_sam.inference.mosaic import ProbabilityMosaic
from rs_sam.inference.raster_io import check_raster_output
from rs_sam.models.head_file import (
    HeadMetadata,
    read_head_checkpoint,
    rebuild_encoder,
    split_model_state,
)
from rs_sam.models.unetformer import UNetFormer
from rs_sam.segment.anything import SegmentResult
from rs_sam.segment.settings import SegmentSettings
from rs_sam.vector.io import check_output_path, write_vectors
from rs_sam.vector.polygonize import polygonize_probability

COLUMNS = ["id", "class_id", "class_name", "area_m2", "score_mean", "geometry"]


@dataclass
class TrainedSegmentModel:
    """A UNetFormer rebuilt from a checkpoint written by ``rs-sam train segment``."""

    network: UNetFormer
    metadata: HeadMetadata
    class_table: ClassTable

    @torch.inference_mode()
    def probabilities(self, image: np.ndarray) -> np.ndarray:
        """(k, S, S) class probabilities of one (3, S, S) float32 0..255 chip."""
        device = next(self.network.parameters()).device
        logits = self.network(torch.from_numpy(image)[None].to(device))
        return torch.softmax(logits[0].float(), 0).cpu().numpy()


def load_segment_model(path: str | Path, *, device: torch.device) -> TrainedSegmentModel:
    """Rebuild the encoder named in the checkpoint, then UNetFormer, and load its weights.

    Raises:
        CheckpointError: not a segmentation model, no rs-sam metadata, or other encoder
            weights than the model was trained on.
    """
    metadata, hparams, state = read_head_checkpoint(path)
    if metadata.task != "segment" or metadata.class_table is None:
        raise CheckpointError(
            f"{path} is a '{metadata.task}' model; segment --model needs a segmentation model "
            "from `rs-sam train segment`"
        )
    table = ClassTable.from_config(metadata.class_table)
    sam = metadata.backbone == "sam"
    network = UNetFormer(
        rebuild_encoder(metadata, path) if sam else None,
        backbone=metadata.backbone,  # type: ignore[arg-type]
        num_classes=table.num_classes,
        decoder_channels=hparams.get("decoder_channels", 64),
        window_size=hparams.get("window_size", 8),
        num_heads=hparams.get("num_heads", 8),
        dropout=hparams.get("dropout", 0.1),
        adapter_reduction=hparams.get("adapter_reduction", 1),
        freeze_encoder=metadata.freeze_encoder,
        aux_head=hparams.get("aux_head", True),
        imagenet_weights=bool(hparams.get("imagenet_weights", False)) and not sam,
    )
    frozen_random = metadata.freeze_encoder and (not sam or metadata.encoder_weights == "random")
    encoder_state, weights = split_model_state(state, frozen_encoder=metadata.freeze_encoder)
    if encoder_state and frozen_random:  # a frozen encoder the registry cannot rebuild
        network.encoder.load_state_dict(encoder_state)
    network.load_head_state_dict(weights)
    network.eval()
    return TrainedSegmentModel(network.to(device), metadata, table)


def segment_semantic(
    image: DateInput,
    model: str | Path,
    output: str | Path,
    *,
    settings: SegmentSettings | None = None,
    save_classes: str | Path | None = None,
    save_probability: str | Path | None = None,
    overwrite: bool = False,
    show_progress: bool = True,
    on_progress: ProgressCallback | None = None,
) -> SegmentResult:
    """Land-cover style polygons of a raster with a trained segmentation model.

    Args:
        image: the raster.
        model: checkpoint from ``rs-sam train segment``.
        output: vector file with ``id``, ``class_id``, ``class_name``, ``area_m2``,
            ``score_mean`` (mean probability of the class over the polygon).
        settings: chip size (default the model's), overlap, device, min_area, simplify,
            bands, nodata.
        save_classes: optional uint8 class raster with the class colour table.
        save_probability: optional float32 raster of per-class probabilities.

    Raises:
        RsSamError: a subclass naming the problem and the fix; no output is left behind.
    """
    started = time.perf_counter()
    settings = settings or SegmentSettings()
    output = check_output_path(Path(output), overwrite=overwrite)
    classes_path = check_raster_output(save_classes, overwrite=overwrite, what="class raster")
    probability_path = check_raster_output(
        save_probability, overwrite=overwrite, what="probability raster"
    )
    trained = load_segment_model(model, device=resolve_device(settings.device))
    table = trained.class_table
    info = open_date(image)
    bands = select_bands([info], settings.bands or trained.metadata.bands)
    scene = Scene(info, bands=bands, nodata=settings.nodata)
    stretch = JointStretch.fit_scene(scene)
    chip_size, overlap = settings.tiling(trained.metadata.chip_size)
    windows = chip_windows(scene.grid, chip_size, overlap)

    def compute(window: ChipWindow) -> tuple[np.ndarray, np.ndarray]:
        chip = scene.read_chip(window)
        return trained.probabilities(stretch.apply(chip.image)), chip.valid

    with tempfile.TemporaryDirectory(prefix=".rs-sam-", dir=output.parent) as tmp:
        workdir = Path(tmp)
        with ProbabilityMosaic(
            scene.grid,
            chip_size=chip_size,
            overlap=overlap,
            workdir=workdir,
            bands=table.num_classes,
        ) as mosaic:
            run_chips(
                windows,
                compute,
                lambda window, result: mosaic.add(window, *result),
                show_progress=show_progress,
                description="segment",
                on_progress=on_progress,
            )
            probabilities = mosaic.finalize(workdir / "probability.tif")
        scores = write_class_scores(probabilities, workdir / "scores.tif")
        frames = []
        for class_id, name in enumerate(table.names):
            found = polygonize_probability(
                scores,
                band=class_id + 1,
                threshold=1e-9,  # a class's score is > 0 exactly where it wins
                min_area=settings.min_area,
                simplify=settings.simplify,
            )
            frames.append(found.assign(class_id=class_id, class_name=name))
        frame = gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), crs=scene.grid.crs)
        frame["id"] = np.arange(1, len(frame) + 1, dtype=np.int64)
        write_vectors(frame[COLUMNS], output, overwrite=overwrite)
        if classes_path is not None:
            write_class_raster(
                [probabilities], classes_path, descriptions=["class"], colormap=table.colormap()
            )
        if probability_path is not None:
            shutil.move(str(probabilities), probability_path)
    return SegmentResult(
        output=output,
        chips=len(windows),
        objects=len(frame),
        seconds=time.perf_counter() - started,
        megapixels=scene.grid.width * scene.grid.height / 1e6,
    )
