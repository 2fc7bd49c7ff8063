"""Frozen-encoder features cached on disk, so epochs after the first skip the encoder.

The encoder is frozen, so the features of an un-augmented sample never change during
training: :func:`precompute` runs the encoder once over a dataset and
:class:`CachedFeatureDataset` returns each sample with its cached maps. A sample holds any
number of images, named by ``image_keys``: two dates for change detection (``image_a``,
``image_b`` -> ``features_a``, ``features_b``, the defaults), one image for segmentation
(``image`` -> ``features``). Flips and quarter turns are applied afterwards, to images, mask
and maps alike (e.g. :class:`~rs_sam.data.augment.PairAugment`), which is why the wrapped
dataset must not augment by itself.

Cache layout: ``root/<key>/`` with one ``<sample id>-<hash>.pt`` per sample and a
``meta.json`` describing the key. The key is the sha256 of everything the features depend
on (encoder name, checkpoint sha256, model input size, chip size, image normalisation,
storage dtype, an optional dataset id, cache format): change any of them and the cache
goes to another folder, so a stale entry is never read. Each entry also records the key
and sample id it was written for and is checked against both on reading.

Entries are ``torch.save`` files of plain tensors, strings and lists (``{"key",
"sample_id", "features"}``, ``features`` holding one list of maps per image), read back with
``torch.load(weights_only=True)``; they are written to a temporary file in the same folder
and moved into place with ``os.replace``, so a reader sees a whole entry or none. An entry
that cannot be read (truncated by a crash, damaged) is reported with a warning and treated
as missing, i.e. recomputed.

Disk use per sample is ``n * sum(C_i * (S / s_i)^2)`` values for ``n`` images per sample
at model input ``S``: per image, for MobileSAM at ``S = 1024`` about 32 MB in float32 (half
that with ``half=True``), for SAM ViT-B about 0.25 GB; a change pair takes twice that.
Choose chips, encoders and ``half`` accordingly.
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
from rs_sam.errors import ConfigError, RsSamError

#: Bumped whenever the entry layout changes; part of the key. 2: one list of maps per image
#: (``features``) instead of the two dates' ``features_a``/``features_b`` of format 1.
CACHE_FORMAT = 2
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
    """Encoder features of samples (one or more images each) on disk, keyed by everything
    they depend on.

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

    def get(self, sample_id: str, *, images: int | None = None) -> list[list[Tensor]] | None:
        """The cached maps, one list per image of the sample, float32 on the CPU, or None.

        None when there is no entry, or the entry is damaged, was written for another key
        or sample, or holds another number of images than ``images`` (when given); a
        :class:`FeatureCacheWarning` says which, and the caller recomputes it.
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
        if problem is None and images is not None and len(entry["features"]) != images:
            problem = f"maps of {len(entry['features'])} images where {images} are expected"
        if problem:
            _warn_unusable(path, problem)
            return None
        return [[t.float() for t in maps] for maps in entry["features"]]

    def put(self, sample_id: str, features: Sequence[Sequence[Tensor]]) -> None:
        """Store one list of maps ``(C_i, h_i, w_i)`` per image of the sample, atomically.

        Tensors are copied to the CPU in the storage dtype (views of a batch are stored
        alone, not with the batch's whole storage).

        Raises:
            ConfigError: No images or no maps, or the images differ in their number of
                maps or in a map's shape.
        """
        _check_features(sample_id, features)
        dtype = torch.float16 if self.half else torch.float32

        def compact(t: Tensor) -> Tensor:
            return t.detach().to("cpu", dtype).clone(memory_format=torch.contiguous_format)

        entry = {
            "key": self.key,
            "sample_id": sample_id,
            "features": [[compact(t) for t in maps] for maps in features],
        }
        _atomic_write(self.path(sample_id), lambda f: torch.save(entry, f))


def precompute(
    dataset: Dataset[Any],
    encoder: FeaturePyramidEncoder,
    cache: FeatureCache,
    *,
    image_keys: Sequence[str] = ("image_a", "image_b"),
    batch_size: int = 8,
    num_workers: int = 0,
    progress: bool = True,
    overwrite: bool = False,
) -> int:
    """Fill ``cache`` with the encoder's maps of every image of every sample.

    Samples already cached (and readable, with as many images as ``image_keys``) are
    skipped unless ``overwrite``. All images of up to ``batch_size`` samples go through the
    encoder in one call (one call per image shape when shapes differ).

    Args:
        dataset: Un-augmented samples with unique ``name`` s (the cache's sample ids).
        encoder: Frozen encoder; images are moved to its device by the encoder.
        cache: Where the maps go.
        image_keys: The sample's images, in the order they are stored: ``("image_a",
            "image_b")`` for change pairs, ``("image",)`` for segmentation.
        batch_size: Samples per encoder call.
        num_workers: DataLoader workers reading samples.
        progress: Show a progress bar.
        overwrite: Recompute entries that exist.

    Returns:
        The number of samples encoded (not counting skipped ones).

    Raises:
        ConfigError: The dataset augments its samples, a name repeats, a sample lacks an
            image key, bad ``image_keys`` or a bad ``batch_size``.
    """
    from tqdm.auto import tqdm

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size={batch_size!r} is invalid; use a positive integer")
    image_keys = _check_keys("image_keys", image_keys)
    _refuse_augmenting(dataset)
    loader = DataLoader(
        dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=_as_list
    )
    seen: set[str] = set()
    done = 0
    with tqdm(
        total=len(dataset),  # type: ignore[arg-type]
        desc="caching features",
        unit="sample",
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
                if overwrite or cache.get(name, images=len(image_keys)) is None:
                    todo.append(sample)
            for sample, features in zip(todo, _encode(encoder, todo, image_keys), strict=True):
                cache.put(sample["name"], features)
            done += len(todo)
            bar.update(len(batch))
    return done


class CachedFeatureDataset(Dataset[Any]):
    """Samples of ``dataset`` with the maps of each image read from ``cache``.

    ``sample[feature_keys[i]]`` is the list of maps ``(C_i, h_i, w_i)`` (float32) of
    ``sample[image_keys[i]]``.

    Args:
        dataset: Un-augmented samples (its own ``transforms`` must be None).
        cache: The filled cache (see :func:`precompute`, with the same ``image_keys``).
        encoder: Used to compute (and store) a missing or damaged entry; without it such an
            entry raises :class:`FeatureCacheMissError`.
        transforms: Applied after the features are attached (e.g. ``PairAugment``), so
            images, mask and maps get the same transform.
        image_keys: The sample's images: ``("image_a", "image_b")`` for change pairs,
            ``("image",)`` for segmentation.
        feature_keys: Where the maps of each image go, one key per image key:
            ``("features_a", "features_b")`` for change pairs, ``("features",)`` for
            segmentation.

    Raises:
        ConfigError: ``dataset`` applies transforms itself, or the keys are invalid or
            differ in number.
    """

    def __init__(
        self,
        dataset: Dataset[Any],
        cache: FeatureCache,
        encoder: FeaturePyramidEncoder | None = None,
        *,
        transforms: Any = None,
        image_keys: Sequence[str] = ("image_a", "image_b"),
        feature_keys: Sequence[str] = ("features_a", "features_b"),
    ) -> None:
        image_keys = _check_keys("image_keys", image_keys)
        feature_keys = _check_keys("feature_keys", feature_keys)
        if len(image_keys) != len(feature_keys):
            raise ConfigError(
                f"image_keys={image_keys!r} and feature_keys={feature_keys!r} differ in "
                "length; pass one feature key per image key"
            )
        _refuse_augmenting(dataset)
        self.dataset = dataset
        self.cache = cache
        self.encoder = encoder
        self.transforms = transforms
        self.image_keys = image_keys
        self.feature_keys = feature_keys

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        """The sample with its maps under ``feature_keys``."""
        sample = self.dataset[index]
        name = sample["name"]
        cached = self.cache.get(name, images=len(self.image_keys))
        if cached is None:
            if self.encoder is None:
                raise FeatureCacheMissError(
                    f"no usable cached features for sample {name!r} in {self.cache.folder}; run "
                    "precompute(dataset, encoder, cache) first, or pass encoder= to compute them"
                )
            (features,) = _encode(self.encoder, [sample], self.image_keys)
            self.cache.put(name, features)
            cached = self.cache.get(name, images=len(self.image_keys))
            if cached is None:  # pragma: no cover - the entry was just written
                cached = [[f.float().cpu() for f in maps] for maps in features]
        out = {**sample, **dict(zip(self.feature_keys, cached, strict=True))}
        return self.transforms(out) if self.transforms is not None else out


# ---------------------------------------------------------------------------- helpers
def _encode(
    encoder: FeaturePyramidEncoder, samples: Sequence[Any], image_keys: Sequence[str]
) -> list[list[list[Tensor]]]:
    """Maps of every image of each sample (``[sample][image][level]``); images of one shape
    share an encoder call."""
    groups: dict[tuple[int, ...], list[tuple[int, int, Tensor]]] = {}
    for s, sample in enumerate(samples):
        for i, key in enumerate(image_keys):
            if key not in sample:
                raise ConfigError(
                    f"sample {sample.get('name')!r} has no {key!r} (it has {sorted(sample)}); "
                    "pass the sample's image keys as image_keys="
                )
            image = sample[key]
            groups.setdefault(tuple(image.shape), []).append((s, i, image))
    results: list[list[list[Tensor]]] = [[[] for _ in image_keys] for _ in samples]
    for group in groups.values():
        maps = encoder(torch.stack([image for _, _, image in group])).features
        for j, (s, i, _) in enumerate(group):
            results[s][i] = [m[j] for m in maps]
    return results


def _check_keys(name: str, keys: Sequence[str]) -> tuple[str, ...]:
    if isinstance(keys, str) or not isinstance(keys, Sequence):
        raise ConfigError(f"{name}={keys!r} is invalid; pass a sequence of keys, e.g. ('image',)")
    keys = tuple(keys)
    if not keys or not all(isinstance(k, str) and k for k in keys) or len(set(keys)) != len(keys):
        raise ConfigError(f"{name}={keys!r} is invalid; pass distinct non-empty string keys")
    return keys


def _refuse_augmenting(dataset: object) -> None:
    if getattr(dataset, "transforms", None) is not None:
        raise ConfigError(
            f"{type(dataset).__name__} applies transforms before the features are cached, so "
            "cached maps would not match the images; build it with transforms=None and pass "
            "the transforms to CachedFeatureDataset(transforms=...)"
        )


def _check_features(sample_id: str, features: Sequence[Sequence[Tensor]]) -> None:
    if not isinstance(sample_id, str) or not sample_id:
        raise ConfigError(f"sample_id={sample_id!r} is invalid; use the sample's name")
    if isinstance(features, Tensor) or not isinstance(features, Sequence) or not features:
        raise ConfigError(
            f"features of {sample_id!r} must be a non-empty list with one list of maps per "
            f"image, not {_shape(features)}"
        )
    counts = [len(maps) if isinstance(maps, Sequence) else -1 for maps in features]
    if min(counts) < 1 or len(set(counts)) != 1:
        raise ConfigError(
            f"features of {sample_id!r} are {counts} maps for images 0..{len(counts) - 1}; "
            "pass the same non-empty list of maps for every image"
        )
    for level, level_maps in enumerate(zip(*features, strict=True)):
        first = level_maps[0]
        if not all(isinstance(t, Tensor) for t in level_maps) or any(
            t.shape != first.shape for t in level_maps
        ):
            raise ConfigError(
                f"feature map {level} of {sample_id!r} differs between the images "
                f"({', '.join(str(_shape(t)) for t in level_maps)}); pass maps of one "
                "encoder call"
            )


def _entry_problem(entry: Any, key: str, sample_id: str) -> str | None:
    """Why a loaded entry cannot be used, or None."""
    if not isinstance(entry, dict) or not {"key", "sample_id", "features"} <= set(entry):
        return "not a feature-cache entry"
    if entry["key"] != key:
        return "written for another cache key"
    if entry["sample_id"] != sample_id:
        return f"written for sample {entry['sample_id']!r}"
    features = entry["features"]
    if (
        not isinstance(features, list)
        or not features
        or not all(isinstance(maps, list) and maps for maps in features)
        or len({len(maps) for maps in features}) != 1
        or not all(isinstance(t, Tensor) for maps in features for t in maps)
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


def _as_list(batch: list[Any]) -> list[Any]:
    return batch


def _shape(value: object) -> object:
    return tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
