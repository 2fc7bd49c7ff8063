"""Errors raised by rs-sam.

Every error derives from :class:`RsSamError` and from the builtin that fits it, so
callers can catch either. Messages name the offending value and the fix; the CLI prints
them as one line and exits non-zero.
"""

from __future__ import annotations

import os
import re

#: A URL scheme such as ``https://`` (two letters at least, so ``C:/`` stays a path); also
#: matches the ``https:/host`` that ``pathlib.Path`` makes of a URL.
_REMOTE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:/")


class RsSamError(Exception):
    """Root of every error raised on purpose by rs-sam."""

    #: Exit code the CLI uses for this kind of error (2 = usage/input error).
    exit_code = 2


class InputRasterError(RsSamError, ValueError):
    """An input raster cannot be used (not a raster, no CRS, rotated, no overlap...)."""


class RasterNotFoundError(RsSamError, FileNotFoundError):
    """An input raster path does not exist."""


class RasterReadError(InputRasterError):
    """An input raster opens, but some of its pixels cannot be read (damaged or incomplete)."""


def looks_remote(value: object) -> bool:
    """True for a URL (``https://...``) or a GDAL ``/vsi...`` path, not an existing local path."""
    text = str(value)
    return bool(_REMOTE.match(text) or text.startswith("/vsi")) and not os.path.exists(text)


class RemoteInputError(RsSamError, ValueError):
    """A remote input cannot be used: a URL where only local files are read (model files,
    prompts), an unsupported scheme, or a raster URL that cannot be reached or is refused
    (network, credentials)."""

    @classmethod
    def check(cls, value: object, what: str) -> None:
        """Raise for a ``value`` that is a URL (``https://...``) where a local path is needed."""
        text = str(value)
        if _REMOTE.match(text) and not os.path.exists(text):  # a folder may be 'ab:'
            raise cls(
                f"{what} is {text}: remote inputs are not supported yet "
                "(download the file first and pass its local path)"
            )


class OutputPathError(RsSamError, ValueError):
    """An output path cannot be written (missing folder, unsupported suffix...)."""

    @classmethod
    def check_local(cls, value: object, what: str) -> None:
        """Raise for an output that is a URL or ``/vsi...`` path: outputs are local files."""
        if looks_remote(value):
            raise cls(
                f"{what} is {value}: outputs are written to local files only; give a local "
                "path and copy the result to object storage afterwards"
            )


class OutputExistsError(RsSamError, FileExistsError):
    """An output already exists and ``overwrite`` was not requested."""


class UnknownEncoderError(RsSamError, ValueError):
    """An encoder name is not in the registry."""


class CheckpointError(RsSamError, ValueError):
    """A checkpoint file is corrupt, unsafe, of the wrong architecture or hash."""


class CheckpointNotFoundError(RsSamError, FileNotFoundError):
    """A checkpoint is neither cached nor downloadable (e.g. offline)."""

    exit_code = 1


class ModelFileNotFoundError(CheckpointNotFoundError):
    """A model file the user named (--model, --lora, --checkpoint) is missing: bad input."""

    exit_code = 2


class MissingDependencyError(RsSamError, ImportError):
    """An optional dependency is needed; the message names the extra to install."""

    exit_code = 1


class ClusterError(RsSamError):
    """The dask cluster lost a chip's work (its workers kept dying), not bad input."""

    exit_code = 1


class ConfigError(RsSamError, ValueError):
    """A settings object or config file has unknown keys or invalid values."""


class SampleDataNotFoundError(RsSamError, FileNotFoundError):
    """A sample dataset is neither in RS_SAM_DATA_DIR, cached, nor downloadable."""

    exit_code = 1


class RunCancelled(RsSamError):
    """The caller (QGIS's cancel button, a progress hook) stopped a run between chips."""

    exit_code = 130  # the shell's code for an interrupted command
