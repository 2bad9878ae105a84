"""Downloads a person can trust, and the one cache folder of the package.

``cache_dir()`` is where every download, extraction and cached model goes:
``$DEEPMAC_NB_CACHE``, default ``~/.cache/deepmac_nb``.

``download(url, dest, size=..., sha256=...)`` streams ``url`` to ``dest`` with a progress
bar, into a temporary file renamed into place only when complete (``_io.atomic_path``),
so an interrupted download never leaves a half file under the final name. Each failed
attempt (``OSError``, which covers ``URLError`` and timeouts, or ``http.client
.HTTPException``) is retried from scratch after a short pause; the last failure becomes
one ``UserError`` line. A size/sha256 the caller knows is checked; either way the
download's size and sha256 are recorded beside it (``<dest>.json``) and a cached file is
checked against that record before reuse (trust on first use where no checksum is
published). Plain ``http://`` addresses of hosts that serve https are fetched over https.

Example:
    >>> from deepmac_nb import download
    >>> path = download.download(url, download.cache_dir("photos", "a.jpg"))  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import time
import urllib.parse
import urllib.request
from pathlib import Path

from deepmac_nb import _io
from deepmac_nb.errors import UserError

CACHE_ENV = "DEEPMAC_NB_CACHE"
DEFAULT_CACHE = Path("~/.cache/deepmac_nb")
# Hosts known to serve the same files over https (the published models, the sample photos).
HTTPS_HOSTS = frozenset(
    {"download.tensorflow.org", "storage.googleapis.com", "raw.githubusercontent.com"}
)
_CHUNK = 1 << 20
_RETRY_PAUSE_S = (1.0, 4.0)


def cache_dir(*parts: str) -> Path:
    """``$DEEPMAC_NB_CACHE`` (default ``~/.cache/deepmac_nb``), joined with ``parts``."""
    root = Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE).expanduser()
    return root.joinpath(*parts)


def secure_url(url: str) -> str:
    """``url`` with ``http`` upgraded to ``https`` for hosts in ``HTTPS_HOSTS``."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "http" and parts.hostname in HTTPS_HOSTS:
        return urllib.parse.urlunsplit(parts._replace(scheme="https"))
    return url


def sha256_of(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def record_path(path: str | Path) -> Path:
    """Where the size/sha256 record of a downloaded file lives: ``<path>.json``."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def verify(path: str | Path, size: int | None = None, sha256: str | None = None) -> None:
    """Checks ``path`` against ``size``/``sha256`` when given, else against its download
    record when there is one; raises ``UserError`` naming what to delete on a mismatch."""
    path = Path(path)
    if size is None and sha256 is None and record_path(path).is_file():
        record = json.loads(record_path(path).read_text())
        size, sha256 = record.get("size"), record.get("sha256")
    got_size = path.stat().st_size
    got_sha = sha256_of(path) if sha256 else None
    if (size is not None and got_size != size) or (sha256 and got_sha != sha256.lower()):
        raise UserError(
            f"{path} does not match its expected size/sha256 ({got_size} bytes, sha256 "
            f"{got_sha or sha256_of(path)}; expected {size} bytes, sha256 {sha256}): "
            "delete it to download again."
        )


def download(
    url: str,
    dest: str | Path,
    size: int | None = None,
    sha256: str | None = None,
    attempts: int = 3,
    timeout: float = 60.0,
    progress: bool = True,
) -> Path:
    """``dest``, downloading ``url`` first unless a verified copy is already there.

    Raises ``UserError`` (one line) when every attempt failed or the bytes do not match
    ``size``/``sha256``; nothing is left under ``dest`` then.
    """
    dest = Path(dest)
    if dest.is_file():
        verify(dest, size, sha256)
        return dest
    url = secure_url(url)
    error: Exception | None = None
    for attempt in range(max(1, attempts)):
        if attempt:
            time.sleep(_RETRY_PAUSE_S[min(attempt, len(_RETRY_PAUSE_S)) - 1])
        try:
            got_size, got_sha = _fetch_once(url, dest, size, sha256, timeout, progress)
            break
        except (OSError, http.client.HTTPException) as exc:
            error = exc
    else:
        raise UserError(
            f"Could not download {url} after {max(1, attempts)} attempts "
            f"({type(error).__name__}: {error}); check the connection or pass a local copy."
        )
    _io.write_json(record_path(dest), {"url": url, "size": got_size, "sha256": got_sha})
    return dest


def _fetch_once(url, dest: Path, size, sha256, timeout, progress) -> tuple[int, str]:
    from tqdm.auto import tqdm

    digest, got = hashlib.sha256(), 0
    with urllib.request.urlopen(url, timeout=timeout) as response, _io.atomic_path(dest) as tmp:
        expected = int(response.headers.get("Content-Length") or -1)
        total = expected if expected >= 0 else size
        name = dest.name if len(dest.name) <= 40 else dest.name[:37] + "..."
        bar = tqdm(total=total, unit="B", unit_scale=True, desc=name, disable=not progress)
        with open(tmp, "wb") as out, bar:
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                digest.update(chunk)
                got += len(chunk)
                bar.update(len(chunk))
        if expected >= 0 and got != expected:
            raise http.client.IncompleteRead(b"", expected - got)
        if (size is not None and got != size) or (sha256 and digest.hexdigest() != sha256.lower()):
            # Not retried: the server sends other bytes than the ones expected.
            raise UserError(
                f"{url} sent {got} bytes with sha256 {digest.hexdigest()}; expected {size} "
                f"bytes, sha256 {sha256} (the file at that address has changed)."
            )
    return got, digest.hexdigest()
