"""The SZTAKI AirChange layout: one folder per pair holding ``im1``, ``im2`` and ``gt``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rs_sam.data.change_datasets.pair_files import PairFileDataset, PairFiles, checked_pair
from rs_sam.data.change_datasets.samples import ChangeDatasetNotFoundError, SampleTransform
from rs_sam.data.discovery import list_images
from rs_sam.data.image_files import format_list
from rs_sam.data.normalize import PERCENTILES


class AirChangeDataset(PairFileDataset):
    """SZTAKI AirChange: one folder per pair with ``im1``, ``im2`` and ``gt`` images.

    Pair folders are found anywhere below ``root`` (``Szada/1`` ... ``Szada/7``,
    ``Tiszadob/1`` ... ``Tiszadob/5``, ``Archieve``); file names match in any case
    (``im2.BMP``). The hand-drawn ``gt`` has stray grey values, so change is ``gt > 127``.
    Images are 952 x 640 (one 1048 x 724): pass ``chip_size`` to batch them.

    Args:
        root: Folder holding the pair folders.
        pairs: Pair names (folders relative to ``root``, e.g. ``"Szada/1"``); default all.
        transforms, chip_size, overlap, bands, percentiles: As in
            :class:`~rs_sam.data.change_datasets.ChangeFolderDataset`.
        label_threshold: Grey level above which ``gt`` is change.

    Raises:
        ChangeDatasetNotFoundError: ``root`` is missing, holds no pair folder, or a
            requested pair does not exist (the message lists the available ones).
        ChangeDatasetError: Images and label of one pair have different sizes.
    """

    stems = ("im1", "im2", "gt")

    def __init__(
        self,
        root: str | Path,
        *,
        pairs: Sequence[str] | None = None,
        transforms: SampleTransform | None = None,
        chip_size: int | None = None,
        overlap: int = 0,
        bands: Sequence[int] | None = None,
        percentiles: tuple[float, float] = PERCENTILES,
        label_threshold: int = 127,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise ChangeDatasetNotFoundError(
                f"folder {self.root} does not exist; pass the AirChange root (with Szada/, "
                "Tiszadob/...)"
            )
        found = self._discover()
        if not found:
            raise ChangeDatasetNotFoundError(
                f"no pair folder (with {', '.join(self.stems)} images) below {self.root}; "
                "pass the AirChange root"
            )
        if pairs is None:
            names = sorted(found)
        else:
            names = list(pairs)
            missing = [n for n in names if n not in found]
            if missing or not names:
                raise ChangeDatasetNotFoundError(
                    f"pairs {missing or names} not found below {self.root}; available: "
                    f"{format_list(sorted(found))}"
                )
        super().__init__(
            [found[n] for n in names],
            transforms=transforms,
            chip_size=chip_size,
            overlap=overlap,
            bands=bands,
            percentiles=percentiles,
            label_threshold=label_threshold,
        )
        self.normalisation += f"; label > {label_threshold}"

    def _discover(self) -> dict[str, PairFiles]:
        found: dict[str, PairFiles] = {}
        for folder in sorted({p.parent for p in self.root.rglob("*") if p.is_file()}):
            files = {p.stem.lower(): p for p in list_images(folder)}
            if not all(stem in files for stem in self.stems):
                continue
            name = folder.relative_to(self.root).as_posix()
            name = self.root.name if name == "." else name
            im1, im2, gt = (files[s] for s in self.stems)
            found[name] = checked_pair(name, im1, im2, gt)
        return found
