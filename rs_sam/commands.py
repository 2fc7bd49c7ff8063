"""Run a command of :mod:`rs_sam.options` from its option values: the CLI's and QGIS's call.

The values are keyed by option name and typed as the CLI parses them (text for
``min_area`` and ``bands``, paths as text); missing ones take the table's defaults. The
settings are built from the same table, so the CLI, QGIS and the API agree on every default.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rs_sam import api
from rs_sam.change.settings import ChangeSettings
from rs_sam.errors import ConfigError, OutputPathError, RemoteInputError
from rs_sam.models.decoding import HqMode
from rs_sam.options import COMMANDS
from rs_sam.progress import ProgressCallback
from rs_sam.segmentation.settings import SamObjectsSettings, SegmentSettings

#: Option kinds whose values are input paths that must be local (rasters may be URLs).
INPUT_PATH_KINDS = ("features", "file")
#: Option kinds whose values are output paths (always local).
OUTPUT_PATH_KINDS = ("vector_out", "raster_out", "file_out", "folder_out")


def hq_mode(hq: bool, hq_only: bool) -> HqMode:
    """The HQ-SAM decoding of the ``--hq`` / ``--hq-only`` flags."""
    if hq and hq_only:
        raise ConfigError("--hq and --hq-only exclude each other; give one")
    return "only" if hq_only else "add" if hq else "off"


def run(
    command: str,
    values: Mapping[str, Any],
    *,
    show_progress: bool = True,
    on_progress: ProgressCallback | None = None,
) -> Any:
    """Run ``command`` (``detect_change``, ``segment``, ``sam_objects``) with these values.

    Returns the API function's result (it has a ``summary()``).
    """
    if command not in COMMANDS:
        raise ConfigError(f"command {command!r} is unknown; use one of {', '.join(COMMANDS)}")
    table = COMMANDS[command]
    unknown = sorted(set(values) - {option.name for option in table.options})
    if unknown:
        raise ConfigError(f"{table.cli_name} has no option(s) {', '.join(unknown)}")
    given = {**table.defaults(), **values}
    for option in table.options:  # before any path becomes a Path ('https:/' in a Path)
        if option.kind in INPUT_PATH_KINDS and given.get(option.name):
            what = option.flag or f"{option.kind} {option.name}"
            RemoteInputError.check(given[option.name], what)
        if option.kind in OUTPUT_PATH_KINDS and given.get(option.name):
            OutputPathError.check_local(given[option.name], option.flag or "output")
    progress = {"show_progress": show_progress, "on_progress": on_progress}
    if command.startswith("pseudo_label"):
        from rs_sam.pseudo_label.options_run import run_pseudo_label

        return run_pseudo_label(command, given, **progress)  # type: ignore[arg-type]
    if command == "detect_change":
        return api.detect_change(
            given["a"],
            given["b"],
            given["output"],
            settings=ChangeSettings.from_options(given),
            save_probability=given["save_probability"],
            save_latent=given["save_latent"],
            preview=given["preview"],
            text=given["text"] or None,
            overwrite=given["overwrite"],
            **progress,  # type: ignore[arg-type]
        )
    if command == "segment":
        hq = hq_mode(given["hq"], given["hq_only"])
        return api.segment(
            given["image"],
            given["output"],
            mode=given["mode"],
            prompts=given["prompts"],
            model=given["model"],
            multimask=given["multimask"],
            context=given["context"],
            hq=hq,
            text=given["text"] or None,
            exemplars=given["exemplars"],
            score_thresh=given["score_thresh"],
            save_classes=given["save_classes"],
            save_probability=given["save_probability"],
            preview=given["preview"],
            settings=SegmentSettings.from_options(given),
            overwrite=given["overwrite"],
            **progress,  # type: ignore[arg-type]
        )
    return api.sam_objects(
        given["source"],
        given["output"],
        boundary_out=given["boundary"],
        settings=SamObjectsSettings.from_options(given),
        overwrite=given["overwrite"],
        **progress,  # type: ignore[arg-type]
    )
