"""A source instance's header is read again from its file for the DICOM outputs: a file damaged,
removed or replaced since the study was loaded is named, never an exception of pydicom's."""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest

from imaging.errors import NoReadableImages
from imaging.study import load_study
from tests.support import ct_copies


def _garbage(file: Path, _: Path) -> None:
    file.write_bytes(b"not DICOM at all " * 64)


def _cut_in_header(file: Path, _: Path) -> None:
    file.write_bytes(file.read_bytes()[:2000])  # past its SOP Instance UID


def _removed(file: Path, _: Path) -> None:
    file.unlink()


def _another_instance(file: Path, other: Path) -> None:
    shutil.copy(other, file)


DAMAGE: dict[str, tuple[Callable[[Path, Path], None], str]] = {
    "garbage": (_garbage, "not a DICOM Part 10 file"),
    "cut short in its header": (_cut_in_header, "cut short: the header ends before the pixel data"),
    "removed": (_removed, "No such file or directory"),
    "another instance": (_another_instance, "it holds SOP Instance UID"),
}


@pytest.mark.parametrize(("damage", "reason"), DAMAGE.values(), ids=DAMAGE)
def test_a_source_file_damaged_since_loading_is_named_when_its_header_is_read(
    tmp_path: Path, damage: Callable[[Path, Path], None], reason: str
):
    ct_copies(tmp_path, 4, "source-header")
    study = load_study(tmp_path)
    frames = study.series[0].frames[:2]
    first, second = (study.files[f.ref.sop_instance_uid] for f in frames)
    uid = frames[0].ref.sop_instance_uid
    damage(first, second)
    with pytest.raises(NoReadableImages) as raised:
        study.header(uid)
    message = str(raised.value)
    assert message.startswith(f"{first} changed since it was loaded: ") and reason in message
    assert "\n" not in message


def test_a_source_file_cut_short_in_its_pixel_data_still_gives_its_header(tmp_path: Path):
    """The header is all the outputs need, and the pixels shown were decoded before."""
    ct_copies(tmp_path, 4, "source-header")
    study = load_study(tmp_path)
    uid = study.series[0].frames[0].ref.sop_instance_uid
    file = study.files[uid]
    file.write_bytes(file.read_bytes()[:-1000])
    assert study.header(uid).SOPInstanceUID == uid


@pytest.mark.parametrize("code", [errno.EMFILE, errno.ENFILE, errno.ENOMEM])
def test_a_source_header_unread_for_want_of_file_handles_or_memory_is_not_the_files_fault(
    tmp_path: Path, monkeypatch, code: int
):
    # Not a damaged file: the gateway tries the study again rather than failing it for good.
    ct_copies(tmp_path, 4, "source-header")
    study = load_study(tmp_path)
    uid = next(iter(study.files))

    def exhausted(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(pydicom, "dcmread", exhausted)
    with pytest.raises(OSError) as raised:
        study.header(uid)
    assert raised.value.errno == code
