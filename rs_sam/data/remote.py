"""Input rasters on web servers and in object storage, read by windows through GDAL.

A raster input may be an ``https://`` (or ``http://``) URL, an ``s3://`` or ``gs://``
object, or any GDAL virtual file system path (``/vsicurl/...``, ``/vsis3/...``,
``/vsiaz/...``). It is mapped to the GDAL path (``https://x`` -> ``/vsicurl/https://x``,
``s3://b/k`` -> ``/vsis3/b/k``, ``gs://b/k`` -> ``/vsigs/b/k``) and read through rasterio
like a local file, by windows and overviews only: a Cloud-Optimized GeoTIFF is never
downloaded whole. Messages keep the text the user gave.

Reads of remote inputs run inside :func:`remote_env`, which adds GDAL settings for COGs
(no directory listing on open, merged and multiplexed ranges, a block cache, retries)
that the user has not set already (environment variables or an outer ``rasterio.Env``
win). ``CPL_VSIL_CURL_ALLOWED_EXTENSIONS`` is left unset: it would refuse URLs that do not
end in ``.tif`` (signed URLs, VRTs); ``GDAL_DISABLE_READDIR_ON_OPEN=EMPTY_DIR`` already
stops GDAL probing for side-car files.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

import rasterio
from rasterio.env import get_gdal_config

from rs_sam.errors import InputRasterError, RasterNotFoundError, RemoteInputError, RsSamError

#: GDAL's virtual file system for each URL scheme.
SCHEMES = {"http": "/vsicurl/", "https": "/vsicurl/", "s3": "/vsis3/", "gs": "/vsigs/"}

#: GDAL settings for reading COGs remotely, used where the user has not set them.
GDAL_DEFAULTS = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "GDAL_HTTP_MULTIPLEX": "YES",
    "GDAL_HTTP_MAX_RETRY": "3",
    "GDAL_HTTP_RETRY_DELAY": "1",
    "GDAL_HTTP_CONNECTTIMEOUT": "30",
    "VSI_CACHE": "TRUE",
}

#: A URL's scheme; also the ``https:/host`` that ``pathlib.Path`` makes of ``https://host``.
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):/(/?)")

#: How to give credentials, by GDAL file system.
_CREDENTIALS = {
    "/vsis3/": "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or AWS_PROFILE, "
    "or AWS_NO_SIGN_REQUEST=YES for a public bucket",
    "/vsigs/": "set GOOGLE_APPLICATION_CREDENTIALS to a service-account key file, "
    "or GS_NO_SIGN_REQUEST=YES for a public bucket",
    "/vsicurl/": "check that the URL is public (a signed URL may have expired) or pass "
    "credentials in GDAL_HTTP_HEADERS",
    "/vsiaz/": "set AZURE_STORAGE_CONNECTION_STRING or AZURE_STORAGE_ACCOUNT and "
    "AZURE_STORAGE_ACCESS_KEY, or AZURE_NO_SIGN_REQUEST=YES for a public container",
}


def gdal_path(value: object) -> str:
    """The GDAL path of a remote input (see :func:`~rs_sam.errors.looks_remote`).

    ``/vsi...`` paths are kept as they are; a URL mangled by ``pathlib.Path``
    (``https:/host/a.tif``) is mended.

    Raises:
        RemoteInputError: the URL's scheme has no GDAL file system here.
    """
    text = str(value)
    if text.startswith("/vsi"):
        return text
    match = _URL.match(text)
    scheme = match[1].lower() if match else ""
    if match is None or scheme not in SCHEMES:
        raise RemoteInputError(
            f"input raster {text}: {scheme or 'this'}:// URLs are not supported; use https://, "
            "s3://, gs:// or a GDAL /vsi... path"
        )
    rest = text[match.end() :]  # after 'scheme://' (or 'scheme:/')
    if SCHEMES[scheme] == "/vsicurl/":
        return f"/vsicurl/{scheme}://{rest}"
    return f"{SCHEMES[scheme]}{rest}"


def mend_url(text: str) -> str:
    """``text`` with the ``//`` that ``pathlib.Path`` folds restored (``https:/h`` -> ``https://h``)."""
    match = _URL.match(text)
    if match is None or match[2] or match[1].lower() not in SCHEMES:
        return text
    return f"{match[1]}://{text[match.end() :]}"


def remote_options() -> dict[str, str]:
    """The entries of :data:`GDAL_DEFAULTS` not set by the user (environment or GDAL config)."""
    return {key: value for key, value in GDAL_DEFAULTS.items() if get_gdal_config(key) is None}


@contextlib.contextmanager
def remote_env(active: bool = True, *, fresh: str | None = None) -> Iterator[None]:
    """GDAL settings for remote reads around a block (nothing when ``active`` is False).

    ``fresh``: a GDAL path to look up again rather than from GDAL's cache of earlier
    attempts in this process (a file missing a minute ago may be there now, and a cached
    failure loses its HTTP status).
    """
    if not active:
        yield
        return
    options = remote_options()
    if fresh is not None:  # GDAL splits this list at ':', so 'http://' only widens it
        earlier = get_gdal_config("CPL_VSIL_CURL_NON_CACHED")
        options["CPL_VSIL_CURL_NON_CACHED"] = f"{earlier}:{fresh}" if earlier else fresh
    with rasterio.Env(**options):
        yield


def remote_open_error(label: str, path: str, err: Exception) -> RsSamError:
    """The one-line error for a remote input GDAL cannot open.

    Args:
        label: the input as the user gave it.
        path: its GDAL path (picks the credentials hint).
        err: rasterio's error.
    """
    detail = _first_line(err)
    lowered = detail.lower()
    system = next((prefix for prefix in _CREDENTIALS if path.startswith(prefix)), "")
    hint = _CREDENTIALS.get(system, "check the path and the credentials GDAL needs for it")
    if "404" in detail or "no such file" in lowered or "does not exist" in lowered:
        return RasterNotFoundError(
            f"input raster {label} was not found on the server ({detail}); check the URL"
        )
    if "not defined" in lowered or "credentials" in lowered:
        return RemoteInputError(f"input raster {label}: no credentials were found; {hint}")
    if any(code in detail for code in ("401", "403")) or "denied" in lowered:
        return RemoteInputError(f"input raster {label}: access denied ({detail}); {hint}")
    if "curl" in lowered or "resolve" in lowered or "timed out" in lowered:
        return RemoteInputError(
            f"input raster {label} cannot be reached ({detail}); check the URL, the network "
            "and any proxy (HTTPS_PROXY)"
        )
    return InputRasterError(
        f"{label} is not a readable raster ({detail}); pass a GeoTIFF, COG or VRT"
    )


def _first_line(err: Exception) -> str:
    text = " ".join(str(err).split("\n")[0].split())
    return text.rstrip(".") or type(err).__name__
