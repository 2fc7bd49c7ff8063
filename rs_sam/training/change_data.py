"""The ``data:`` section of a change-training config: sources, chips, augmentation, cache.

Each source is a mapping with a ``layout`` and that layout's dataset arguments:

- ``folder``: LEVIR-CD style ``A/ B/ label/`` (+ ``list/<split>.txt``), see
  :class:`~rs_sam.data.change_datasets.ChangeFolderDataset` (``root``, ``split``, ``pairs``).
- ``airchange``: SZTAKI AirChange pair folders (``root``, ``pairs``).
- ``geo``: georeferenced dates with a label raster on a's grid (``image_a``, ``image_b``,
  ``label``, ``nodata``), see :class:`~rs_sam.data.change_datasets.GeoChangeDataset`.
- ``levircd`` / ``oscd``: torchgeo's dataset classes on data already on disk (``root``,
  ``split``), chipped like the others.

Batches, augmentation and the feature cache are shared with segmentation
(:class:`~rs_sam.training.data_module.SourcesDataModule`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from torch.utils.data import Dataset

from rs_sam.data.augment import PairAugment
from rs_sam.data.change_datasets import (
    AirChangeDataset,
    ChangeFolderDataset,
    GeoChangeDataset,
    torchgeo_change_dataset,
)
from rs_sam.errors import ConfigError
from rs_sam.training.config import check_arguments
from rs_sam.training.data_module import SourcesDataModule

LAYOUTS: dict[str, Callable[..., Dataset[Any]]] = {
    "folder": ChangeFolderDataset,
    "airchange": AirChangeDataset,
    "geo": GeoChangeDataset,
    "levircd": torchgeo_change_dataset,
    "oscd": torchgeo_change_dataset,
}
#: Arguments the data module sets itself on every source.
_MANAGED = ("transforms", "chip_size", "overlap", "bands")


class ChangeDataModule(SourcesDataModule):
    """Training and validation chips for SAM-CD."""

    image_keys = ("image_a", "image_b")
    feature_keys = ("features_a", "features_b")

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
        super().__init__(
            train=train,
            val=val,
            chip_size=chip_size,
            overlap=overlap,
            bands=bands,
            batch_size=batch_size,
            num_workers=num_workers,
            augment=PairAugment(swap_dates=swap_dates) if augment else None,
            cache_features=cache_features,
            cache_dir=cache_dir,
        )

    def check_source(self, source: Mapping[str, Any], where: str) -> None:
        _check_source(source, where)

    def build_source(self, source: dict[str, Any], transforms: Any) -> Dataset[Any]:
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
