"""The classes and functions a torch file's pickle names, read statically: nothing is run.

Used to explain why ``torch.load(weights_only=True)`` refused a file: a pickle that names
functions or classes outside torch's allow-list (``os.system``, ``builtins.eval``, a model class)
would run code when unpickled, while a pickle that breaks off is a damaged file. Both torch
formats are read: the zip archive (its ``data.pkl``) and the legacy format (a run of pickles,
the first holding torch's magic number, then raw tensor bytes); any other pickle is read too.
"""

from __future__ import annotations

import io
import pickletools
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

#: The first pickle of a legacy ``torch.save`` file holds this number.
TORCH_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PICKLES = 5  # magic number, protocol version, system info, the object, storage keys
_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTO = 0x80  # first byte of every pickle of protocol 2 or newer
_STRINGS = {
    "SHORT_BINUNICODE",
    "BINUNICODE",
    "BINUNICODE8",
    "UNICODE",
    "SHORT_BINSTRING",
    "BINSTRING",
    "STRING",
}
_NOT_TORCH = "it is not a PyTorch file (neither a zip archive nor a pickle)"
_NO_PUSH = {"PROTO", "FRAME", "MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT", "STOP", "MARK"}


@dataclass(frozen=True)
class PickleScan:
    """What :func:`scan_torch_file` read.

    Attributes:
        names: ``module.name`` of every class or function the pickle(s) refer to, in order of
            first appearance (``?`` when a name is computed and cannot be read statically).
        damage: Why the file could not be read to the end ("it is truncated", ...), or None.
        torch_file: Whether the file is a ``torch.save`` file (zip archive or legacy format).
    """

    names: tuple[str, ...]
    damage: str | None
    torch_file: bool


def scan_torch_file(path: Path) -> PickleScan:
    """Statically list what a torch file's pickle refers to, and whether it is damaged.

    Never raises for bad content; OSError when the file cannot be opened.
    """
    with path.open("rb") as f:
        head = f.read(4)
        if not head:
            return PickleScan((), "the file is empty", torch_file=False)
        if head == _ZIP_MAGIC:
            return _scan_zip(path)
        f.seek(0)
        return _scan_pickles(f)


def _scan_zip(path: Path) -> PickleScan:
    try:
        with zipfile.ZipFile(path) as archive:
            member = next((n for n in archive.namelist() if n.endswith("/data.pkl")), None)
            if member is None:
                return PickleScan((), "it is a zip archive without a PyTorch pickle", False)
            data = archive.read(member)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        return PickleScan((), "it is truncated or damaged (a broken zip archive)", True)
    names, damage, _ = _scan_one(io.BytesIO(data))
    return PickleScan(tuple(names), damage, torch_file=True)


def _scan_pickles(f: IO[bytes]) -> PickleScan:
    names: list[str] = []
    modern = f.read(1)[:1] == bytes([_PICKLE_PROTO])
    f.seek(0)
    first, damage, value = _scan_one(f)
    if not modern and damage is not None:  # text or binary junk, not an old-protocol pickle
        return PickleScan((), _NOT_TORCH, torch_file=False)
    names += first
    legacy = value == TORCH_MAGIC
    for _ in range(_LEGACY_PICKLES - 1 if legacy and damage is None else 0):
        more, damage, _ = _scan_one(f)
        names += [name for name in more if name not in names]
        if damage is not None:
            break
    if damage is None and not legacy:
        damage = "it is a plain pickle, not a file written by torch.save"
    return PickleScan(tuple(dict.fromkeys(names)), damage, torch_file=legacy)


def _scan_one(f: IO[bytes]) -> tuple[list[str], str | None, Any]:
    """Names in the next pickle of ``f``, why it broke off (None: read to STOP), its value.

    The value is only known for a pickle holding a single number (torch's magic number).
    """
    start = f.tell()
    stack = _Pushes()
    try:
        for opcode, arg, _ in pickletools.genops(f):
            stack.step(opcode.name, arg)
    except (ValueError, EOFError, UnicodeDecodeError) as err:
        end = f.tell()
        f.seek(0, io.SEEK_END)
        if "exhausted" in str(err) or end >= f.tell():
            return stack.names, "it is truncated (its data ends early)", None
        return stack.names, f"it is damaged (unreadable pickle data after byte {start})", None
    return stack.names, None, stack.single


class _Pushes:
    """Follows just enough of a pickle's stack to name its globals (STACK_GLOBAL included)."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.memo: dict[int, Any] = {}
        self.recent: list[Any] = []  # the last two values pushed (strings, else None)
        self.count = 0  # values pushed
        self.first: Any = None

    @property
    def single(self) -> Any:
        """The pickle's value when it pushed exactly one (a number, a string...)."""
        return self.first if self.count == 1 else None

    def step(self, name: str, arg: Any) -> None:
        if name in ("GLOBAL", "INST"):
            module, _, qualname = str(arg).partition(" ")
            self.names.append(f"{module}.{qualname}")
        elif name == "STACK_GLOBAL":
            module, qualname = [None, None, *self.recent][-2:]
            both = isinstance(module, str) and isinstance(qualname, str)
            self.names.append(f"{module}.{qualname}" if both else "?")
        if name == "MEMOIZE":
            self.memo[len(self.memo)] = self.recent[-1] if self.recent else None
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            self.memo[int(arg)] = self.recent[-1] if self.recent else None
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            self._push(self.memo.get(int(arg)))
        elif name in _STRINGS:
            self._push(arg if isinstance(arg, str) else bytes(arg).decode("latin-1"))
        elif name not in _NO_PUSH:
            self._push(arg if name in ("LONG1", "LONG4", "LONG", "INT") else None)

    def _push(self, value: Any) -> None:
        if self.count == 0:
            self.first = value
        self.count += 1
        self.recent = [*self.recent[-1:], value]
