"""Shared fixtures: synthetic bitemporal GeoTIFFs and a tiny random encoder."""

from __future__ import annotations

import functools
import http.server
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.helpers.synthetic import ORIGIN, paint_change, texture, write_raster
from tests.helpers.tiny_models import use_tiny_encoders

# ultralytics (the optional FastSAM extra) writes settings into the home folder on import.
os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="rs-sam-yolo-"))

#: Where the painted change sits in the synthetic pair (rows, cols of a's grid).
CHANGE_ROWS, CHANGE_COLS = slice(60, 110), slice(80, 140)


@pytest.fixture
def pair_paths(tmp_path: Path) -> tuple[Path, Path]:
    """A uint8 RGB pair, 180 x 220 px at 10 m in UTM 33N, with one painted change."""
    image = (texture(180, 220, seed=1) * 200 + 20).astype(np.uint8)
    changed = paint_change(image, CHANGE_ROWS, CHANGE_COLS, 250)
    a = write_raster(tmp_path / "a.tif", image)
    b = write_raster(tmp_path / "b.tif", changed)
    return a, b


@pytest.fixture
def tiny_encoder(monkeypatch: pytest.MonkeyPatch):
    """Make every model load of detect-change and segment build the tiny random configuration."""
    return use_tiny_encoders(monkeypatch.setattr)


@pytest.fixture
def one_thread(tiny_encoder) -> Iterator[None]:
    """Tiny encoders on one torch thread: the float rounding of a dask worker's one thread
    (outputs compare bit for bit), and steady times on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path]]:
    """A local HTTP server on 127.0.0.1 serving the folder it yields (for download tests)."""
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("RS_SAM_OFFLINE", raising=False)
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def data_dir() -> Path:
    """The real-data folder from RS_SAM_DATA_DIR; the test is skipped when it is unset."""
    value = os.environ.get("RS_SAM_DATA_DIR")
    if not value:
        pytest.skip("RS_SAM_DATA_DIR is not set (point it at the shared real-data folder)")
    path = Path(value)
    if not path.is_dir():
        pytest.skip(f"RS_SAM_DATA_DIR={value} is not a folder")
    return path


__all__ = ["CHANGE_COLS", "CHANGE_ROWS", "ORIGIN"]
