"""Files are either complete or absent: written beside their place, fsynced, renamed over, and
the folder fsynced (reports, manifests, evaluation results; the spool fsyncs its folders too)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def write_atomic(path: Path, data: bytes) -> None:
    """Temp file, fsync, rename, then fsync the folder: without the last, a crash can lose the
    rename, and a report that was announced as written is gone after the restart."""
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary name beside `path` for a writer that wants a file name (a native library
    saving its state): when the block ends, the file is fsynced and renamed over `path`, then
    the folder fsynced; when it fails, the temporary file goes and `path` is as it was."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        yield temporary
        _fsync(temporary)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    """A rename or a new file in `folder` survives a crash only once the folder is synced."""
    _fsync(folder)


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
