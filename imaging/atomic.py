"""Files are either complete or absent: written beside their place, fsynced, renamed over, and
the folder fsynced (reports, manifests, evaluation results; the spool fsyncs its folders too)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

SYNC_THREADS = 16  # files fsynced at once by write_all_atomic


def write_atomic(path: Path, data: bytes) -> None:
    """Temp file, fsync, rename, then fsync the folder: without the last, a crash can lose the
    rename, and a report that was announced as written is gone after the restart."""
    write_all_atomic({path: data})


def write_all_atomic(files: Mapping[Path, bytes]) -> None:
    """Several files, each complete or absent, for about the price of one (a read writes dozens).
    Every file is written under a temporary name and all are fsynced at once, from threads: the
    file system commits concurrent syncs together, where one after another each waits for its
    own commit. Only then are they renamed into place, so a failed write or sync changes no file;
    a rename that fails leaves the files renamed before it new, the rest as they were. Each
    folder whose entries changed (a rename, a folder made) is fsynced once, failure or not."""
    temporaries = {path: _temporary(path) for path in files}
    changed: dict[Path, None] = {}  # folders to fsync, in order, each once
    with ThreadPoolExecutor(max_workers=min(SYNC_THREADS, len(files) or 1)) as pool:
        try:
            for path, data in files.items():
                changed.update(dict.fromkeys(_make_folders(path.parent)))
                with _naming(path):
                    temporaries[path].write_bytes(data)
            list(pool.map(_synced, temporaries.items()))
            for path, temporary in temporaries.items():
                os.replace(temporary, path)
                changed[path.parent] = None
        except BaseException:
            for temporary in temporaries.values():
                temporary.unlink(missing_ok=True)
            _sync_after_failure(pool.map, changed)
            raise
        list(pool.map(fsync_dir, changed))


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary name beside `path` for a writer that wants a file name (a native library
    saving its state): when the block ends, the file is fsynced and renamed over `path`, then
    the folder fsynced; when it fails, the temporary file goes and `path` is as it was."""
    made = _make_folders(path.parent)
    temporary = _temporary(path)
    try:
        yield temporary
        _fsync(temporary)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        _sync_after_failure(map, made)
        raise
    for folder in dict.fromkeys([*made, path.parent]):
        fsync_dir(folder)


def _make_folders(folder: Path) -> list[Path]:
    """Make `folder` and its missing parents; the folders whose entries changed (each new
    folder's parent), which a crash can otherwise lose with all they hold."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for new in reversed(missing):
        new.mkdir(exist_ok=True)
    return [new.parent for new in reversed(missing)]


def _sync_after_failure(apply: Callable, folders: Iterable[Path]) -> None:
    """Make durable what a failed write did change; the failure itself is what is raised."""
    try:
        list(apply(fsync_dir, folders))
    except OSError as exc:
        log.warning("folder not synced after a failed write: %s", exc)


def fsync_dir(folder: Path) -> None:
    """A rename or a new file in `folder` survives a crash only once the folder is synced."""
    _fsync(folder)


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp")


@contextmanager
def _naming(path: Path) -> Iterator[None]:
    """An OSError in the block names `path`, the file asked for: a write refused mid-file (a
    full disk) or a failed sync carries no file name of its own, and the temporary's is not one
    the user knows."""
    try:
        yield
    except OSError as exc:
        exc.filename = str(path)
        raise


def _synced(item: tuple[Path, Path]) -> None:
    path, temporary = item
    with _naming(path):
        _fsync(temporary)


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
