"""SAM objects as training targets (SSRS): an object-id raster and a boundary raster.

The objects come from the same tiled, merged automatic segmentation as ``segment --mode
anything``, so ids are unique across chips and an object cut by a chip border has one id.
They are painted largest first (a smaller object inside a larger one stays visible) with
the ids of the vector output (1..n, top-left first; 0 = no object), block by block. A
pixel is boundary when one of its 4 neighbours has another id (the edge of the raster is
not a boundary). Georeferenced rasters give GeoTIFFs on their grid; plain images (dataset
tiles) give TIFFs of their pixel grid.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import rasterio.features
import shapely
from rasterio.errors import NotGeoreferencedWarning
from rasterio.windows import Window

from rs_sam.data.bands import select_bands
from rs_sam.data.grid import RasterGrid
from rs_sam.data.image_files import IMAGE_SUFFIXES, read_image
from rs_sam.data.rasters import RasterInfo, is_integer_8bit, open_date
from rs_sam.data.scene import ChipSource, ImageScene, ImageSource, Scene
from rs_sam.errors import InputRasterError, OutputPathError
from rs_sam.inference.cluster import session
from rs_sam.inference.engine import ProgressCallback
from rs_sam.inference.jobs import ChipJobCache
from rs_sam.inference.outputs import RunOutputs, Staging
from rs_sam.inference.raster_io import atomic_path
from rs_sam.segmentation.anything import check_sam, find_objects, objects_frame
from rs_sam.segmentation.objects import MaskGenerator
from rs_sam.segmentation.settings import SegmentSettings

_BLOCK = 1024


@dataclass(frozen=True)
class ObjectMapsResult:
    """What a run wrote."""

    objects: list[Path]
    boundaries: list[Path]
    count: int  # objects painted, over all images
    seconds: float

    def summary(self) -> str:
        files = f"{len(self.objects)} object map(s)" + (
            f" and {len(self.boundaries)} boundary map(s)" if self.boundaries else ""
        )
        return f"{self.count} objects in {files} in {self.seconds:.1f} s"


def sam_objects(
    source: str | Path,
    objects_out: str | Path,
    *,
    boundary_out: str | Path | None = None,
    settings: SegmentSettings | None = None,
    generator: MaskGenerator | None = None,
    overwrite: bool = False,
    show_progress: bool = True,
    on_progress: ProgressCallback | None = None,
) -> ObjectMapsResult:
    """Write SAM object (and boundary) maps of a raster, or of every image in a folder.

    Args:
        source: a georeferenced raster, or a folder of images (PNG, JPEG, BMP, TIFF).
        objects_out: a .tif for a raster; a folder for a folder (one ``<stem>.tif`` each).
        boundary_out: the same for the 0/1 boundary maps, or None.
        settings: encoder, tiling and mask-generation thresholds.
        generator: masks of one chip (default: SAM with ``settings``).
    """
    started = time.perf_counter()
    settings = settings or SegmentSettings()
    source = Path(source)
    outputs = RunOutputs(overwrite=overwrite)
    if generator is None:
        check_sam(settings)  # an unusable encoder fails before any data is read
    try:
        jobs = list(_jobs(source, Path(objects_out), boundary_out and Path(boundary_out), outputs))
    except BaseException:
        outputs.abandon()  # the output folders it made
        raise
    with outputs.staging() as stage:
        count = _write_maps(jobs, stage, settings, generator, show_progress, on_progress)
    return ObjectMapsResult(
        objects=[o for _, o, _ in jobs],
        boundaries=[b for _, _, b in jobs if b is not None],
        count=count,
        seconds=time.perf_counter() - started,
    )


def _write_maps(
    jobs: Sequence[tuple[Path, Path, Path | None]],
    stage: Staging,
    settings: SegmentSettings,
    generator: MaskGenerator | None,
    show_progress: bool,
    on_progress: ProgressCallback | None,
) -> int:
    """Each image's object (and boundary) maps, staged; returns the objects painted."""
    cache = ChipJobCache()  # one model for every image (and one cluster, if any)
    with session(settings.engine):
        return sum(
            _write_map(job, stage, settings, generator, cache, show_progress, on_progress)
            for job in jobs
        )


def _write_map(
    job: tuple[Path, Path, Path | None],
    stage: Staging,
    settings: SegmentSettings,
    generator: MaskGenerator | None,
    cache: ChipJobCache,
    show_progress: bool,
    on_progress: ProgressCallback | None,
) -> int:
    """One image's object (and boundary) maps, staged; returns the objects painted."""
    image, objects_path, boundary_path = job
    scene = _open(image, settings)
    merged, _ = find_objects(
        scene,
        generator,
        settings,
        cache=cache,
        show_progress=show_progress,
        on_progress=on_progress,
    )
    frame = objects_frame(merged, scene.grid, settings.min_area, simplify=None)
    order = np.argsort(-frame.area.to_numpy(), kind="stable")  # largest painted first
    shapes = list(zip(frame.geometry.iloc[order], frame["id"].iloc[order], strict=True))
    georeferenced = isinstance(scene, Scene)
    write_object_maps(
        shapes,
        scene.grid,
        stage.path(objects_path),
        stage.path(boundary_path) if boundary_path is not None else None,
        georeferenced,
    )
    return len(frame)


def write_object_maps(
    shapes: Sequence[tuple[shapely.Geometry, int]],
    grid: RasterGrid,
    objects_path: Path,
    boundary_path: Path | None,
    georeferenced: bool = True,
) -> None:
    """Paint ``(geometry, id)`` in order (later over earlier) into uint32 ids, by blocks."""
    geometries = np.array([g for g, _ in shapes], dtype=object)
    tree = shapely.STRtree(geometries)
    profile = {
        "driver": "GTiff",
        "width": grid.width,
        "height": grid.height,
        "count": 1,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "deflate",
    }
    if georeferenced:
        profile.update(crs=grid.crs, transform=grid.transform)

    def ids(row: int, col: int, height: int, width: int) -> np.ndarray:
        """Object ids of a window (it may reach one pixel past the grid: padded with 0)."""
        transform = grid.transform @ rasterio.Affine.translation(col, row)
        left, top = transform @ (0, 0)
        right, bottom = transform @ (width, height)
        hits = np.sort(tree.query(shapely.box(left, bottom, right, top)))
        if not len(hits):
            return np.zeros((height, width), np.uint32)
        return rasterio.features.rasterize(
            [shapes[i] for i in hits], out_shape=(height, width), transform=transform,
            fill=0, dtype="uint32",
        )  # fmt: skip

    with (
        _atomic(objects_path) as tmp_objects,
        _atomic(boundary_path) as tmp_boundary,
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # plain images: no CRS
        dst = rasterio.open(tmp_objects, "w", dtype="uint32", **profile)
        bdst = None
        if tmp_boundary is not None:
            bdst = rasterio.open(tmp_boundary, "w", dtype="uint8", nbits=1, **profile)
        with dst, bdst or contextlib.nullcontext():
            for row in range(0, grid.height, _BLOCK):
                for col in range(0, grid.width, _BLOCK):
                    height = min(_BLOCK, grid.height - row)
                    width = min(_BLOCK, grid.width - col)
                    window = Window(col, row, width, height)
                    if bdst is None:
                        dst.write(ids(row, col, height, width), 1, window=window)
                        continue
                    # one pixel of context on each side, inside the grid
                    r0, c0 = max(row - 1, 0), max(col - 1, 0)
                    r1 = min(row + height + 1, grid.height)
                    c1 = min(col + width + 1, grid.width)
                    context = ids(r0, c0, r1 - r0, c1 - c0)
                    inner = context[row - r0 : row - r0 + height, col - c0 : col - c0 + width]
                    dst.write(inner, 1, window=window)
                    edges = boundaries(context)
                    bdst.write(
                        edges[row - r0 : row - r0 + height, col - c0 : col - c0 + width].astype(
                            np.uint8
                        ),
                        1,
                        window=window,
                    )


def boundaries(ids: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels with a 4-neighbour of another id (array edges are not borders)."""
    edge = np.zeros(ids.shape, bool)
    vertical = ids[1:] != ids[:-1]
    horizontal = ids[:, 1:] != ids[:, :-1]
    edge[1:] |= vertical
    edge[:-1] |= vertical
    edge[:, 1:] |= horizontal
    edge[:, :-1] |= horizontal
    return edge


def _jobs(
    source: Path, objects_out: Path, boundary_out: Path | None, outputs: RunOutputs
) -> Iterator[tuple[Path, Path, Path | None]]:
    """(image, object map, boundary map) for a raster or for every image of a folder.

    Every output is checked and registered with ``outputs`` (output folders are made).
    """
    if not source.is_dir():
        objects = outputs.raster(objects_out, what="object map")
        boundary = outputs.raster(boundary_out, what="boundary map")
        yield source, objects, boundary  # type: ignore[misc]  # objects_out is not None
        return
    images = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise InputRasterError(
            f"{source} holds no image ({', '.join(IMAGE_SUFFIXES)}); pass a raster or a folder "
            "of images"
        )
    folders: list[Path | None] = []
    for out, what in ((objects_out, "object map folder"), (boundary_out, "boundary map folder")):
        if out is not None and out.resolve() == source.resolve():
            raise OutputPathError(f"{out} is the input folder; write the maps elsewhere")
        folders.append(None if out is None else outputs.folder(out, what))
    objects_folder, boundary_folder = folders
    for image in images:
        name = f"{image.stem}.tif"
        yield (
            image,
            outputs.raster(objects_folder / name, what="object map"),  # type: ignore[operator,misc]
            outputs.raster(boundary_folder / name, what="boundary map")
            if boundary_folder is not None
            else None,
        )


def _open(image: Path, settings: SegmentSettings) -> ChipSource:
    """A georeferenced raster as a :class:`Scene`, anything else as an :class:`ImageScene`."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            info: RasterInfo = open_date(image)
    except InputRasterError:
        pixels = read_image(image)
        bands = select_bands([_fake_info(image, pixels)], settings.bands)
        return ImageScene(
            pixels[[b - 1 for b in bands]],
            label=str(image),
            eight_bit=is_integer_8bit(pixels.dtype.name),
            source=ImageSource(image, tuple(bands)),  # how another process reads it
        )
    return Scene(info, bands=select_bands([info], settings.bands), nodata=settings.nodata)


def _fake_info(path: Path, pixels: np.ndarray) -> RasterInfo:
    """Just enough of a header for band selection of a plain image."""
    grid_height, grid_width = pixels.shape[-2:]
    return RasterInfo(
        path=path,
        label=str(path),
        crs=None,  # type: ignore[arg-type]
        transform=rasterio.Affine.identity(),
        width=grid_width,
        height=grid_height,
        count=pixels.shape[0],
        dtype=pixels.dtype.name,
        nodata=None,
    )


def _atomic(path: Path | None) -> contextlib.AbstractContextManager[Path | None]:
    return atomic_path(path) if path is not None else contextlib.nullcontext()
