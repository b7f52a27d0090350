"""Files are either complete or absent: written beside their place, fsynced, renamed over, and
the folder fsynced (reports, manifests, evaluation results; the spool fsyncs its folders too)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

SYNC_THREADS = 16  # files fsynced at once by write_all_atomic


def write_atomic(path: Path, data: bytes) -> None:
    """Temp file, fsync, rename, then fsync the folder: without the last, a crash can lose the
    rename, and a report that was announced as written is gone after the restart."""
    write_all_atomic({path: data})


def write_all_atomic(files: Mapping[Path, bytes]) -> None:
    """Several files, each complete or absent, for about the price of one (a read writes dozens).
    Every file is written under a temporary name and all are fsynced at once, from threads: the
    file system commits concurrent syncs together, where one after another each waits for its
    own commit. Only then is the first renamed, so when a write fails no file has changed; each
    folder is fsynced once, after its renames."""
    temporaries = {path: _temporary(path) for path in files}
    with ThreadPoolExecutor(max_workers=min(SYNC_THREADS, len(files) or 1)) as pool:
        try:
            for path, data in files.items():
                path.parent.mkdir(parents=True, exist_ok=True)
                temporaries[path].write_bytes(data)
            list(pool.map(_fsync, temporaries.values()))
            for path, temporary in temporaries.items():
                os.replace(temporary, path)
        except BaseException:
            for temporary in temporaries.values():
                temporary.unlink(missing_ok=True)
            raise
        list(pool.map(fsync_dir, dict.fromkeys(path.parent for path in files)))


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary name beside `path` for a writer that wants a file name (a native library
    saving its state): when the block ends, the file is fsynced and renamed over `path`, then
    the folder fsynced; when it fails, the temporary file goes and `path` is as it was."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = _temporary(path)
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


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp")


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
