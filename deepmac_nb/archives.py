"""Safe, cached extraction of model archives (``.tar.gz`` / ``.tgz`` / ``.tar`` / ``.zip``).

``extract_cached(archive)`` extracts once into ``cache_dir("extracted", "<stem>-<sha256
prefix>")``: the folder is keyed by the archive's *content*, so a different archive with
the same name is extracted anew instead of silently reusing the old folder.

Extraction refuses absolute member paths, ``..`` components, links pointing outside the
target, members reached through links, device/FIFO members and (in zips) any link; on
Python versions that have it, tarfile's ``"data"`` filter is applied on top.
"""

from __future__ import annotations

import os
import stat
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

from deepmac_nb import _io, download

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")
_HASH_CHARS = 16


class UnsafeArchiveError(ValueError):
    """A member would land outside the extraction folder (or is a device/FIFO/link)."""


def is_archive(path: str | Path) -> bool:
    return Path(path).name.lower().endswith(ARCHIVE_SUFFIXES)


def archive_stem(path: str | Path) -> str:
    name = Path(path).name
    for suffix in ARCHIVE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def extract_cached(archive: str | Path, cache: str | Path | None = None) -> Path:
    """Extracts ``archive`` (safely) once per content; returns the extracted folder."""
    archive = Path(archive)
    root = Path(cache) if cache is not None else download.cache_dir()
    digest = download.sha256_of(archive)[:_HASH_CHARS]
    target = root / "extracted" / f"{archive_stem(archive)}-{digest}"
    if target.is_dir():
        return target
    with _io.atomic_dir(target) as tmp:
        safe_extract(archive, tmp)
    return target


def safe_extract(archive: str | Path, dest: str | Path) -> None:
    """Extracts a tar or zip archive into ``dest`` after checking every member.

    Raises ``UnsafeArchiveError`` before anything is written if any member is unsafe,
    ``ValueError`` when the file is not a readable archive.
    """
    dest = Path(dest).resolve()
    if zipfile.is_zipfile(archive):
        _extract_zip(archive, dest)
        return
    try:
        tar = tarfile.open(archive, "r:*")
    except (tarfile.TarError, OSError) as exc:
        raise ValueError(f"{archive} is not a readable tar or zip archive: {exc}") from exc
    with tar:
        members = tar.getmembers()
        links: set[str] = set()
        for member in members:
            check_member(member, dest, links)
            if member.issym() or member.islnk():
                links.add("/".join(PurePosixPath(member.name.replace("\\", "/")).parts))
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, members=members, filter="data")
        else:  # pragma: no cover - Python < 3.10.12 / 3.11.4
            tar.extractall(dest, members=members)


def _check_name(name: str, original: str) -> tuple[str, ...]:
    name = name.replace("\\", "/")
    parts = PurePosixPath(name).parts
    if name.startswith("/") or (parts and parts[0].endswith(":")):
        raise UnsafeArchiveError(f"Archive member has an absolute path: {original!r}")
    if ".." in parts:
        raise UnsafeArchiveError(f"Archive member has a '..' component: {original!r}")
    return parts


def _extract_zip(archive: str | Path, dest: Path) -> None:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        for info in infos:
            _check_name(info.filename, info.filename)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode) or stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                raise UnsafeArchiveError(f"Zip member is a link or device: {info.filename!r}")
        zf.extractall(dest, members=infos)


def check_member(member: tarfile.TarInfo, dest: Path, links: set[str]) -> None:
    """Raises ``UnsafeArchiveError`` if tar ``member`` could write outside ``dest``."""
    parts = _check_name(member.name, member.name)
    name = "/".join(parts)
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


def find_saved_model(folder: str | Path, max_depth: int = 3) -> Path:
    """The shallowest folder under ``folder`` (itself included, ``max_depth`` levels)
    holding a ``saved_model.pb``; ``ValueError`` when there is none."""
    folder = Path(folder)
    for depth in range(max_depth + 1):
        found = sorted(p.parent for p in folder.glob("/".join(["*"] * depth + ["saved_model.pb"])))
        if found:
            return found[0]
    raise ValueError(f"No saved_model.pb under {folder} (searched {max_depth} levels deep).")
