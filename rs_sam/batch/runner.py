"""Run detect-change or segment on every scene of a list, locally or one scene per dask task.

Each scene is an ordinary run of the command (its output written atomically, so an output
that exists is complete); a scene that fails is recorded with its one-line error and the
others go on. A rerun skips scenes whose output exists (resume). On a cluster each worker
runs whole scenes with the local chip engine, so the inputs and ``OUT_DIR`` must be
reachable from every worker.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from rs_sam.batch.scenes import (
    BatchScene,
    SceneOutcome,
    read_manifest,
    read_scenes,
    write_manifest,
)
from rs_sam.change.settings import ChangeSettings
from rs_sam.errors import ConfigError, OutputPathError, RsSamError
from rs_sam.inference.cluster import ClusterSpec, connect
from rs_sam.options import COMMANDS
from rs_sam.segmentation.settings import SegmentSettings

log = logging.getLogger(__name__)

#: --format -> output suffix.
FORMATS = {"gpkg": ".gpkg", "geojson": ".geojson", "shp": ".shp", "parquet": ".parquet"}
#: Options of the command that a batch does not take (per-scene inputs and outputs).
PER_SCENE = ("a", "b", "image", "output", "save_probability", "save_latent", "save_classes")


@dataclass(frozen=True)
class BatchResult:
    """What a batch did; ``failed`` > 0 makes the CLI exit with 1."""

    out_dir: Path
    manifest: Path
    done: int
    skipped: int
    failed: int
    seconds: float

    def summary(self) -> str:
        failed = f", {self.failed} FAILED (see {self.manifest})" if self.failed else ""
        return (
            f"{self.done} scenes done, {self.skipped} skipped (done before){failed} -> "
            f"{self.out_dir} in {self.seconds:.1f} s"
        )


def run_batch(
    command: str,
    scene_list: str | Path,
    out_dir: str | Path,
    values: Mapping[str, Any] | None = None,
    *,
    output_format: str = "gpkg",
    show_progress: bool = True,
    on_scene: Callable[[SceneOutcome], None] | None = None,
) -> BatchResult:
    """Run ``command`` (``detect_change`` or ``segment``) on every scene of ``scene_list``.

    Args:
        values: the command's other options (as the CLI gives them), applied to every
            scene; ``cluster`` / ``workers`` run the scenes on a dask cluster, one task each;
            ``overwrite`` runs every scene again.
        output_format: gpkg, geojson, shp or parquet.
        on_scene: called with each scene's outcome as it finishes.

    Raises:
        ConfigError, RasterNotFoundError, OutputPathError: a bad scene list, option or
            output folder, before any scene runs.
    """
    started = time.perf_counter()
    if command not in ("detect_change", "segment"):
        raise ConfigError(f"batch runs detect-change or segment, not {command!r}")
    if output_format not in FORMATS:
        raise ConfigError(f"--format {output_format!r} is unknown; use {', '.join(FORMATS)}")
    values = dict(values or {})
    given = sorted(set(values) & set(PER_SCENE))
    if given:
        raise ConfigError(f"batch takes {', '.join(given)} from the scene list, not as options")
    unknown = sorted(set(values) - {o.name for o in COMMANDS[command].options})
    if unknown:
        raise ConfigError(f"{COMMANDS[command].cli_name} has no option(s) {', '.join(unknown)}")
    scenes = read_scenes(scene_list, command)
    settings_class = ChangeSettings if command == "detect_change" else SegmentSettings
    # bad option values fail here, once, not in every scene
    engine = settings_class.from_options({**COMMANDS[command].defaults(), **values}).engine
    for name in ("cluster", "workers"):  # scenes run on the local engine of their process
        values.pop(name, None)
    out = _output_folder(Path(out_dir))
    overwrite = bool(values.get("overwrite"))
    earlier = read_manifest(out)
    outcomes: dict[str, SceneOutcome] = {}
    todo: list[tuple[BatchScene, dict[str, Any]]] = []
    for scene in scenes:
        output = out / f"{scene.name}{FORMATS[output_format]}"
        if output.exists() and not overwrite:
            before = earlier.get(scene.name)
            polygons = before.polygons if before and before.status != "failed" else None
            outcomes[scene.name] = SceneOutcome(scene.name, "skipped", 0.0, polygons)
            continue
        todo.append((scene, {**values, **scene.inputs, "output": str(output)}))

    def listed() -> list[SceneOutcome]:  # in the list's order, whatever order scenes end in
        return [outcomes[s.name] for s in scenes if s.name in outcomes]

    manifest = write_manifest(out, listed())
    ran = (
        _run_on_cluster(engine, command, todo)
        if engine.distributed and todo
        else (run_scene(command, scene.name, scene_values) for scene, scene_values in todo)
    )
    for outcome in tqdm(ran, total=len(todo), desc="scenes", unit="scene",
                        disable=not show_progress):  # fmt: skip
        outcomes[outcome.scene] = outcome
        write_manifest(out, listed())
        if outcome.status == "failed":
            log.warning("scene %s failed: %s", outcome.scene, outcome.error)
        if on_scene is not None:
            on_scene(outcome)
    statuses = [o.status for o in outcomes.values()]
    return BatchResult(
        out_dir=out,
        manifest=manifest,
        done=statuses.count("ok"),
        skipped=statuses.count("skipped"),
        failed=statuses.count("failed"),
        seconds=time.perf_counter() - started,
    )


def run_scene(command: str, name: str, values: Mapping[str, Any]) -> SceneOutcome:
    """One scene's run (in any process): its outcome, never an exception but Ctrl-C."""
    from rs_sam.commands import run

    started = time.perf_counter()
    try:
        result = run(command, values, show_progress=False)
    except RsSamError as err:
        return SceneOutcome(name, "failed", time.perf_counter() - started, None, str(err))
    except Exception as err:  # an internal error of one scene must not stop the others
        text = " ".join(str(err).split())[:300]
        error = f"internal error ({type(err).__name__}: {text}); please report it"
        return SceneOutcome(name, "failed", time.perf_counter() - started, None, error)
    count = getattr(result, "polygons", getattr(result, "objects", None))
    return SceneOutcome(name, "ok", time.perf_counter() - started, count)


def _run_on_cluster(
    engine: ClusterSpec, command: str, todo: list[tuple[BatchScene, dict[str, Any]]]
) -> Iterator[SceneOutcome]:
    """One task per scene, yielded as they end; two queued per worker, so a long list
    costs the client little."""
    from distributed import as_completed

    with connect(engine) as client:
        workers = max(1, len(client.scheduler_info(n_workers=-1).get("workers", {})))
        queue = iter(todo)

        def submit() -> Any:
            item = next(queue, None)
            if item is None:
                return None
            scene, values = item
            return client.submit(run_scene, command, scene.name, values, pure=False)

        running = as_completed([f for f in (submit() for _ in range(2 * workers)) if f])
        for future in running:
            outcome = future.result()
            future.release()
            following = submit()
            if following is not None:
                running.add(following)
            yield outcome


def _output_folder(path: Path) -> Path:
    path = path.expanduser()
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"output folder {path} is a file; give a folder for the outputs")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputPathError(
            f"output folder {path} cannot be created ({err.strerror}); choose another folder"
        ) from err
    return path
