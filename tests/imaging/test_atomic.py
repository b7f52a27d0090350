"""Report files are durable once written: temp file, fsync, rename, then the folder's fsync."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from imaging import atomic


def _on_fsync(monkeypatch, note: Callable[[int, str], object]) -> list:
    """From now on each fsync first calls `note(descriptor, "file" or "folder")`; what the notes
    return, None left out. A note that raises fails that fsync."""
    notes = []
    real_fsync = os.fsync

    def fsync(descriptor):
        kind = "folder" if stat.S_ISDIR(os.fstat(descriptor).st_mode) else "file"
        if (noted := note(descriptor, kind)) is not None:
            notes.append(noted)
        real_fsync(descriptor)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    return notes


def _path(descriptor: int) -> str:
    return os.readlink(f"/proc/self/fd/{descriptor}")


def test_the_folder_is_synced_after_the_rename(tmp_path, monkeypatch):
    # What the folder holds when it is synced: the file must already be in its place.
    synced = _on_fsync(
        monkeypatch,
        lambda _, kind: (kind, sorted(os.listdir(tmp_path / "out")) if kind == "folder" else None),
    )
    atomic.write_atomic(tmp_path / "out" / "report.json", b"{}")
    # "out" is new: its parent is synced too
    assert synced == [("file", None)] + [("folder", ["report.json"])] * 2
    assert (tmp_path / "out" / "report.json").read_bytes() == b"{}"


def test_a_writer_that_fails_leaves_the_file_saved_before(tmp_path):
    """A native library saving its state to a name: what it wrote half is never in place."""
    path = tmp_path / "kv.bin"
    path.write_bytes(b"before")
    with pytest.raises(OSError, match="disk full"), atomic.atomic_path(path) as temporary:
        temporary.write_bytes(b"half")
        raise OSError("disk full")
    assert path.read_bytes() == b"before"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kv.bin"]
    with atomic.atomic_path(path) as temporary:
        temporary.write_bytes(b"after")
    assert path.read_bytes() == b"after"


def test_many_files_are_all_synced_before_any_is_renamed_and_each_folder_synced_once(
    tmp_path, monkeypatch
):
    out = tmp_path / "out"
    # What is in place (temporary files aside) when each file and each folder is synced.
    synced = _on_fsync(
        monkeypatch,
        lambda _, kind: (kind, sorted(p.name for p in out.rglob("[!.]*") if p.is_file())),
    )
    files = {out / "a.png": b"a", out / "b.png": b"b", out / "dicom" / "sr.dcm": b"sr"}
    atomic.write_all_atomic(files)
    placed = ["a.png", "b.png", "sr.dcm"]
    # no rename before every sync; then tmp_path (out is new), out and out/dicom
    assert synced == [("file", [])] * 3 + [("folder", placed)] * 3
    assert {path: path.read_bytes() for path in files} == files


def test_a_failed_write_among_many_changes_no_file(tmp_path):
    before = tmp_path / "report.json"
    before.write_bytes(b"before")
    blocked = tmp_path / "blocked"
    blocked.write_bytes(b"a file where a folder is needed")
    with pytest.raises(OSError):
        atomic.write_all_atomic({before: b"after", blocked / "sr.dcm": b"sr"})
    assert before.read_bytes() == b"before"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocked", "report.json"]


def _synced_folders(monkeypatch) -> list[str]:
    """The folders fsynced from now on, by path."""
    return _on_fsync(monkeypatch, lambda fd, kind: _path(fd) if kind == "folder" else None)


def test_a_file_sync_that_fails_in_its_thread_changes_no_file(tmp_path, monkeypatch):
    files = {tmp_path / name: b"after" for name in ("a.json", "b.json", "c.json")}
    for path in files:
        path.write_bytes(b"before")

    def fail_b(descriptor, _) -> None:
        if _path(descriptor).endswith(".b.json.tmp"):
            raise OSError(errno.EIO, "I/O error")

    _on_fsync(monkeypatch, fail_b)
    with pytest.raises(OSError, match="I/O error") as raised:
        atomic.write_all_atomic(files)
    assert raised.value.filename == str(tmp_path / "b.json")  # the file asked for, by its name
    assert {path.read_bytes() for path in files} == {b"before"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.json", "c.json"]


def test_files_renamed_before_a_failed_rename_have_their_folder_synced(tmp_path, monkeypatch):
    first, second = tmp_path / "one" / "a.json", tmp_path / "two" / "b.json"
    for path in (first, second):
        path.parent.mkdir()
        path.write_bytes(b"before")
    synced = _synced_folders(monkeypatch)
    real_replace = os.replace

    def replace(source, target):
        if Path(target) == second:
            raise OSError("rename failed")
        real_replace(source, target)

    monkeypatch.setattr(atomic.os, "replace", replace)
    with pytest.raises(OSError, match="rename failed"):
        atomic.write_all_atomic({first: b"after", second: b"after"})
    assert (first.read_bytes(), second.read_bytes()) == (b"after", b"before")
    assert synced == [str(first.parent)]
    assert [p.name for p in second.parent.iterdir()] == ["b.json"]


def test_a_folder_made_for_a_file_is_synced_in_its_parent(tmp_path, monkeypatch):
    synced = _synced_folders(monkeypatch)
    atomic.write_all_atomic({tmp_path / "out" / "dicom" / "sr.dcm": b"sr"})
    assert synced == [str(tmp_path), str(tmp_path / "out"), str(tmp_path / "out" / "dicom")]
    synced.clear()
    with atomic.atomic_path(tmp_path / "state" / "kv.bin") as temporary:
        temporary.write_bytes(b"kv")
    assert synced == [str(tmp_path), str(tmp_path / "state")]


def test_a_write_the_system_refuses_mid_file_names_the_file(tmp_path):
    """A full disk, or here a file size limit: the kernel's error carries no file name; the
    one a user reads names the file that was not written."""
    code = (
        "import resource, signal, sys\n"
        "from pathlib import Path\n"
        "from imaging.atomic import write_all_atomic\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))\n"
        "try:\n"
        "    write_all_atomic({Path(sys.argv[1]): bytes(65536)})\n"
        "except OSError as exc:\n"
        "    print(exc.errno, exc.filename)\n"
    )
    target = tmp_path / "report.json"
    done = subprocess.run(
        [sys.executable, "-c", code, str(target)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.stdout.split() == [str(errno.EFBIG), str(target)], done.stderr
    assert list(tmp_path.iterdir()) == []  # nothing half-written left behind
