"""The official DeepMAC checkpoint (``deepmac_1024x1024_coco17``, TF OD API, COCO) as a
``Predictor``: from a local folder, a local ``.tar.gz``, or downloaded once into a cache.

Integrity: no published checksum for the archive could be verified here, so none is
hard-coded. The first download is checked against the server's ``Content-Length``; its
size and sha256 are then recorded beside the archive (``<archive>.json``), and the cached
archive is re-checked against that record whenever it is extracted again (trust on first
use); the extracted folder is reused as is.

Extraction refuses absolute member paths, ``..`` components, links pointing outside the
target, members reached through links, and device/FIFO members; on Python versions that
have it, tarfile's ``"data"`` filter is applied on top.

Example:
    >>> from deepmac_nb import pretrained
    >>> predictor = pretrained.load_official()          # downloads ~once; doctest: +SKIP
    >>> masks = predictor.predict(image, boxes)          # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
import urllib.error
import urllib.request
from pathlib import Path, PurePosixPath

from deepmac_nb import _io

MODEL_NAME = "deepmac_1024x1024_coco17"
URL = f"http://download.tensorflow.org/models/object_detection/tf2/20210329/{MODEL_NAME}.tar.gz"
CACHE_ENV = "DEEPMAC_NB_CACHE"
_CHUNK = 1 << 20


class UnsafeArchiveError(ValueError):
    """A tar member would land outside the extraction folder (or is a device/FIFO)."""


def default_cache_dir() -> Path:
    """``$DEEPMAC_NB_CACHE`` or ``~/.cache/deepmac_nb``."""
    return Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "deepmac_nb")).expanduser()


def load_official(path_or_none=None, cache_dir=None, url: str = URL):
    """Returns a ``Predictor`` for the official DeepMAC SavedModel.

    Args:
      path_or_none: a ``deepmac_1024x1024_coco17`` folder (holding ``saved_model/``), its
        ``.tar.gz``, or None to download ``url`` into ``cache_dir`` (once).
      cache_dir: where archives are downloaded and extracted; ``default_cache_dir()``.
      url: the archive address (tests point it at a local ``file://`` archive).
    """
    from deepmac_nb.inference.predictor import Predictor

    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if path_or_none is None:
        folder = cache / MODEL_NAME
        if not folder.is_dir():
            archive = cache / f"{MODEL_NAME}.tar.gz"
            if not archive.is_file():
                download(url, archive)
            verify_recorded(archive)
            folder = extract(archive, cache)
    else:
        path = Path(path_or_none)
        if path.is_file() and path.name.endswith((".tar.gz", ".tgz", ".tar")):
            folder = extract(path, cache)
        elif path.is_dir():
            folder = path
        else:
            raise ValueError(f"{path} is neither a {MODEL_NAME} folder nor its .tar.gz.")
    return Predictor.from_saved_model(find_saved_model(folder))


def find_saved_model(folder: str | Path) -> Path:
    """The SavedModel folder inside ``folder``: itself, ``saved_model/`` or ``*/saved_model/``."""
    folder = Path(folder)
    candidates = [folder, folder / "saved_model", *sorted(folder.glob("*/saved_model"))]
    for candidate in candidates:
        if (candidate / "saved_model.pb").is_file():
            return candidate
    raise ValueError(f"No saved_model/saved_model.pb under {folder}.")


def download(url: str, dest: str | Path, timeout: float = 60.0) -> Path:
    """Downloads ``url`` to ``dest`` atomically, checks the size, records size and sha256."""
    dest = Path(dest)
    digest, size = hashlib.sha256(), 0
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, _io.atomic_path(dest) as tmp:
            expected = int(response.headers.get("Content-Length") or -1)
            with open(tmp, "wb") as out:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
            if expected >= 0 and size != expected:
                raise ValueError(f"Download of {url} truncated: {size} of {expected} bytes.")
    except (urllib.error.URLError, TimeoutError) as exc:
        raise ValueError(
            f"Could not download {url} ({exc}); pass a local {MODEL_NAME} folder or .tar.gz."
        ) from exc
    record = {"url": url, "size": size, "sha256": digest.hexdigest()}
    _io.write_json(_record_path(dest), record)
    return dest


def _record_path(archive: Path) -> Path:
    return archive.with_name(archive.name + ".json")


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify_recorded(archive: str | Path) -> None:
    """Checks ``archive`` against the size/sha256 recorded at download (if recorded)."""
    archive = Path(archive)
    record_path = _record_path(archive)
    if not record_path.is_file():
        return
    record = json.loads(record_path.read_text())
    size, digest = archive.stat().st_size, sha256_of(archive)
    if size != record.get("size") or digest != record.get("sha256"):
        raise ValueError(
            f"{archive} does not match its download record {record_path} (size {size}, "
            f"sha256 {digest}); delete both files to download again."
        )


def extract(archive: str | Path, cache_dir: str | Path) -> Path:
    """Safely extracts ``archive`` once into ``cache_dir/<archive stem>``; returns that folder."""
    from deepmac_nb.inference.export import atomic_dir

    archive = Path(archive)
    stem = archive.name.removesuffix(".gz").removesuffix(".tgz").removesuffix(".tar")
    target = Path(cache_dir) / stem
    if target.is_dir():
        return target
    with atomic_dir(target) as tmp:
        safe_extract(archive, tmp)
    return target


def safe_extract(archive: str | Path, dest: str | Path) -> None:
    """Extracts a tar archive into ``dest`` after checking every member (module docstring).

    Raises ``UnsafeArchiveError`` before anything is written if any member is unsafe.
    """
    dest = Path(dest).resolve()
    with tarfile.open(archive, "r:*") as tar:
        members = tar.getmembers()
        links = set()
        for member in members:
            check_member(member, dest, links)
            if member.issym() or member.islnk():
                links.add("/".join(PurePosixPath(member.name.replace("\\", "/")).parts))
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, members=members, filter="data")
        else:  # pragma: no cover - Python < 3.10.12 / 3.11.4
            tar.extractall(dest, members=members)


def check_member(member: tarfile.TarInfo, dest: Path, links: set[str]) -> None:
    """Raises ``UnsafeArchiveError`` if ``member`` could write outside ``dest``."""
    name = member.name.replace("\\", "/")
    parts = PurePosixPath(name).parts
    if name.startswith("/") or (parts and parts[0].endswith(":")):
        raise UnsafeArchiveError(f"Archive member has an absolute path: {member.name!r}")
    if ".." in parts:
        raise UnsafeArchiveError(f"Archive member has a '..' component: {member.name!r}")
    if any("/".join(parts[:i]) in links for i in range(1, len(parts))):
        raise UnsafeArchiveError(f"Archive member goes through a link: {member.name!r}")
    if member.isdev() or member.isfifo():
        raise UnsafeArchiveError(f"Archive member is a device or FIFO: {member.name!r}")
    if member.issym():
        _check_inside(dest, (dest / name).parent / member.linkname, member)
    elif member.islnk():
        _check_inside(dest, dest / member.linkname, member)


def _check_inside(dest: Path, target: Path, member: tarfile.TarInfo) -> None:
    resolved = Path(os.path.normpath(target))
    if resolved != dest and dest not in resolved.parents:
        raise UnsafeArchiveError(
            f"Archive link {member.name!r} -> {member.linkname!r} points outside the target."
        )
