"""A run's output files: checked before any work, written under temporary names, published together.

Every pipeline registers its outputs with one :class:`RunOutputs` before it reads any
pixel (suffix, folder, permissions, existing files, two outputs that are one file), then
writes inside :meth:`RunOutputs.staging`: each output goes to :meth:`Staging.path`, a
temporary name in a hidden work folder ``.rs-sam-<pid>-<hex>`` in the output's own folder
(so publishing is a rename on one file system). Only when the block ends without error are
all outputs renamed into place; if that fails half-way, the ones already published are
rolled back. On any error nothing new remains and existing files are byte-identical.

A run killed with SIGKILL leaves its work folder behind; the next run writing to that
folder removes the work folders whose owner is gone (each holds a lock on ``owner.lock``
while it lives, and its name records the owner's pid).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from rs_sam.errors import OutputExistsError, OutputPathError, RsSamError
from rs_sam.inference.raster_io import check_raster_output
from rs_sam.vector.io import check_output_path, dataset_members

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: the owner's pid decides alone
    fcntl = None  # type: ignore[assignment]

#: Name prefix of the hidden work folders beside the outputs.
WORK_PREFIX = ".rs-sam-"
_LOCK = "owner.lock"
# A failure with less free space than this on an output's file system is reported as full.
_NEARLY_FULL = 64 * 1024


@dataclass(frozen=True)
class _Output:
    path: Path
    what: str
    members: tuple[Path, ...]  # the files that make it up (a shapefile is several)


class RunOutputs:
    """The outputs of one run; see the module docstring."""

    def __init__(self, *, overwrite: bool) -> None:
        self.overwrite = overwrite
        self._outputs: list[_Output] = []
        self._files: dict[str, _Output] = {}  # real path of each member -> its output
        self._created: list[tuple[Path, Path]] = []  # (folder, top folder) made by this run

    @property
    def paths(self) -> list[Path]:
        """Every registered output, in the order registered."""
        return [o.path for o in self._outputs]

    def vector(self, path: str | Path, what: str = "output") -> Path:
        """A vector output (see :func:`~rs_sam.vector.io.check_output_path`)."""
        path = check_output_path(Path(path), overwrite=self.overwrite)
        return self._add(path, what, dataset_members(path))

    def raster(self, path: str | Path | None, what: str) -> Path | None:
        """An optional GeoTIFF output (see :func:`.raster_io.check_raster_output`)."""
        checked = check_raster_output(path, overwrite=self.overwrite, what=what)
        return None if checked is None else self._add(checked, what, (checked,))

    def file(self, path: str | Path, what: str) -> Path:
        """Any other file (a config) in an existing folder; refused if it exists, unless
        overwrite."""
        path = Path(path).expanduser()
        if path.is_dir():
            raise OutputPathError(f"{what} {path} is a folder; remove it or write elsewhere")
        if os.path.lexists(path) and not self.overwrite:
            raise OutputExistsError(f"{path} exists; pass --overwrite to replace it")
        return self._add(path, what, (path,))

    def folder(self, path: str | Path, what: str) -> Path:
        """A folder for outputs, created now if missing and removed again if the run fails."""
        path = Path(path).expanduser()
        if path.exists() and not path.is_dir():
            raise OutputPathError(f"{what} {path} is a file; give a folder for the outputs")
        missing = path
        while not missing.parent.exists() and missing.parent != missing:
            missing = missing.parent
        if not path.exists():
            try:
                path.mkdir(parents=True)
            except OSError as exc:
                raise OutputPathError(
                    f"{what} {path} cannot be created ({exc.strerror}); choose another folder"
                ) from exc
            self._created.append((path, missing))
        if not os.access(path, os.W_OK | os.X_OK):
            raise OutputPathError(f"{what} {path} is not writable; choose another folder")
        return path

    def _add(self, path: Path, what: str, members: Sequence[Path]) -> Path:
        output = _Output(path, what, tuple(members))
        if path.parent not in {o.path.parent for o in self._outputs}:
            remove_stale_work_folders(path.parent)
        for member in output.members:
            key = _identity(member)
            other = self._files.get(key)
            if other is not None:
                raise OutputPathError(
                    f"{what} {path} and {other.what} {other.path} are the same file; "
                    "give each output its own name"
                )
            self._files[key] = output
        self._outputs.append(output)
        return path

    @contextlib.contextmanager
    def staging(self) -> Iterator[Staging]:
        """Work folders for this run; every output is published when the block succeeds.

        Raises:
            OutputPathError: an output's file system filled up ("no space left on ...").
        """
        folders = list(dict.fromkeys(o.path.parent for o in self._outputs))
        if not folders:
            raise OutputPathError("a run needs at least one output; name one with -o")
        stage = Staging()
        try:
            for folder in folders:
                stage._open(folder)
            yield stage
            stage._publish(self._outputs)
        except BaseException as exc:
            full = None if isinstance(exc, RsSamError) else _no_space(exc, stage)
            stage._close()
            self.abandon()
            if full is not None:
                raise full from exc
            raise
        stage._close()

    def abandon(self) -> None:
        """Remove the folders this run made, where they are empty (on failure before staging)."""
        for path, top in reversed(self._created):
            folder = path
            while True:
                try:
                    folder.rmdir()
                except OSError:
                    break
                if folder == top:
                    break
                folder = folder.parent


class Staging:
    """Where a run writes: :meth:`path` for each output, :attr:`workdir` for intermediates."""

    def __init__(self) -> None:
        self._folders: dict[Path, Path] = {}  # output folder -> its work folder
        self._locks: list[IO[bytes]] = []
        self.writing: Path | None = None  # the output last handed out, for error messages

    @property
    def workdir(self) -> Path:
        """A scratch folder beside the first output (removed with everything else)."""
        return next(iter(self._folders.values())) / "work"

    def path(self, output: Path) -> Path:
        """The temporary name ``output`` is written to (same file system, published later)."""
        self.writing = output
        return self._folders[output.parent] / "out" / output.name

    def _open(self, folder: Path) -> None:
        work = folder / f"{WORK_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
        work.mkdir()
        self._folders[folder] = work
        lock = open(work / _LOCK, "wb")  # held for the whole run
        self._locks.append(lock)
        if fcntl is not None:
            with contextlib.suppress(OSError):  # no locks here: the pid in the name decides
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        for sub in ("out", "work", "previous"):
            (work / sub).mkdir()

    def _publish(self, outputs: Sequence[_Output]) -> None:
        """Rename every staged file into place; on failure restore what was there before."""
        done: list[tuple[Path, Path | None]] = []  # (destination, its previous file or None)
        try:
            for output in outputs:
                self.writing = output.path
                work = self._folders[output.path.parent]
                # Sidecars first, main file last: a reader that sees a .shp sees a complete set.
                for member in reversed(output.members):
                    new = work / "out" / member.name
                    previous = _keep_previous(member, work / "previous" / member.name)
                    if new.exists():
                        done.append((member, previous))
                        os.replace(new, member)
                    elif previous is not None:  # a stale sidecar of the file it replaces
                        done.append((member, previous))
                        member.unlink()
        except BaseException:
            for member, previous in reversed(done):
                with contextlib.suppress(OSError):
                    if previous is not None:
                        os.replace(previous, member)
                    else:
                        member.unlink()
            raise

    def _close(self) -> None:
        for lock in self._locks:
            lock.close()
        for work in self._folders.values():
            shutil.rmtree(work, ignore_errors=True)
        self._locks.clear()


def _keep_previous(path: Path, keep: Path) -> Path | None:
    """A hard link to the file at ``path`` (so it can be restored), or None if there is none."""
    if not os.path.lexists(path):
        return None
    try:
        os.link(path, keep, follow_symlinks=False)
    except OSError:  # a file system without hard links: copy instead
        shutil.copy2(path, keep, follow_symlinks=False)
    return keep


def _identity(path: Path) -> str:
    """One name per file: symlinks, ``./`` and ``..`` resolved (hard links by inode)."""
    try:
        stat = os.stat(path)
        return f"inode:{stat.st_dev}:{stat.st_ino}"
    except OSError:
        return os.path.normcase(os.path.realpath(path))


def remove_stale_work_folders(folder: Path) -> list[Path]:
    """Remove the work folders in ``folder`` of runs that are gone (killed); returns them."""
    removed = []
    with contextlib.suppress(OSError):
        for entry in folder.iterdir():
            if entry.name.startswith(WORK_PREFIX) and entry.is_dir() and not _owner_alive(entry):
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry)
    return removed


def _owner_alive(work: Path) -> bool:
    """Whether the run that made ``work`` still runs (when unsure: yes, keep it)."""
    pid_text = work.name[len(WORK_PREFIX) :].split("-", 1)[0]
    if not pid_text.isdigit():
        return True  # not one of ours
    lock_path = work / _LOCK
    if fcntl is not None and lock_path.exists():
        try:
            with open(lock_path, "rb") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the owner holds it while alive
        except OSError:
            return True
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _no_space(exc: BaseException, stage: Staging) -> OutputPathError | None:
    """The one-line error for a failure caused by a full file system, else None."""
    chain: list[BaseException] = []
    cause: BaseException | None = exc
    while cause is not None and cause not in chain:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    full = any(
        (isinstance(e, OSError) and e.errno == errno.ENOSPC) or "No space left" in str(e)
        for e in chain
    )
    folders = list(stage._folders)
    if not full:
        for folder in folders:
            with contextlib.suppress(OSError):
                if shutil.disk_usage(folder).free < _NEARLY_FULL:
                    full = True
    if not full or isinstance(exc, KeyboardInterrupt):
        return None
    target = stage.writing or (folders[0] if folders else None)
    where = f"writing {target}" if target is not None else "writing the outputs"
    device = _mount_point(target.parent if target is not None else Path.cwd())
    return OutputPathError(
        f"no space left on device {device} {where}; free some space or write elsewhere"
    )


def _mount_point(path: Path) -> str:
    path = Path(os.path.realpath(path))
    while not os.path.ismount(path) and path.parent != path:
        path = path.parent
    return str(path)
