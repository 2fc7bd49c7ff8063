"""The image encoder through OpenVINO on the CPU: the optional ``openvino`` encoder runtime.

OpenVINO's CPU plugin runs the frozen TinyViT (MobileSAM) and Hiera (SAM 2.1) encoders about
twice as fast as PyTorch on a 2-core CPU (``benchmarks/encoders.py --runtime openvino``), with
outputs equal to torch's within float32 rounding. For each encoder method (``_embed``,
``_encode``...) and input shape the torch graph is converted once, compiled in float32
(``INFERENCE_PRECISION_HINT``: OpenVINO would otherwise compute in bfloat16 on CPUs that
have it), checked against torch on its first input, and then used for the rest of the run.

Converting takes seconds (MobileSAM ~8 s, Hiera-T ~16 s on 2 cores, plus the check), so
converted models of official or fine-tuned weights are cached in
``$RS_SAM_HOME/openvino/<key>/``, the key hashing the weights' bytes, the method, the input
shape and the versions of rs-sam, torch and OpenVINO; a later run only compiles (~0.3 s for
MobileSAM). Random weights are never cached. A cached model was checked when it was
written and is not checked again.

A converted graph whose output differs from torch's beyond ``TOLERANCE`` is never used: a
warning, and torch runs that method for the rest of the run. SAM's ViT encoders are not
offered: ``sam_vit_b`` converted whole differed from torch by 0.8 % (its parts converted
apart matched to 2e-6).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from rs_sam.checkpoints.cache import rs_sam_home
from rs_sam.errors import ConfigError, MissingDependencyError
from rs_sam.models.encoders.base import (
    EncoderOutput,
    FrozenEncoder,
    HighResEmbedding,
    HqEmbedding,
)
from rs_sam.version import __version__

__all__ = [
    "RUNTIMES",
    "SUPPORTED_FAMILIES",
    "TOLERANCE",
    "OpenVinoRuntime",
    "check_runtime",
    "use_runtime",
]

#: Encoder runtimes: PyTorch, or OpenVINO on the CPU (the ``openvino`` extra).
RUNTIMES = ("torch", "openvino")
#: Encoder families whose converted graphs were tested equal to torch.
SUPPORTED_FAMILIES = ("mobile_sam", "sam2")
#: Largest accepted difference from torch, relative to the largest torch output value.
TOLERANCE = 1e-4
#: The compiled graphs' precision and scheduling (one inference at a time).
_COMPILE_CONFIG = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
_MODEL_FILE = "model.xml"


def use_runtime(encoder: FrozenEncoder, runtime: str) -> FrozenEncoder:
    """Run ``encoder``'s image encoder with ``runtime`` ("torch" or "openvino"), in place.

    Raises:
        ConfigError, MissingDependencyError: see :func:`check_runtime`.
    """
    if runtime == "torch":
        if getattr(encoder, "runtime", None) is not None:
            encoder.runtime = None
        return encoder
    check_runtime(runtime, encoder.spec.name, encoder.spec.family, encoder.device.type)
    encoder.runtime = OpenVinoRuntime()
    return encoder


def check_runtime(runtime: str, encoder: str, family: str, device: str) -> None:
    """Whether ``runtime`` can run encoder ``encoder`` (of ``family``) on ``device``.

    Raises:
        ConfigError: An unknown runtime, an unsupported encoder, or a device other than the CPU
            ("auto" is fine: OpenVINO runs make it the CPU).
        MissingDependencyError: ``openvino`` without the OpenVINO package.
    """
    if runtime not in RUNTIMES:
        choices = " or ".join(RUNTIMES)
        raise ConfigError(f"encoder runtime {runtime!r} is unknown; use {choices}")
    if runtime == "torch":
        return
    if family not in SUPPORTED_FAMILIES:
        raise ConfigError(
            f"encoder runtime 'openvino' does not run '{encoder}' (it runs the MobileSAM, "
            "sam_hq_vit_tiny and SAM 2.1 encoders); use --encoder-runtime torch"
        )
    if device not in ("cpu", "auto"):
        raise ConfigError(
            f"encoder runtime 'openvino' runs on the CPU, not on {device}; use --device cpu "
            "or --encoder-runtime torch"
        )
    if importlib.util.find_spec("openvino") is None:
        raise _missing_openvino()


def _missing_openvino() -> MissingDependencyError:
    return MissingDependencyError(
        "encoder runtime 'openvino' needs OpenVINO: pip install 'rs-sam[openvino]' "
        "(or use --encoder-runtime torch)"
    )


def _openvino() -> Any:
    try:
        import openvino
    except ImportError:
        raise _missing_openvino() from None
    return openvino


class OpenVinoRuntime:
    """Runs a frozen encoder's methods as compiled OpenVINO graphs, one per method and shape.

    Args:
        cache_dir: Where converted models are kept [default: ``$RS_SAM_HOME/openvino``].
    """

    def __init__(self, cache_dir: Path | None = None) -> None:
        self.ov = _openvino()
        self.cache_dir = cache_dir if cache_dir is not None else rs_sam_home() / "openvino"
        self._graphs: dict[tuple[str, tuple[int, ...]], _Graph | None] = {}
        self._weights_digest: str | None = None
        self._lock = threading.Lock()

    def run(self, encoder: FrozenEncoder, method: str, x: Tensor) -> Any:
        """``getattr(encoder, method)(x)``, through OpenVINO when it matched torch."""
        key = (method, tuple(x.shape))
        with self._lock:  # worker threads: one conversion per graph
            if key not in self._graphs:
                self._graphs[key], first = self._prepare(encoder, method, x)
                if first is not None:  # computed by the check already
                    return first
        graph = self._graphs[key]
        if graph is None:  # differed from torch: torch for the rest of the run
            return getattr(encoder, method)(x)
        return graph(x)

    def _prepare(self, encoder: FrozenEncoder, method: str, x: Tensor) -> tuple[_Graph | None, Any]:
        """The checked graph of ``method`` at ``x``'s shape (None when it differs from torch),
        and its output on ``x`` when the check computed it (else None)."""
        cache = None if encoder.random_weights else self._cache_path(encoder, method, x)
        if cache is not None and (cache / _MODEL_FILE).is_file():
            model = self.ov.Core().read_model(cache / _MODEL_FILE)
            return _Graph(self.ov, model, method), None
        expected = getattr(encoder, method)(x)
        model = self._convert(encoder, method, x)
        graph = _Graph(self.ov, model, method)
        got = graph(x)
        error = _relative_error(_flatten(got), _flatten(expected))
        if error > TOLERANCE:
            warnings.warn(
                f"OpenVINO's '{encoder.spec.name}' {method} differs from torch by {error:.1e} "
                f"(relative; accepted: {TOLERANCE:.0e}); torch runs it instead",
                RuntimeWarning,
                stacklevel=4,
            )
            return None, expected
        if cache is not None:
            self._save(model, cache)
        return graph, got

    def _convert(self, encoder: FrozenEncoder, method: str, x: Tensor) -> Any:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the tracer's warnings about Python values
            return self.ov.convert_model(_Method(encoder, method), example_input=x)

    def _cache_path(self, encoder: FrozenEncoder, method: str, x: Tensor) -> Path:
        if self._weights_digest is None:
            self._weights_digest = _state_digest(encoder)
        key = "\n".join(
            [
                __version__,
                torch.__version__,
                self.ov.get_version(),
                encoder.spec.name,
                type(encoder).__qualname__,
                method,
                str(tuple(x.shape)),
                self._weights_digest,
            ]
        )
        return self.cache_dir / hashlib.sha256(key.encode()).hexdigest()[:32]

    def _save(self, model: Any, cache: Path) -> None:
        """Write the converted model atomically (a folder renamed into place)."""
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=cache.parent, prefix=".tmp-"))
            try:
                self.ov.save_model(model, tmp / _MODEL_FILE, compress_to_fp16=False)
                os.replace(tmp, cache)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        except OSError as error:  # a read-only or full cache costs speed, not the run
            if (cache / _MODEL_FILE).is_file():
                return  # another process cached it first
            warnings.warn(
                f"could not cache the OpenVINO model in {cache.parent}: {error}", stacklevel=5
            )


class _Graph:
    """A compiled OpenVINO model returning what the torch method returned."""

    def __init__(self, ov: Any, model: Any, method: str) -> None:
        config = dict(_COMPILE_CONFIG, INFERENCE_NUM_THREADS=torch.get_num_threads())
        self.request = ov.Core().compile_model(model, "CPU", config).create_infer_request()
        self.outputs = len(model.outputs)
        self.rebuild = _rebuild(method, self.outputs)
        self.lock = threading.Lock()  # one request: one inference at a time (worker threads)

    def __call__(self, x: Tensor) -> Any:
        with self.lock:
            self.request.infer({0: x.detach().to("cpu", torch.float32).contiguous().numpy()})
            # the request reuses its output memory: copy out
            out = [
                torch.tensor(self.request.get_output_tensor(i).data) for i in range(self.outputs)
            ]
        return self.rebuild(out)


class _Method(nn.Module):
    """``encoder.<method>(x)`` as a module returning a flat tuple of tensors, to convert."""

    def __init__(self, encoder: FrozenEncoder, method: str) -> None:
        super().__init__()
        self.encoder = encoder
        self.method = method

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        return tuple(_flatten(getattr(self.encoder, self.method)(x)))


def _flatten(out: Any) -> list[Tensor]:
    """The tensors of an encoder method's output, in ``_rebuild``'s order."""
    if isinstance(out, Tensor):
        return [out]
    if isinstance(out, EncoderOutput):
        return [*out.features, *([] if out.embedding is None else [out.embedding])]
    if isinstance(out, HqEmbedding):
        return [out.embedding, out.interm]
    if isinstance(out, HighResEmbedding):
        return [out.embedding, *out.high_res]
    raise TypeError(f"cannot run an encoder method returning {type(out).__name__}")


def _rebuild(method: str, outputs: int) -> Callable[[list[Tensor]], Any]:
    """The function that turns a compiled ``method``'s outputs into what torch returns."""
    rebuild = {
        "_embed": lambda t: t[0],
        "_encode": lambda t: EncoderOutput(t[:4], t[4] if outputs == 5 else None),
        "_embed_hq": lambda t: HqEmbedding(t[0], t[1]),
        "_embed_high_res": lambda t: HighResEmbedding(t[0], (t[1], t[2])),
    }
    if method not in rebuild:
        raise ValueError(f"cannot run encoder method {method!r} through OpenVINO")
    return rebuild[method]


def _relative_error(got: list[Tensor], expected: list[Tensor]) -> float:
    """Largest |got - expected| over all outputs, relative to the largest |expected|."""
    if [g.shape for g in got] != [e.shape for e in expected]:
        return float("inf")
    scale = max(float(e.abs().max()) for e in expected) or 1.0
    pairs = zip(got, expected, strict=True)
    return max(float((g - e.float()).abs().max()) for g, e in pairs) / scale


def _state_digest(module: nn.Module) -> str:
    """sha256 of every parameter's and buffer's name, shape, dtype and bytes."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict(keep_vars=False).items():
        data = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}:{tuple(data.shape)}:{data.dtype}\n".encode())
        digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
