"""The ``data:`` section of a segmentation-training config: class table, sources, chips.

``classes`` is the class table (see :class:`~rs_sam.data.class_table.ClassTable`); each
source is a mapping with a ``layout`` and that layout's dataset arguments:

- ``folders``: one image folder and one label folder (``images``, ``labels``, ``names``,
  ``objects``, ``boundaries``, ``recursive``), see
  :class:`~rs_sam.data.segment_datasets.SegmentFolderDataset`.
- ``tree``: every ``image_dir`` folder below ``root`` with its sibling ``label_dir``
  (Dubai: ``Tile N/images`` + ``Tile N/masks``; mmsegmentation: ``img_dir`` + ``ann_dir``),
  plus ``names``, ``objects``, ``boundaries``.
- ``raster``: a georeferenced image with a label raster on its grid (``image``, ``label``,
  ``objects``, ``boundaries``, ``nodata``), read by windows.

``objects``/``boundaries`` are SAM object and boundary maps (``rs-sam sam-objects``), or
any other object map (e.g. superpixels), for the SSRS losses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch.utils.data import Dataset

from rs_sam.data.class_table import ClassTable
from rs_sam.data.segment_augment import SegmentAugment
from rs_sam.data.segment_datasets import SegmentFolderDataset, SegmentRasterDataset
from rs_sam.errors import ConfigError
from rs_sam.training.config import check_arguments
from rs_sam.training.data_module import SourcesDataModule

LAYOUTS = {
    "folders": SegmentFolderDataset,
    "tree": SegmentFolderDataset.from_root,
    "raster": SegmentRasterDataset,
}
#: Arguments the data module sets itself on every source.
_MANAGED = ("transforms", "chip_size", "overlap", "bands", "class_table")


class SegmentDataModule(SourcesDataModule):
    """Training and validation chips for semantic segmentation."""

    image_keys = ("image",)
    feature_keys = ("features",)

    def __init__(
        self,
        *,
        classes: Mapping[str, Any],
        train: Sequence[Mapping[str, Any]],
        val: Sequence[Mapping[str, Any]] = (),
        chip_size: int = 512,
        overlap: int = 0,
        bands: Sequence[int] | None = None,
        batch_size: int = 4,
        num_workers: int = 0,
        augment: bool = True,
        cache_features: bool = False,
        cache_dir: str = "runs/feature-cache",
    ) -> None:
        """Describe the data; datasets are built in :meth:`setup`.

        Args:
            classes: the class table (names, colours or ids, ignore values).
            train, val: lists of sources (see the module docstring).
            chip_size, overlap: chips cut from every image (pixels).
            bands: 1-based bands of multi-band images (default 1, 2, 3).
            augment: flips and 90-degree rotations, identical on image, label and maps.
            cache_features: cache the frozen encoder's maps (SAM backbone only).
        """
        self.class_table = ClassTable.from_config(classes)
        super().__init__(
            train=train,
            val=val,
            chip_size=chip_size,
            overlap=overlap,
            bands=bands,
            batch_size=batch_size,
            num_workers=num_workers,
            augment=SegmentAugment() if augment else None,
            cache_features=cache_features,
            cache_dir=cache_dir,
        )

    def check_source(self, source: Mapping[str, Any], where: str) -> None:
        layout = source.get("layout")
        if layout not in LAYOUTS:
            raise ConfigError(
                f"data.{where} source {dict(source)} needs 'layout' set to one of "
                f"{', '.join(LAYOUTS)}"
            )
        arguments = {k: v for k, v in source.items() if k != "layout"}
        managed = sorted(set(arguments) & set(_MANAGED))
        if managed:
            raise ConfigError(
                f"data.{where} source sets {', '.join(managed)}, which the data section sets "
                "for every source; move them up to 'data'"
            )
        target: Any = LAYOUTS[layout]
        if layout == "tree":  # from_root's own arguments, then the constructor's
            if "root" not in arguments:
                raise ConfigError(f"data.{where} (tree) needs 'root', the folder to search")
            target = SegmentFolderDataset
            own = ("root", "image_dir", "label_dir")
            arguments = {k: v for k, v in arguments.items() if k not in own}
        check_arguments(target, arguments, f"data.{where} ({layout})")

    def build_source(self, source: dict[str, Any], transforms: Any) -> Dataset[Any]:
        layout = source.pop("layout")
        return LAYOUTS[layout](  # type: ignore[operator]
            **source,
            class_table=self.class_table,
            chip_size=self.chip_size,
            overlap=self.overlap,
            bands=self.bands,
            transforms=transforms,
        )
