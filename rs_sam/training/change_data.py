"""The ``data:`` section of a change-training config: sources, chips, augmentation, cache.

Each source is a mapping with a ``layout`` and that layout's dataset arguments:

- ``folder``: LEVIR-CD style ``A/ B/ label/`` (+ ``list/<split>.txt``), see
  :class:`~rs_sam.data.change_datasets.ChangeFolderDataset` (``root``, ``split``, ``pairs``).
- ``airchange``: SZTAKI AirChange pair folders (``root``, ``pairs``).
- ``geo``: georeferenced dates with a label raster on a's grid (``image_a``, ``image_b``,
  ``label``, ``nodata``), see :class:`~rs_sam.data.change_datasets.GeoChangeDataset`.
- ``levircd`` / ``oscd``: torchgeo's dataset classes on data already on disk (``root``,
  ``split``), chipped like the others.

With ``cache_features``, the frozen encoder's maps of every (un-augmented) chip are
computed once and stored under ``cache_dir`` (keyed by encoder, checkpoint hash, chip
size and normalisation); augmentation is then applied to images, label and maps alike.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from rs_sam.data.augment import PairAugment
from rs_sam.data.change_datasets import (
    AirChangeDataset,
    ChangeFolderDataset,
    GeoChangeDataset,
    torchgeo_change_dataset,
)
from rs_sam.errors import ConfigError
from rs_sam.models.encoders import FrozenEncoder
from rs_sam.training.config import check_arguments
from rs_sam.training.feature_cache import CachedFeatureDataset, FeatureCache, precompute

LAYOUTS: dict[str, Callable[..., Dataset[Any]]] = {
    "folder": ChangeFolderDataset,
    "airchange": AirChangeDataset,
    "geo": GeoChangeDataset,
    "levircd": torchgeo_change_dataset,
    "oscd": torchgeo_change_dataset,
}
#: Arguments the data module sets itself on every source.
_MANAGED = ("transforms", "chip_size", "overlap", "bands")


class ChangeDataModule(lightning.LightningDataModule):
    """Training and validation chips for SAM-CD."""

    def __init__(
        self,
        *,
        train: Sequence[Mapping[str, Any]],
        val: Sequence[Mapping[str, Any]] = (),
        chip_size: int = 256,
        overlap: int = 0,
        bands: Sequence[int] | None = None,
        batch_size: int = 4,
        num_workers: int = 0,
        augment: bool = True,
        swap_dates: bool = False,
        cache_features: bool = False,
        cache_dir: str = "runs/feature-cache",
    ) -> None:
        """Describe the data; datasets are built in :meth:`setup`.

        Args:
            train, val: lists of sources (see the module docstring).
            chip_size, overlap: chips cut from every pair (pixels).
            bands: 1-based bands of multi-band images (default 1, 2, 3).
            augment: flips and 90-degree rotations, identical on both dates and the label.
            swap_dates: also exchange the dates at random (binary change is symmetric).
            cache_features: cache the frozen encoder's maps (see the module docstring).
        """
        super().__init__()
        if not train:
            raise ConfigError("data.train lists no source; add at least one (see configs/change)")
        for where, sources in (("train", train), ("val", val)):
            for source in sources:
                _check_source(source, where)
        self.train_sources, self.val_sources = list(train), list(val)
        self.chip_size, self.overlap = chip_size, overlap
        self.bands = tuple(bands) if bands else None
        self.batch_size, self.num_workers = batch_size, num_workers
        self.augment = PairAugment(swap_dates=swap_dates) if augment else None
        self.cache_features, self.cache_dir = cache_features, Path(cache_dir)
        self.encoder: FrozenEncoder | None = None
        self.encoder_sha256: str | None = None
        self.train_set: Dataset[Any] | None = None
        self.val_set: Dataset[Any] | None = None

    def attach_encoder(self, encoder: FrozenEncoder, *, encoder_sha256: str | None) -> None:
        """The frozen encoder whose maps are cached (needed when ``cache_features``)."""
        self.encoder, self.encoder_sha256 = encoder, encoder_sha256

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            self.train_set = self._build(self.train_sources, self.augment)
        if self.val_set is None and self.val_sources:
            self.val_set = self._build(self.val_sources, None)

    def train_dataloader(self) -> DataLoader[Any]:
        return DataLoader(
            self.train_set,  # type: ignore[arg-type]
            batch_size=self.batch_size,
            shuffle=True,
            num_workers=self.num_workers,
        )

    def val_dataloader(self) -> DataLoader[Any]:
        if self.val_set is None:
            return DataLoader([])  # type: ignore[arg-type]
        return DataLoader(
            self.val_set, batch_size=self.batch_size, shuffle=False, num_workers=self.num_workers
        )

    def _build(self, sources: Sequence[Mapping[str, Any]], transforms: Any) -> Dataset[Any]:
        cached = self.cache_features
        datasets = [
            self._source(dict(source), None if cached else transforms) for source in sources
        ]
        combined: Dataset[Any] = datasets[0] if len(datasets) == 1 else ConcatDataset(datasets)
        if not cached:
            return combined
        if self.encoder is None:
            raise ConfigError("cache_features needs the encoder; call attach_encoder() first")
        # Entries are keyed by sample name inside a folder keyed by everything that shapes
        # the features: encoder and weights, chips, the sources and their normalisation.
        identity = {"sources": list(sources), "overlap": self.overlap, "bands": self.bands}
        cache = FeatureCache.for_encoder(
            self.cache_dir,
            self.encoder,
            checkpoint_sha256=self.encoder_sha256,
            chip_size=self.chip_size,
            normalisation="; ".join(sorted({getattr(d, "normalisation", "") for d in datasets})),
            dataset_id=json.dumps(identity, sort_keys=True, default=str),
        )
        precompute(combined, self.encoder, cache)
        return CachedFeatureDataset(combined, cache, self.encoder, transforms=transforms)

    def _source(self, source: dict[str, Any], transforms: Any) -> Dataset[Any]:
        layout = source.pop("layout")
        common: dict[str, Any] = {
            "transforms": transforms,
            "chip_size": self.chip_size,
            "overlap": self.overlap,
        }
        if layout in ("levircd", "oscd"):
            if self.bands is not None:
                raise ConfigError(
                    f"data.bands is set but torchgeo's {layout} reads its own RGB bands; "
                    "remove data.bands or use the folder/geo layouts"
                )
            return torchgeo_change_dataset(layout, **source, **common)
        return LAYOUTS[layout](**source, **common, bands=self.bands)


def _check_source(source: Mapping[str, Any], where: str) -> None:
    layout = source.get("layout")
    if layout not in LAYOUTS:
        raise ConfigError(
            f"data.{where} source {dict(source)} needs 'layout' set to one of {', '.join(LAYOUTS)}"
        )
    arguments = {k: v for k, v in source.items() if k != "layout"}
    managed = sorted(set(arguments) & set(_MANAGED))
    if managed:
        raise ConfigError(
            f"data.{where} source sets {', '.join(managed)}, which the data section sets for "
            "every source; move them up to 'data'"
        )
    if layout in ("levircd", "oscd") and "name" in arguments:  # the layout names the dataset
        raise ConfigError(f"data.{where} ({layout}): 'name' is set by 'layout'; remove it")
    check_arguments(LAYOUTS[layout], arguments, f"data.{where} ({layout})")
