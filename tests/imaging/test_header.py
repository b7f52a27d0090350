"""A header is parsed from its file's first bytes; what does not parse so is parsed from the file,
and either way loading makes the same of it."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pydicom.data
from pydicom.uid import generate_uid

from imaging import header, instance
from imaging.study import load_study
from tests.support import bundled


def test_pixel_data_cut_short_is_named_at_load(tmp_path: Path):
    """Native pixel data longer than what is read at load (it stays in the file) but cut short:
    the file is skipped with the shortfall, the rest of the series still loads."""
    source = pydicom.dcmread(bundled("CT_small.dcm"))
    for i in range(2):
        source.SOPInstanceUID = source.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        source.save_as(tmp_path / f"{i}.dcm", enforce_file_format=True)
    whole = (tmp_path / "0.dcm").read_bytes()
    (tmp_path / "0.dcm").write_bytes(whole[:-5000])
    study = load_study(tmp_path)
    [skipped] = study.skipped
    assert skipped.path.name == "0.dcm"
    assert "less than expected (27906 vs 32768 bytes)" in skipped.reason
    assert len(study.series[0].frames) == 1


def _outcome(path: Path) -> tuple:
    """What loading makes of one file: its frames' attributes, or the reason it is skipped."""
    try:
        read = instance.read_instance(path)
    except header.UnreadableFile as exc:
        return ("skipped", str(exc))
    frames = [
        (f.ref, f.geometry, f.modality, f.photometric, f.slope, f.intercept, f.windows, f.time_s)
        for f in read.frames
    ]
    return (read.study_uid, read.series, frames)


def test_a_header_read_from_the_first_bytes_is_the_header_read_from_the_file(monkeypatch):
    """Every file bundled with pydicom (explicit and implicit VR, big endian, deflated, no file
    meta, sequences, multi-frame, encapsulated, damaged) loads the same whether its header is
    parsed from the file's first bytes or, as for a header longer than those, from the file."""
    files = sorted(Path(pydicom.data.__file__).parent.glob("test_files/**/*.dcm"))
    fast = {path.name: _outcome(path) for path in files}
    monkeypatch.setattr(header, "HEAD_BYTES", 256)  # every header is longer: read from the file
    slow = {path.name: _outcome(path) for path in files}
    assert len(files) > 50 and sum(o[0] != "skipped" for o in fast.values()) > 30
    assert fast == slow
