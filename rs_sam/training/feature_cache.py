"""Frozen-encoder features cached on disk, so epochs after the first skip the encoder.

The encoder is frozen, so the features of an un-augmented sample never change during
training: :func:`precompute` runs the encoder once over a dataset and
:class:`CachedFeatureDataset` returns each sample with its cached maps. Flips and quarter
turns are applied afterwards, to images, mask and maps alike (see
:class:`~rs_sam.data.augment.PairAugment`), which is why the wrapped dataset must not
augment by itself.

Cache layout: ``root/<key>/`` with one ``<sample id>-<hash>.pt`` per sample and a
``meta.json`` describing the key. The key is the sha256 of everything the features depend
on (encoder name, checkpoint sha256, model input size, chip size, image normalisation,
storage dtype, an optional dataset id, cache format): change any of them and the cache
goes to another folder, so a stale entry is never read. Each entry also records the key
and sample id it was written for and is checked against both on reading.

Entries are ``torch.save`` files of plain tensors, strings and lists, read back with
``torch.load(weights_only=True)``; they are written to a temporary file in the same folder
and moved into place with ``os.replace``, so a reader sees a whole entry or none. An entry
that cannot be read (truncated by a crash, damaged) is reported with a warning and treated
as missing, i.e. recomputed.

Disk use per pair is ``2 * sum(C_i * (S / s_i)^2)`` values at model input ``S``: for
MobileSAM at ``S = 1024`` about 63 MB in float32 (half that with ``half=True``), for SAM
ViT-B about 0.5 GB; choose chips, encoders and ``half`` accordingly.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from rs_sam.checkpoints import TORCH_LOAD_ERRORS
from rs_sam.data.change_datasets import ChangeSample
from rs_sam.errors import ConfigError, RsSamError

#: Bumped whenever the entry layout changes; part of the key.
CACHE_FORMAT = 1
_SHA256 = re.compile(r"[0-9a-f]{64}")


class FeatureCacheMissError(RsSamError, LookupError):
    """A sample has no usable cached features and no encoder was given to compute them."""


class FeatureCacheWarning(UserWarning):
    """A cache entry could not be used (damaged or written for another key) and is ignored."""


class FeaturePyramidEncoder(Protocol):
    """What the cache needs of an encoder (a :class:`~rs_sam.models.encoders.FrozenEncoder`)."""

    def __call__(self, images: Tensor) -> Any:
        """``(B, 3, S, S)`` RGB 0..255 -> an object whose ``features`` is a list of maps."""
        ...


class FeatureCache:
    """Encoder features of sample pairs on disk, keyed by everything they depend on.

    Args:
        root: Cache folder (created); each key gets its own sub-folder.
        encoder_name: Registry name of the encoder (e.g. ``"mobile_sam"``).
        checkpoint_sha256: sha256 of the weights file (lower-case hex), or None for random
            weights, which is only safe when the encoder is built deterministically (tests).
        input_size: Side of the model input the chips are resized to.
        chip_size: Side of the chips fed to the encoder.
        normalisation: How pixels were scaled (a dataset's ``normalisation`` attribute).
        half: Store float16 (half the disk); :meth:`get` always returns float32.
        dataset_id: What identifies the data (e.g. its root folders). Entries are found by
            sample name (file name plus chip offsets), so two datasets that reuse names
            under one cache root need different ids, or different roots.

    Attributes:
        key: Hex sha256 of the fields above (and the cache format).
        folder: ``root / key``.

    Raises:
        ConfigError: A field has an invalid value.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        encoder_name: str,
        checkpoint_sha256: str | None,
        input_size: int,
        chip_size: int,
        normalisation: str,
        half: bool = False,
        dataset_id: str = "",
    ) -> None:
        if not isinstance(encoder_name, str) or not encoder_name:
            raise ConfigError(f"encoder_name={encoder_name!r} is invalid; pass the registry name")
        if checkpoint_sha256 is not None and not _SHA256.fullmatch(str(checkpoint_sha256)):
            raise ConfigError(
                f"checkpoint_sha256={checkpoint_sha256!r} is not a lower-case hex sha256; "
                "use rs_sam.checkpoints.file_sha256(path), or None for random weights"
            )
        for name, value in (("input_size", input_size), ("chip_size", chip_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name}={value!r} is invalid; use a positive integer")
        if not isinstance(normalisation, str) or not normalisation:
            raise ConfigError(
                f"normalisation={normalisation!r} is invalid; describe the pixel scaling "
                "(e.g. the dataset's normalisation attribute)"
            )
        self.fields: dict[str, Any] = {
            "format": CACHE_FORMAT,
            "encoder_name": encoder_name,
            "checkpoint_sha256": checkpoint_sha256,
            "input_size": input_size,
            "chip_size": chip_size,
            "normalisation": normalisation,
            "dtype": "float16" if half else "float32",
            "dataset_id": str(dataset_id),
        }
        self.half = half
        self.key = hashlib.sha256(json.dumps(self.fields, sort_keys=True).encode()).hexdigest()
        self.root = Path(root)
        self.folder = self.root / self.key
        self.folder.mkdir(parents=True, exist_ok=True)
        meta = self.folder / "meta.json"
        if not meta.exists():
            _atomic_write(meta, lambda f: f.write(json.dumps(self.fields, indent=2).encode()))

    @classmethod
    def for_encoder(
        cls,
        root: str | Path,
        encoder: Any,
        *,
        checkpoint_sha256: str | None,
        chip_size: int,
        normalisation: str,
        half: bool = False,
        dataset_id: str = "",
    ) -> FeatureCache:
        """A cache for a :class:`~rs_sam.models.encoders.FrozenEncoder` (name and input size)."""
        return cls(
            root,
            encoder_name=encoder.spec.name,
            checkpoint_sha256=checkpoint_sha256,
            input_size=encoder.input_size,
            chip_size=chip_size,
            normalisation=normalisation,
            half=half,
            dataset_id=dataset_id,
        )

    def __repr__(self) -> str:
        return f"FeatureCache({str(self.folder)!r})"

    def path(self, sample_id: str) -> Path:
        """The entry file of ``sample_id`` (readable name plus a hash, so ids may hold ``/``)."""
        readable = re.sub(r"[^A-Za-z0-9._-]+", "_", sample_id)[:80]
        digest = hashlib.sha256(sample_id.encode()).hexdigest()[:16]
        return self.folder / f"{readable}-{digest}.pt"

    def __contains__(self, sample_id: object) -> bool:
        """Whether an entry file exists (not whether it is readable: see :meth:`get`)."""
        return isinstance(sample_id, str) and self.path(sample_id).is_file()

    def get(self, sample_id: str) -> tuple[list[Tensor], list[Tensor]] | None:
        """The cached maps of dates a and b, float32 on the CPU, or None.

        None when there is no entry, or the entry is damaged or was written for another key
        or sample (a :class:`FeatureCacheWarning` says which): the caller recomputes it.
        """
        path = self.path(sample_id)
        if not path.is_file():
            return None
        try:
            entry = torch.load(path, map_location="cpu", weights_only=True)
        except TORCH_LOAD_ERRORS as err:
            _warn_unusable(path, f"unreadable ({type(err).__name__})")
            return None
        problem = _entry_problem(entry, self.key, sample_id)
        if problem:
            _warn_unusable(path, problem)
            return None
        return (
            [t.float() for t in entry["features_a"]],
            [t.float() for t in entry["features_b"]],
        )

    def put(
        self, sample_id: str, features_a: Sequence[Tensor], features_b: Sequence[Tensor]
    ) -> None:
        """Store the maps of both dates (lists of ``(C_i, h_i, w_i)``), atomically.

        Tensors are copied to the CPU in the storage dtype (views of a batch are stored
        alone, not with the batch's whole storage).

        Raises:
            ConfigError: The lists are empty, of different lengths, or shapes differ
                between the dates.
        """
        _check_features(sample_id, features_a, features_b)
        dtype = torch.float16 if self.half else torch.float32

        def compact(t: Tensor) -> Tensor:
            return t.detach().to("cpu", dtype).clone(memory_format=torch.contiguous_format)

        entry = {
            "key": self.key,
            "sample_id": sample_id,
            "features_a": [compact(t) for t in features_a],
            "features_b": [compact(t) for t in features_b],
        }
        _atomic_write(self.path(sample_id), lambda f: torch.save(entry, f))


def precompute(
    dataset: Dataset[ChangeSample],
    encoder: FeaturePyramidEncoder,
    cache: FeatureCache,
    *,
    batch_size: int = 8,
    num_workers: int = 0,
    progress: bool = True,
    overwrite: bool = False,
) -> int:
    """Fill ``cache`` with the encoder's maps of both dates of every sample.

    Samples already cached (and readable) are skipped unless ``overwrite``. Both dates of
    up to ``batch_size`` samples go through the encoder in one batch of ``2 * batch_size``.

    Args:
        dataset: Un-augmented samples with unique ``name`` s (the cache's sample ids).
        encoder: Frozen encoder; images are moved to its device by the encoder.
        cache: Where the maps go.
        batch_size: Pairs per encoder call.
        num_workers: DataLoader workers reading samples.
        progress: Show a progress bar.
        overwrite: Recompute entries that exist.

    Returns:
        The number of samples encoded (not counting skipped ones).

    Raises:
        ConfigError: The dataset augments its samples, a name repeats, or a bad
            ``batch_size``.
    """
    from tqdm.auto import tqdm

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size={batch_size!r} is invalid; use a positive integer")
    _refuse_augmenting(dataset)
    loader = DataLoader(
        dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=_as_list
    )
    seen: set[str] = set()
    done = 0
    with tqdm(
        total=len(dataset),  # type: ignore[arg-type]
        desc="caching features",
        unit="pair",
        disable=not progress,
    ) as bar:
        for batch in loader:
            todo = []
            for sample in batch:
                name = sample["name"]
                if name in seen:
                    raise ConfigError(
                        f"the dataset yields the sample name {name!r} twice; cache entries are "
                        "keyed by name, so names must be unique"
                    )
                seen.add(name)
                if overwrite or cache.get(name) is None:
                    todo.append(sample)
            for features_a, features_b, sample in _encode_pairs(encoder, todo):
                cache.put(sample["name"], features_a, features_b)
            done += len(todo)
            bar.update(len(batch))
    return done


class CachedFeatureDataset(Dataset[ChangeSample]):
    """Samples of ``dataset`` with ``features_a``/``features_b`` read from ``cache``.

    Args:
        dataset: Un-augmented samples (its own ``transforms`` must be None).
        cache: The filled cache (see :func:`precompute`).
        encoder: Used to compute (and store) a missing or damaged entry; without it such an
            entry raises :class:`FeatureCacheMissError`.
        transforms: Applied after the features are attached (e.g. ``PairAugment``), so
            images, mask and maps get the same transform.

    Raises:
        ConfigError: ``dataset`` applies transforms itself.
    """

    def __init__(
        self,
        dataset: Dataset[ChangeSample],
        cache: FeatureCache,
        encoder: FeaturePyramidEncoder | None = None,
        *,
        transforms: Any = None,
    ) -> None:
        _refuse_augmenting(dataset)
        self.dataset = dataset
        self.cache = cache
        self.encoder = encoder
        self.transforms = transforms

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> ChangeSample:
        """The sample with ``features_a``/``features_b``: lists of ``(C_i, h_i, w_i)`` float32."""
        sample = self.dataset[index]
        name = sample["name"]
        cached = self.cache.get(name)
        if cached is None:
            if self.encoder is None:
                raise FeatureCacheMissError(
                    f"no usable cached features for sample {name!r} in {self.cache.folder}; run "
                    "precompute(dataset, encoder, cache) first, or pass encoder= to compute them"
                )
            ((features_a, features_b, _),) = _encode_pairs(self.encoder, [sample])
            self.cache.put(name, features_a, features_b)
            cached = self.cache.get(name)
            if cached is None:  # pragma: no cover - the entry was just written
                cached = (
                    [f.float().cpu() for f in features_a],
                    [f.float().cpu() for f in features_b],
                )
        out: ChangeSample = {**sample, "features_a": cached[0], "features_b": cached[1]}
        return self.transforms(out) if self.transforms is not None else out


# ---------------------------------------------------------------------------- helpers
def _encode_pairs(
    encoder: FeaturePyramidEncoder, samples: Sequence[ChangeSample]
) -> list[tuple[list[Tensor], list[Tensor], ChangeSample]]:
    """Maps of both dates of each sample; samples of one image size share a batch."""
    groups: dict[tuple[int, ...], list[ChangeSample]] = {}
    for sample in samples:
        groups.setdefault(tuple(sample["image_a"].shape), []).append(sample)
    results = []
    for group in groups.values():
        n = len(group)
        images = torch.stack([s["image_a"] for s in group] + [s["image_b"] for s in group])
        maps = encoder(images).features
        for j, sample in enumerate(group):
            results.append(([m[j] for m in maps], [m[n + j] for m in maps], sample))
    return results


def _refuse_augmenting(dataset: object) -> None:
    if getattr(dataset, "transforms", None) is not None:
        raise ConfigError(
            f"{type(dataset).__name__} applies transforms before the features are cached, so "
            "cached maps would not match the images; build it with transforms=None and pass "
            "the transforms to CachedFeatureDataset(transforms=...)"
        )


def _check_features(
    sample_id: str, features_a: Sequence[Tensor], features_b: Sequence[Tensor]
) -> None:
    if not isinstance(sample_id, str) or not sample_id:
        raise ConfigError(f"sample_id={sample_id!r} is invalid; use the sample's name")
    if not features_a or len(features_a) != len(features_b):
        raise ConfigError(
            f"features of {sample_id!r} are {len(features_a)} maps for date a and "
            f"{len(features_b)} for b; pass the same non-empty list of maps for both"
        )
    for level, (a, b) in enumerate(zip(features_a, features_b, strict=True)):
        if not isinstance(a, Tensor) or not isinstance(b, Tensor) or a.shape != b.shape:
            raise ConfigError(
                f"feature map {level} of {sample_id!r} differs between the dates "
                f"({_shape(a)} vs {_shape(b)}); pass maps of one encoder call"
            )


def _entry_problem(entry: Any, key: str, sample_id: str) -> str | None:
    """Why a loaded entry cannot be used, or None."""
    if not isinstance(entry, dict) or not {"key", "sample_id", "features_a", "features_b"} <= set(
        entry
    ):
        return "not a feature-cache entry"
    if entry["key"] != key:
        return "written for another cache key"
    if entry["sample_id"] != sample_id:
        return f"written for sample {entry['sample_id']!r}"
    a, b = entry["features_a"], entry["features_b"]
    if (
        not isinstance(a, list)
        or not isinstance(b, list)
        or not a
        or len(a) != len(b)
        or not all(isinstance(t, Tensor) for t in (*a, *b))
    ):
        return "malformed (feature lists)"
    return None


def _warn_unusable(path: Path, why: str) -> None:
    warnings.warn(
        FeatureCacheWarning(f"cached features {path} are {why}; recomputing them"),
        stacklevel=3,
    )


def _atomic_write(path: Path, write: Any) -> None:
    """Write ``path`` through a temporary file in its folder and ``os.replace``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            write(file)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _as_list(batch: list[ChangeSample]) -> list[ChangeSample]:
    return batch


def _shape(value: object) -> object:
    return tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
