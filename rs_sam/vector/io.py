"""Writing vector results: check the output path up front, then write atomically.

:func:`check_output_path` runs before any work, so a bad path fails in a second, not after
an hour of inference. :func:`write_vectors` writes to a hidden temporary name in the
destination folder and renames it into place, so a crash never leaves a half-written file
and an existing output is only replaced by a complete one. Pipelines write several outputs
and publish them together (:mod:`rs_sam.inference.outputs`); they write with
:func:`write_vector_file`.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

import geopandas as gpd

from rs_sam.errors import OutputExistsError, OutputPathError

#: Output suffix -> format (GDAL driver name; GeoParquet is written with pyarrow).
SUPPORTED_SUFFIXES: dict[str, str] = {
    ".gpkg": "GPKG",
    ".geojson": "GeoJSON",
    ".shp": "ESRI Shapefile",
    ".parquet": "GeoParquet",
}

# Files that belong to a shapefile besides the .shp itself.
_SHAPEFILE_SIDECARS = (".shx", ".dbf", ".prj", ".cpg", ".qix", ".sbn", ".sbx", ".shp.xml")


def dataset_members(path: Path) -> list[Path]:
    """The files that make up the dataset at ``path`` (a shapefile is several)."""
    if path.suffix.lower() != ".shp":
        return [path]
    return [path, *(path.with_name(path.stem + ext) for ext in _SHAPEFILE_SIDECARS)]


def check_output_path(path: Path, *, overwrite: bool) -> Path:
    """Fail fast if ``path`` cannot be written; call before any work.

    Returns:
        ``path`` with ``~`` expanded.

    Raises:
        OutputPathError: the folder does not exist, ``path`` is a folder, or the suffix is
            not one of :data:`SUPPORTED_SUFFIXES`.
        OutputExistsError: the output (or, for ``.shp``, one of its sidecars) exists and
            ``overwrite`` is False.
    """
    path = Path(path).expanduser()
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        choices = ", ".join(sorted(SUPPORTED_SUFFIXES))
        raise OutputPathError(
            f"output '{path}' has unsupported suffix '{path.suffix}'; use one of {choices}"
        )
    folder = path.parent
    if not folder.is_dir():
        raise OutputPathError(
            f"output folder '{folder}' does not exist; create it or choose another path"
        )
    if not os.access(folder, os.W_OK):
        raise OutputPathError(f"output folder '{folder}' is not writable; choose another folder")
    if path.is_dir():
        raise OutputPathError(
            f"output '{path}' is a folder; give a file name such as {path}/result{suffix}"
        )
    if not overwrite:
        for member in dataset_members(path):
            if member.exists():
                raise OutputExistsError(f"output '{member}' exists; pass --overwrite to replace it")
    return path


def write_vectors(
    gdf: gpd.GeoDataFrame, path: Path, *, overwrite: bool, layer: str | None = None
) -> Path:
    """Write ``gdf`` to ``path`` in the format its suffix names, atomically.

    The data is written to a hidden temporary name in the same folder and renamed over
    ``path`` (every shapefile sidecar too; stale sidecars of a replaced shapefile are
    removed). On error nothing new is left behind and an existing output is untouched. An
    empty frame still gives a valid, empty Polygon layer with the frame's columns and CRS.
    GeoPackage and GeoJSON layers are named ``layer`` or the file's stem; replacing a
    GeoPackage replaces the whole file, not one layer.

    Returns:
        ``path`` with ``~`` expanded.

    Raises:
        OutputPathError, OutputExistsError: as :func:`check_output_path`.
    """
    path = check_output_path(path, overwrite=overwrite)
    suffix = path.suffix.lower()
    tmp = path.with_name(f".{path.stem}.{secrets.token_hex(4)}.tmp{suffix}")
    try:
        write_vector_file(gdf, tmp, layer=layer or path.stem)
        written = [
            (src, dst)
            for src, dst in zip(dataset_members(tmp), dataset_members(path), strict=True)
            if src.exists()
        ]
        # Sidecars first, main file last: a reader that sees the .shp sees a complete set.
        for src, dst in reversed(written):
            os.replace(src, dst)
        new = {dst for _, dst in written}
        for stale in dataset_members(path):
            if stale not in new:
                with contextlib.suppress(FileNotFoundError):
                    stale.unlink()
    except BaseException:
        for member in dataset_members(tmp):
            with contextlib.suppress(OSError):
                member.unlink()
        raise
    return path


def write_vector_file(gdf: gpd.GeoDataFrame, path: Path, *, layer: str | None = None) -> Path:
    """Write ``gdf`` straight to ``path`` (a temporary name) in the format its suffix names.

    An empty frame still gives a valid, empty Polygon layer; GeoPackage and GeoJSON layers
    are named ``layer`` or the file's stem. No checks and no clean-up: callers write to a
    temporary name and publish it (:func:`write_vectors`, :mod:`rs_sam.inference.outputs`).
    """
    path = Path(path)
    driver = SUPPORTED_SUFFIXES[path.suffix.lower()]
    if driver == "GeoParquet":
        gdf.to_parquet(path, index=False)
        return path
    options: dict[str, object] = {}
    if len(gdf) == 0:
        options["geometry_type"] = "Polygon"  # nothing to infer it from
    if driver != "ESRI Shapefile":  # a shapefile's layer is always its file name
        options["layer"] = layer or path.stem
    gdf.to_file(path, driver=driver, engine="pyogrio", index=False, **options)
    return path
