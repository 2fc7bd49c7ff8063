"""Official checkpoints: where they come from, where they are cached, and how they are read.

Files are only ever read with ``torch.load(..., map_location="cpu", weights_only=True)``: a
pickle that would construct arbitrary objects or call functions is refused, never executed.

Cache layout: ``$RS_SAM_HOME/checkpoints/<official filename>`` (``RS_SAM_HOME`` defaults to
``~/.cache/rs-sam``). ``RS_SAM_OFFLINE=1`` disables every network access. A checkpoint is found
in this order: an explicit path, the cached file, a download (verified, written atomically).
A cached file is checked against the published size on every use and against the published
sha256 once (the result is remembered in ``<file>.sha256`` next to it until the file changes).
An explicit ``checkpoint=`` path is not hash-checked (it may be a fine-tuned file); its keys
and shapes are checked when it is loaded into a model.

FastSAM files are pickled ultralytics model objects, not state dicts; see
:func:`load_ultralytics_state_dict` for how their tensors are recovered without running code.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import pickle
import re
import struct
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from rs_sam.errors import CheckpointError, CheckpointNotFoundError

if TYPE_CHECKING:
    from rs_sam.models.encoders.registry import EncoderSpec

HOME_ENV = "RS_SAM_HOME"
OFFLINE_ENV = "RS_SAM_OFFLINE"
DEFAULT_HOME = Path("~/.cache/rs-sam")

_CHUNK = 1 << 20  # bytes read per step when hashing or downloading
_MAX_LISTED = 4  # keys or names quoted in one error message
# What a damaged or foreign file can make torch.load raise (a text file gives a KeyError,
# a truncated zip OSError EINVAL).
TORCH_LOAD_ERRORS = (
    pickle.UnpicklingError,
    RuntimeError,
    EOFError,
    KeyError,
    IndexError,
    ValueError,
    TypeError,
    AttributeError,
    OSError,
    struct.error,
    zipfile.BadZipFile,
)
_NETWORK_ERRORS = (urllib.error.URLError, http.client.HTTPException, OSError)


@dataclass(frozen=True)
class CheckpointSpec:
    """Where an official checkpoint is published and what it must look like.

    Attributes:
        url: Official download address.
        filename: File name on disk (the official one, also used in the cache).
        size: Published size in bytes, or None where no public figure was found.
        sha256: Published sha256 (lower-case hex), or None where no public figure was found.
    """

    url: str
    filename: str
    size: int | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class CheckpointReport:
    """What :func:`verify_checkpoint` found out about a file.

    Attributes:
        path: The file.
        size: Its size in bytes.
        sha256: Its sha256.
        expected_size: The published size it was checked against (None: not checked).
        expected_sha256: The published sha256 it was checked against (None: not checked).
        checked_against: Encoder whose published figures were used, if any.
        identified: Encoder (or family member) the tensors belong to, per key names and shapes.
        n_tensors: Number of tensors in the state dict.
        n_values: Number of scalars in those tensors.
    """

    path: Path
    size: int
    sha256: str
    expected_size: int | None
    expected_sha256: str | None
    checked_against: str | None
    identified: str | None
    n_tensors: int
    n_values: int


# ----------------------------------------------------------------------------- cache


def rs_sam_home() -> Path:
    """The rs-sam data folder: ``$RS_SAM_HOME``, else ``~/.cache/rs-sam``."""
    return Path(os.environ.get(HOME_ENV) or DEFAULT_HOME).expanduser()


def checkpoint_dir() -> Path:
    """Folder of cached checkpoints: ``<rs_sam_home()>/checkpoints``."""
    return rs_sam_home() / "checkpoints"


def cached_checkpoint_path(spec: EncoderSpec) -> Path:
    """Where the official checkpoint of ``spec`` is (or would be) cached."""
    return checkpoint_dir() / spec.checkpoint.filename


def is_offline() -> bool:
    """True when ``RS_SAM_OFFLINE`` is set to 1/true/yes/on."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def file_sha256(path: str | Path) -> str:
    """Lower-case hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def resolve_checkpoint(
    spec: EncoderSpec,
    checkpoint: str | Path | None = None,
    *,
    download: bool = True,
    progress: bool = True,
) -> Path:
    """Find the checkpoint file of an encoder: explicit path > cached file > download.

    Args:
        spec: The encoder whose official checkpoint is wanted.
        checkpoint: An explicit file; it must exist and is used as is.
        download: Allow downloading when the file is not cached (``RS_SAM_OFFLINE=1`` forbids
            it regardless).
        progress: Show a progress bar while downloading.

    Returns:
        Path of a readable checkpoint file.

    Raises:
        CheckpointNotFoundError: The explicit file does not exist, or the file is not cached
            and cannot be downloaded (offline, network failure); the message says where to put
            it by hand.
        CheckpointError: The cached or downloaded file does not match the published size/sha256.
    """
    if checkpoint is not None:
        path = Path(checkpoint).expanduser()
        if not path.is_file():
            raise CheckpointNotFoundError(
                f"checkpoint file {path} does not exist; pass the path of an existing file, or "
                f"omit it to use the official {spec.checkpoint.filename} for '{spec.name}'"
            )
        return path
    path = cached_checkpoint_path(spec)
    if path.is_file():
        _check_cached(path, spec)
        return path
    by_hand = (
        f"download {spec.checkpoint.url} by hand and put it at {path} "
        f"(or pass --checkpoint PATH / checkpoint=PATH)"
    )
    if is_offline():
        raise CheckpointNotFoundError(
            f"checkpoint {spec.checkpoint.filename} for encoder '{spec.name}' is not cached and "
            f"{OFFLINE_ENV} is set, so nothing is downloaded; {by_hand}"
        )
    if not download:
        raise CheckpointNotFoundError(
            f"checkpoint {spec.checkpoint.filename} for encoder '{spec.name}' is not cached; "
            f"run `rs-sam weights fetch {spec.name}`, or {by_hand}"
        )
    try:
        return download_checkpoint(spec.checkpoint, path, progress=progress)
    except _NETWORK_ERRORS as err:
        raise CheckpointNotFoundError(
            f"could not download {spec.checkpoint.filename} for encoder '{spec.name}' "
            f"({_one_line(err)}); {by_hand}"
        ) from err


def download_checkpoint(
    ckpt: CheckpointSpec, dest: str | Path, *, progress: bool = True, timeout: float = 60.0
) -> Path:
    """Download ``ckpt.url`` to ``dest`` atomically, verifying the published size and sha256.

    The bytes go to a temporary file in ``dest``'s folder, which is renamed over ``dest`` only
    once every published figure matches; on any failure it is removed, so ``dest`` is either
    absent or complete.

    Raises:
        urllib.error.URLError, http.client.HTTPException, OSError: Network failures (callers
            turn them into :class:`CheckpointNotFoundError`).
        CheckpointError: Size or sha256 differ from the published figures (nothing is kept).
    """
    from tqdm.auto import tqdm

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        n_bytes = 0
        request = urllib.request.Request(ckpt.url, headers={"User-Agent": "rs-sam"})
        with (
            os.fdopen(fd, "wb") as out,
            urllib.request.urlopen(request, timeout=timeout) as response,
        ):
            length = response.headers.get("Content-Length")
            total = ckpt.size or (int(length) if length and length.isdigit() else None)
            with tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=dest.name,
                disable=not progress,
            ) as bar:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    n_bytes += len(chunk)
                    bar.update(len(chunk))
        _check_figures(
            ckpt, n_bytes, digest.hexdigest(), what=f"downloaded {ckpt.filename}", dest=dest
        )
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _write_marker(dest, digest.hexdigest())
    return dest


def _check_figures(
    ckpt: CheckpointSpec, size: int, sha256: str | None, *, what: str, dest: Path
) -> None:
    """Raise CheckpointError when a size/sha256 differs from a published figure."""
    fix = f"delete it and run the download again, or put the official file at {dest} by hand"
    if ckpt.size is not None and size != ckpt.size:
        raise CheckpointError(
            f"{what} has {size:,} bytes but the published size is {ckpt.size:,} "
            f"(truncated or a different file); {fix}"
        )
    if ckpt.sha256 is not None and sha256 is not None and sha256 != ckpt.sha256:
        raise CheckpointError(
            f"{what} has sha256 {sha256} but the published one is {ckpt.sha256} "
            f"(corrupted or changed upstream); {fix}"
        )


def _marker_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _write_marker(path: Path, sha256: str) -> None:
    """Remember that ``path`` (at its current size and mtime) has the given sha256."""
    st = path.stat()
    try:
        _marker_path(path).write_text(f"{sha256} {st.st_size} {st.st_mtime_ns}\n")
    except OSError:
        pass  # a read-only cache only costs a re-hash next time


def _marker_valid(path: Path, sha256: str) -> bool:
    try:
        fields = _marker_path(path).read_text().split()
    except OSError:
        return False
    st = path.stat()
    return fields == [sha256, str(st.st_size), str(st.st_mtime_ns)]


def _check_cached(path: Path, spec: EncoderSpec) -> None:
    """Check a cached file: size on every call, sha256 once (remembered in a marker file)."""
    ckpt = spec.checkpoint
    what = f"cached checkpoint {path}"
    _check_figures(ckpt, path.stat().st_size, None, what=what, dest=path)
    if ckpt.sha256 is not None and not _marker_valid(path, ckpt.sha256):
        digest = file_sha256(path)
        _check_figures(ckpt, path.stat().st_size, digest, what=what, dest=path)
        _write_marker(path, digest)


# ----------------------------------------------------------------------------- reading


def _existing_file(path: str | Path) -> Path:
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointNotFoundError(
            f"checkpoint file {path} does not exist; pass the path of an existing file"
        )
    return path


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def _listed(items: Iterable[str]) -> str:
    items = list(items)
    shown = ", ".join(items[:_MAX_LISTED])
    return shown + (f", ... ({len(items)} in all)" if len(items) > _MAX_LISTED else "")


def _unsafe_globals(path: Path, err: BaseException | None = None) -> list[str]:
    """Names of the classes/functions a checkpoint's pickle refers to beyond plain tensors.

    Reads the pickle opcodes statically (nothing is executed). Legacy (non-zip) files cannot be
    disassembled this way; the names are then taken from the refusal message of ``err``.
    """
    try:
        return sorted(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except TORCH_LOAD_ERRORS:
        return sorted(set(re.findall(r"GLOBAL ([\w.]+)", str(err)))) if err else []


def _refusal(path: Path, unsafe: list[str]) -> CheckpointError:
    hint = ""
    if any(name.startswith("ultralytics.") for name in unsafe):
        hint = (
            "; it is a pickled ultralytics model (FastSAM/YOLO): load it with encoder "
            "'fastsam_s' or 'fastsam_x', which recover its tensors without running its code"
        )
    return CheckpointError(
        f"refused: {path} contains code or objects that are not plain tensors "
        f"({_listed(unsafe)}); rs-sam never executes pickled code{hint}"
    )


def _torch_load(path: Path) -> Any:
    """``torch.load`` restricted to tensors and plain containers; errors become CheckpointError."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        unsafe = _unsafe_globals(path, err)
        if unsafe:
            raise _refusal(path, unsafe) from None
        raise CheckpointError(
            f"{path} cannot be read safely: it is corrupt or holds objects that are not plain "
            f"tensors ({_one_line(err).split('WeightsUnpickler error:')[-1].strip()[:80]}); "
            "download it again"
        ) from None
    except TORCH_LOAD_ERRORS as err:
        raise CheckpointError(
            f"{path} is corrupt, truncated or not a PyTorch checkpoint "
            f"({type(err).__name__}: {_one_line(err)[:100]}); download it again"
        ) from None


def _as_state_dict(obj: Any, path: Path) -> dict[str, Tensor]:
    """Unwrap ``{"model": sd}`` / ``{"state_dict": sd}`` and check every value is a tensor."""
    for _ in range(2):
        if isinstance(obj, Mapping):
            inner = next((obj[k] for k in ("state_dict", "model") if k in obj), None)
            if isinstance(inner, Mapping):
                obj = inner
    if not isinstance(obj, Mapping):
        raise CheckpointError(
            f"{path} holds a {type(obj).__name__}, not a state dict (a mapping of names to "
            "tensors); save the model with torch.save(model.state_dict(), path)"
        )
    bad = [k for k, v in obj.items() if not (isinstance(k, str) and isinstance(v, Tensor))]
    if bad:
        raise CheckpointError(
            f"{path} is not a state dict: entries {_listed(map(str, bad))} are not named tensors; "
            "save the model with torch.save(model.state_dict(), path)"
        )
    return dict(obj)


def load_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Read a state dict with ``torch.load(weights_only=True)`` only.

    ``{"model": sd}`` and ``{"state_dict": sd}`` wrappers are unwrapped.

    Raises:
        CheckpointNotFoundError: The file does not exist.
        CheckpointError: The pickle would run code or build objects other than tensors
            ("refused: ..."), or the file is corrupt/truncated, or it is not a state dict.
    """
    path = _existing_file(path)
    return _as_state_dict(_torch_load(path), path)


# Pickled names that load_ultralytics_state_dict replaces by inert stand-ins. Anything else
# beyond torch's own tensor allow-list (os.system, builtins.eval, ...) is refused.
_STUB_PREFIXES = (
    "ultralytics.",
    "torch.nn.modules.",
    "numpy.",
    "pathlib.",
    "types.SimpleNamespace",
    "argparse.Namespace",
    "datetime.",
)


class _Inert:
    """Stand-in for a class named in a pickle: records the pickled state, runs no code.

    ``torch.load(weights_only=True)`` builds it in place of the named class (allow-listed under
    that class's name for the duration of one load), so the real class is never imported.
    """

    qualname = ""

    def __new__(cls, *args: Any, **kwargs: Any) -> _Inert:
        return super().__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args

    def __setstate__(self, state: Any) -> None:
        self.__dict__["state"] = state


def _inert_module_tensors(obj: _Inert, prefix: str, out: dict[str, Tensor]) -> None:
    """Collect an nn.Module's persistent parameters/buffers from its pickled ``__dict__``."""
    state = obj.__dict__.get("state")
    if isinstance(state, tuple) and state and isinstance(state[0], dict):
        state = state[0]
    if not isinstance(state, dict):
        return
    skip = state.get("_non_persistent_buffers_set") or set()
    for group in ("_parameters", "_buffers"):
        for name, value in (state.get(group) or {}).items():
            if isinstance(value, Tensor) and name not in skip:
                out[prefix + name] = value.detach()
    for name, child in (state.get("_modules") or {}).items():
        if isinstance(child, _Inert):
            _inert_module_tensors(child, f"{prefix}{name}.", out)


def load_ultralytics_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Recover the state dict of a pickled ultralytics model (FastSAM-s/x) without running it.

    Official FastSAM files are ``torch.save`` pickles of ultralytics ``SegmentationModel``
    objects. Their class names are first listed statically from the pickle opcodes; names
    under ultralytics, ``torch.nn.modules``, numpy, pathlib and a few plain-data types are
    mapped to an inert stand-in class and the file is then read with
    ``torch.load(weights_only=True)``: no constructor, ``__setstate__`` or function of the
    file runs, only tensors are rebuilt. Any other name (``os.system``, ``builtins.eval``...)
    refuses the file. The tensors are collected from the stand-ins' recorded
    ``_parameters``/``_buffers`` (the ``ema`` model when present, as ultralytics does, else
    ``model``). A plain state dict with the same keys is accepted too.

    Returns:
        The model's state dict, keyed as ``SegmentationModel.state_dict()``
        (``model.0.conv.weight``...).

    Raises:
        CheckpointNotFoundError: The file does not exist.
        CheckpointError: Refused names, corrupt file, or no segmentation model inside.
    """
    path = _existing_file(path)
    try:
        unsafe = sorted(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except TORCH_LOAD_ERRORS:
        unsafe = []  # legacy or damaged file: _torch_load below reports what is wrong
    refused = [name for name in unsafe if not name.startswith(_STUB_PREFIXES)]
    if refused:
        raise _refusal(path, refused)
    stand_ins: list[Any] = [
        (type(name.rsplit(".", 1)[-1], (_Inert,), {"qualname": name}), name) for name in unsafe
    ]
    with torch.serialization.safe_globals(stand_ins):
        obj = _torch_load(path)
    if isinstance(obj, Mapping) and not any(isinstance(v, _Inert) for v in obj.values()):
        return _as_state_dict(obj, path)  # already a plain state dict
    model = obj
    if isinstance(obj, Mapping):
        model = obj.get("ema") or obj.get("model")
    if not (isinstance(model, _Inert) and model.qualname.endswith("SegmentationModel")):
        found = model.qualname if isinstance(model, _Inert) else type(model).__name__
        raise CheckpointError(
            f"{path} does not hold an ultralytics SegmentationModel (found {found}); FastSAM "
            "encoders need the official FastSAM-s.pt / FastSAM-x.pt files"
        )
    state_dict: dict[str, Tensor] = {}
    _inert_module_tensors(model, "", state_dict)
    if not state_dict:
        raise CheckpointError(
            f"{path} holds a SegmentationModel without tensors; download it again"
        )
    return state_dict


def _read_any(path: Path) -> dict[str, Tensor]:
    """A state dict from either a plain checkpoint or a pickled ultralytics model."""
    try:
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except TORCH_LOAD_ERRORS:
        unsafe = []
    if any(name.startswith("ultralytics.") for name in unsafe):
        return load_ultralytics_state_dict(path)
    return load_state_dict(path)


# ----------------------------------------------------------------------------- identifying

_VIT_WIDTHS = {768: "vit_b", 1024: "vit_l", 1280: "vit_h"}
_TINYVIT_STEM = "image_encoder.patch_embed.seq.2.c.weight"  # TinyViT stem conv, 64 out in MobileSAM
_YOLO_STEM_WIDTHS = {32: "fastsam_s", 80: "fastsam_x"}  # YOLOv8 width 0.5 / 1.25 of 64
_YOLO_PROTO = re.compile(r"model\.\d+\.proto\.")


def identify_checkpoint(state_dict: Mapping[str, Tensor]) -> str | None:
    """Name the model a state dict belongs to, from its key names and shapes.

    Returns an rs-sam encoder name (``sam_vit_b/l/h``, ``mobile_sam``, ``fastsam_s/x``), an
    HQ-SAM name (``sam_hq_vit_b/l/h``, ``sam_hq_vit_tiny``: HQ-only keys such as
    ``mask_decoder.hf_token.weight``), or None when nothing matches.
    """
    hq = any(key.startswith("mask_decoder.hf_token.") for key in state_dict)
    patch = state_dict.get("image_encoder.patch_embed.proj.weight")
    if patch is not None and patch.ndim == 4:
        vit = _VIT_WIDTHS.get(int(patch.shape[0]))
        return None if vit is None else (f"sam_hq_{vit}" if hq else f"sam_{vit}")
    stem = state_dict.get(_TINYVIT_STEM)
    if stem is not None and "image_encoder.neck.0.weight" in state_dict:
        if int(stem.shape[0]) != 64:
            return None
        return "sam_hq_vit_tiny" if hq else "mobile_sam"
    yolo_stem = state_dict.get("model.0.conv.weight")
    if yolo_stem is not None and any(_YOLO_PROTO.match(key) for key in state_dict):
        return _YOLO_STEM_WIDTHS.get(int(yolo_stem.shape[0]))
    return None


def _identified_hint(identified: str | None, encoder: str) -> str:
    from rs_sam.models.encoders.registry import ENCODERS

    if identified is None:
        return "it matches no known checkpoint: check that the file is the right one"
    if identified == encoder:
        return f"it looks like a '{identified}' checkpoint, but partial or modified"
    if identified in ENCODERS:
        return f"it looks like a '{identified}' checkpoint: use encoder '{identified}'"
    if identified.startswith("sam_hq"):
        return (
            f"it looks like an HQ-SAM checkpoint ('{identified}'); rs-sam's encoders use the "
            "plain SAM decoder: use the original SAM/MobileSAM file"
        )
    return f"it looks like a '{identified}' checkpoint"


@dataclass(frozen=True)
class KeyMismatch:
    """How a state dict differs from a module's: the one wording of every key check."""

    missing: tuple[str, ...] = ()
    unexpected: tuple[str, ...] = ()
    reshaped: tuple[str, ...] = ()  # "name (found shape) != (expected shape)"

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected or self.reshaped)

    def __str__(self) -> str:
        parts = [
            f"{len(keys)} {what} ({_listed(keys)})"
            for what, keys in (
                ("missing keys", self.missing),
                ("unexpected keys", self.unexpected),
                ("shape mismatches", self.reshaped),
            )
            if keys
        ]
        return "; ".join(parts) or "keys match"


def compare_keys(expected: Mapping[str, Tensor], found: Mapping[str, Tensor]) -> KeyMismatch:
    """Keys of ``expected`` absent from ``found``, extra keys, and shapes that differ."""
    return KeyMismatch(
        missing=tuple(k for k in expected if k not in found),
        unexpected=tuple(k for k in found if k not in expected),
        reshaped=tuple(
            f"{k} {tuple(v.shape)} != {tuple(expected[k].shape)}"
            for k, v in found.items()
            if k in expected and tuple(v.shape) != tuple(expected[k].shape)
        ),
    )


def load_into_model(
    module: nn.Module,
    state_dict: Mapping[str, Tensor],
    *,
    encoder: str,
    source: str | Path,
    ignore: Callable[[str], bool] | None = None,
) -> None:
    """Load a state dict strictly, with a one-line error naming what the file really is.

    Args:
        module: Model to fill in place.
        state_dict: Tensors to load.
        encoder: rs-sam name of the model (for the message).
        source: File the tensors came from (for the message).
        ignore: Keys for which this returns True are dropped before loading (e.g. the FastSAM
            head, which rs-sam does not use); they still count for identification.

    Raises:
        CheckpointError: Missing or unexpected keys, or shape mismatches; the message lists
            the first few of each and the encoder the file seems to belong to.
    """
    wanted = {k: v for k, v in state_dict.items() if not (ignore and ignore(k))}
    mismatch = compare_keys(module.state_dict(), wanted)
    if mismatch:
        hint = _identified_hint(identify_checkpoint(state_dict), encoder)
        raise CheckpointError(
            f"checkpoint {source} does not fit encoder '{encoder}': {mismatch}; {hint}"
        )
    module.load_state_dict(wanted, strict=True)


# ----------------------------------------------------------------------------- verifying


def verify_checkpoint(path: str | Path, spec: EncoderSpec | None = None) -> CheckpointReport:
    """Check a checkpoint file: size, sha256, loadability and what it is.

    Published size/sha256 are compared with those of ``spec``, or, without ``spec``, with
    those of the encoder whose official file name the file has (a renamed or fine-tuned file
    is only read and identified). Figures that were never published are not checked.

    Raises:
        CheckpointNotFoundError: The file does not exist.
        CheckpointError: Size/sha256 differ from the published ones, the file cannot be read
            safely, or it is not a checkpoint of ``spec``.
    """
    from rs_sam.models.encoders.registry import ENCODERS

    path = _existing_file(path)
    reference = spec or next(
        (s for s in ENCODERS.values() if s.checkpoint.filename == path.name), None
    )
    size = path.stat().st_size
    sha256 = file_sha256(path)
    if reference is not None:
        _check_figures(reference.checkpoint, size, sha256, what=str(path), dest=path)
    state_dict = _read_any(path)
    identified = identify_checkpoint(state_dict)
    if spec is not None and identified != spec.name:
        raise CheckpointError(
            f"{path} is not a '{spec.name}' checkpoint; {_identified_hint(identified, spec.name)}"
        )
    return CheckpointReport(
        path=path,
        size=size,
        sha256=sha256,
        expected_size=reference.checkpoint.size if reference else None,
        expected_sha256=reference.checkpoint.sha256 if reference else None,
        checked_against=reference.name if reference else None,
        identified=identified,
        n_tensors=len(state_dict),
        n_values=sum(t.numel() for t in state_dict.values()),
    )
