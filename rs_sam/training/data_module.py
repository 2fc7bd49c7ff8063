"""The part of a training config's ``data:`` section that every task shares.

A list of ``train`` and ``val`` sources (each a mapping with a ``layout`` and that
layout's dataset arguments), chips, batches, augmentation and the frozen-encoder feature
cache. Subclasses name their layouts and how a source becomes a dataset.

Several processes (the ranks of a multi-device run, or runs sharing a ``cache_dir``) fill a
cache key's folder once: the first to lock ``<key folder>/.fill.lock`` encodes the missing
samples, the others wait for the lock and then find every entry there (entries are written
atomically, so a reader never sees half of one). The lock is an OS file lock (``filelock``),
which a network file system shared by several nodes must support (NFSv4 and Lustre do).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import lightning
from filelock import FileLock, Timeout
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from rs_sam.errors import ConfigError
from rs_sam.models.encoders import FrozenEncoder
from rs_sam.training.distributed import is_rank_zero
from rs_sam.training.feature_cache import CachedFeatureDataset, FeatureCache, precompute

log = logging.getLogger(__name__)


class SourcesDataModule(lightning.LightningDataModule):
    """Training and validation chips from lists of sources, optionally with cached features.

    With ``cache_features`` the frozen encoder's maps of every (un-augmented) chip are
    computed once and stored under ``cache_dir`` (keyed by encoder, checkpoint hash, chip
    size, sources and normalisation); augmentation is then applied to images, labels and
    maps alike.
    """

    #: Sample keys of the images the encoder sees, and where their maps go.
    image_keys: ClassVar[tuple[str, ...]]
    feature_keys: ClassVar[tuple[str, ...]]

    def __init__(
        self,
        *,
        train: Sequence[Mapping[str, Any]],
        val: Sequence[Mapping[str, Any]],
        chip_size: int,
        overlap: int,
        bands: Sequence[int] | None,
        batch_size: int,
        num_workers: int,
        augment: Callable[[Any], Any] | None,
        cache_features: bool,
        cache_dir: str,
    ) -> None:
        super().__init__()
        if not train:
            raise ConfigError("data.train lists no source; add at least one (see configs/)")
        for where, sources in (("train", train), ("val", val)):
            for source in sources:
                self.check_source(source, where)
        self.train_sources, self.val_sources = list(train), list(val)
        self.chip_size, self.overlap = chip_size, overlap
        self.bands = tuple(bands) if bands else None
        self.batch_size, self.num_workers = batch_size, num_workers
        self.augment = augment
        self.cache_features, self.cache_dir = cache_features, Path(cache_dir)
        self.encoder: FrozenEncoder | None = None
        self.encoder_sha256: str | None = None
        self.train_set: Dataset[Any] | None = None
        self.val_set: Dataset[Any] | None = None

    def check_source(self, source: Mapping[str, Any], where: str) -> None:
        """Raise ConfigError for a source this module cannot build."""
        raise NotImplementedError

    def build_source(self, source: dict[str, Any], transforms: Any) -> Dataset[Any]:
        """The dataset of one source (``layout`` included in ``source``)."""
        raise NotImplementedError

    def attach_encoder(self, encoder: FrozenEncoder | None, *, encoder_sha256: str | None) -> None:
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
            self.build_source(dict(source), None if cached else transforms) for source in sources
        ]
        if not cached:
            return datasets[0] if len(datasets) == 1 else ConcatDataset(datasets)
        # Cache entries are found by sample name: names of different sources (e.g. the
        # same file names in two folders) are told apart by the source's position.
        combined: Dataset[Any] = (
            datasets[0]
            if len(datasets) == 1
            else ConcatDataset([_Renamed(d, f"{i}/") for i, d in enumerate(datasets)])
        )
        if self.encoder is None:
            raise ConfigError(
                "cache_features needs a frozen registry encoder; call attach_encoder() first "
                "(or set cache_features: false)"
            )
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
        with _filling(cache):
            encoded = precompute(
                combined, self.encoder, cache, image_keys=self.image_keys, progress=is_rank_zero()
            )
        log.info(
            "feature cache %s: %d of %d samples encoded by this process, the others were cached",
            cache.folder,
            encoded,
            len(combined),  # type: ignore[arg-type]
        )
        return CachedFeatureDataset(
            combined,
            cache,
            self.encoder,
            transforms=transforms,
            image_keys=self.image_keys,
            feature_keys=self.feature_keys,
        )


@contextmanager
def _filling(cache: FeatureCache) -> Iterator[None]:
    """Hold the lock of ``cache``'s key folder (waiting for whoever fills it now)."""
    lock = FileLock(cache.folder / ".fill.lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.info("waiting for another process to fill the feature cache %s", cache.folder)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


class _Renamed(Dataset[Any]):
    """Samples of ``dataset`` with ``prefix`` before their names."""

    def __init__(self, dataset: Dataset[Any], prefix: str) -> None:
        self.dataset, self.prefix = dataset, prefix
        self.normalisation = getattr(dataset, "normalisation", "")

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        sample = self.dataset[index]
        return {**sample, "name": self.prefix + sample["name"]}
