"""Atomic output: every file and folder the package writes appears whole or not at all.

A crash, SIGKILL or full disk mid-write leaves only a ``.tmp-*`` sibling behind, never
a truncated file under the final name, so reruns can trust that existing outputs are
complete (the resumable commands rely on this).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path in the target's folder; renames it to ``path`` on success.

    The temp file lives in the same directory so the final ``os.replace`` is atomic
    on POSIX. On any exception the temp file is removed and the target is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{path.name}.", dir=path.parent)
    os.close(fd)
    # mkstemp creates 0600 files; give outputs the usual umask-derived mode instead.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Writes ``data`` to ``path`` atomically and returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Writes UTF-8 ``text`` to ``path`` atomically and returns the path."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> Path:
    """Writes ``obj`` as JSON (UTF-8, sorted keys off, trailing newline) atomically."""
    return write_text(path, json.dumps(obj, indent=indent) + "\n")


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yields a temp folder beside ``path``; on success it replaces ``path`` by renames.

    An existing ``path`` is moved aside first and deleted only after the new folder is in
    place, so a crash leaves either the old or the new folder (plus ``.tmp-*`` litter).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{path.name}.", dir=path.parent))
    try:
        yield tmp
        old = path.with_name(f".old-{path.name}.{tmp.name[-8:]}") if path.exists() else None
        if old is not None:
            path.rename(old)
        try:
            tmp.rename(path)
        except OSError:
            if old is not None:
                old.rename(path)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
