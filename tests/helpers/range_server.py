"""A local HTTP server with byte ranges (what GDAL's /vsicurl/ needs), for remote-input tests.

Python's ``http.server`` ignores ``Range``; GDAL reads a Cloud-Optimized GeoTIFF by
ranges, so this handler answers ``HEAD`` with the size and ``GET`` with ``Range:
bytes=a-b`` (also ``a-`` and ``-n``) as 206 with that slice only, and counts the body
bytes it sends per file. Paths under ``/forbidden/`` answer 403; missing files 404. A
request with several ranges gets the whole file (200), which HTTP allows and the byte
count would show.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


@dataclass
class ServedFiles:
    """A running server: its base URL, its folder and what it sent."""

    url: str
    root: Path
    bytes_sent: Counter[str] = field(default_factory=Counter)  # body bytes per file name
    requests: list[tuple[str, str, str]] = field(default_factory=list)  # method, path, range
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        with self.lock:
            self.bytes_sent.clear()
            self.requests.clear()


class _RangeHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as GDAL's curl expects
    served: ServedFiles  # set on the subclass made per server

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def do_GET(self) -> None:
        self._answer(body=True)

    def _answer(self, *, body: bool) -> None:
        name = unquote(urlsplit(self.path).path).lstrip("/")
        served = self.served
        with served.lock:
            served.requests.append((self.command, name, self.headers.get("Range", "")))
        if name.startswith("forbidden/"):
            return self._empty(403)
        path = (served.root / name).resolve()
        if served.root.resolve() not in path.parents or not path.is_file():
            return self._empty(404)
        data = path.read_bytes()
        start, stop, status = 0, len(data), 200
        match = _RANGE.match(self.headers.get("Range", "").strip())
        if match and (match[1] or match[2]):
            if match[1]:
                start = int(match[1])
                stop = min(len(data), int(match[2]) + 1) if match[2] else len(data)
            else:
                start = max(0, len(data) - int(match[2]))
            if start >= len(data):
                return self._empty(416)
            status = 206
        chunk = data[start:stop]
        self.send_response(status)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Type", "image/tiff")
        self.send_header("Content-Length", str(len(chunk)))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{stop - 1}/{len(data)}")
        self.end_headers()
        if body:
            self.wfile.write(chunk)
            with served.lock:
                served.bytes_sent[name] += len(chunk)

    def _empty(self, status: int) -> None:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()


@contextmanager
def serve_folder(root: Path) -> Iterator[ServedFiles]:
    """Serve ``root`` on 127.0.0.1 (a free port) in a thread until the block ends."""
    served = ServedFiles(url="", root=root)
    handler = type("Handler", (_RangeHandler,), {"served": served})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    served.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield served
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
