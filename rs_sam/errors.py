"""Errors raised by rs-sam.

Every error derives from :class:`RsSamError` and from the builtin that fits it, so
callers can catch either. Messages name the offending value and the fix; the CLI prints
them as one line and exits non-zero.
"""

from __future__ import annotations


class RsSamError(Exception):
    """Root of every error raised on purpose by rs-sam."""

    #: Exit code the CLI uses for this kind of error (2 = usage/input error).
    exit_code = 2


class InputRasterError(RsSamError, ValueError):
    """An input raster cannot be used (not a raster, no CRS, rotated, no overlap...)."""


class RasterNotFoundError(RsSamError, FileNotFoundError):
    """An input raster path does not exist."""


class OutputPathError(RsSamError, ValueError):
    """An output path cannot be written (missing folder, unsupported suffix...)."""


class OutputExistsError(RsSamError, FileExistsError):
    """An output already exists and ``overwrite`` was not requested."""


class UnknownEncoderError(RsSamError, ValueError):
    """An encoder name is not in the registry."""


class CheckpointError(RsSamError, ValueError):
    """A checkpoint file is corrupt, unsafe, of the wrong architecture or hash."""


class CheckpointNotFoundError(RsSamError, FileNotFoundError):
    """A checkpoint is neither cached nor downloadable (e.g. offline)."""

    exit_code = 1


class MissingDependencyError(RsSamError, ImportError):
    """An optional dependency is needed; the message names the extra to install."""

    exit_code = 1


class ConfigError(RsSamError, ValueError):
    """A settings object or config file has unknown keys or invalid values."""


class SampleDataNotFoundError(RsSamError, FileNotFoundError):
    """A sample dataset is neither in RS_SAM_DATA_DIR, cached, nor downloadable."""

    exit_code = 1


class RunCancelled(RsSamError):
    """The caller (QGIS's cancel button, a progress hook) stopped a run between chips."""

    exit_code = 130  # the shell's code for an interrupted command
