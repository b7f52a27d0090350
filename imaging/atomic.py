"""Files are either complete or absent: written beside their place, fsynced, renamed over, and
the folder fsynced (reports, manifests, evaluation results; the spool fsyncs its folders too)."""

from __future__ import annotations

import os
from pathlib import Path


def write_atomic(path: Path, data: bytes) -> None:
    """Temp file, fsync, rename, then fsync the folder: without the last, a crash can lose the
    rename, and a report that was announced as written is gone after the restart."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except OSError:
        temporary.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    """A rename or a new file in `folder` survives a crash only once the folder is synced."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
