"""Report files are durable once written: temp file, fsync, rename, then the folder's fsync."""

from __future__ import annotations

import os
import stat

import pytest

from imaging import atomic


def test_the_folder_is_synced_after_the_rename(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def fsync(descriptor):
        mode = os.fstat(descriptor).st_mode
        # What the folder holds when it is synced: the file must already be in its place.
        listing = sorted(os.listdir(tmp_path / "out")) if stat.S_ISDIR(mode) else None
        synced.append(("folder" if stat.S_ISDIR(mode) else "file", listing))
        real_fsync(descriptor)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    atomic.write_atomic(tmp_path / "out" / "report.json", b"{}")
    assert synced == [("file", None), ("folder", ["report.json"])]
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
    synced = []
    real_fsync = os.fsync

    def fsync(descriptor):
        # What is in place (temporary files aside) when each file and each folder is synced.
        listing = sorted(p.name for p in (tmp_path / "out").rglob("[!.]*") if p.is_file())
        kind = "folder" if stat.S_ISDIR(os.fstat(descriptor).st_mode) else "file"
        synced.append((kind, listing))
        real_fsync(descriptor)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    out = tmp_path / "out"
    files = {out / "a.png": b"a", out / "b.png": b"b", out / "dicom" / "sr.dcm": b"sr"}
    atomic.write_all_atomic(files)
    placed = ["a.png", "b.png", "sr.dcm"]
    assert synced == [("file", [])] * 3 + [("folder", placed)] * 2  # no rename before every sync
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
