"""A CT series without a Frame of Reference UID: the read writes everything a SEG is not."""

from __future__ import annotations

import shutil

import pydicom

from tests.support import bundled, run_cli, sr_items

WHY = "its series has no Frame of Reference UID"


def test_a_ct_without_frame_of_reference_gets_its_sr_and_a_note_instead_of_a_seg(tmp_path):
    study = tmp_path / "study"
    study.mkdir()
    shutil.copy(bundled("693_UNCR.dcm"), study)  # as distributed: no (0020,0052)
    done = run_cli("read", study, "--out", tmp_path / "out")
    assert done.returncode == 0, done.stderr
    for number in (1, 2):  # one line per finding left out, saying why
        assert f"finding {number}: outline not in the SEG: {WHY}; it is in the SR" in done.stderr
    dicom = tmp_path / "out" / "dicom"
    assert not (dicom / "seg.dcm").exists()
    assert (dicom / "ko.dcm").is_file()
    sr = pydicom.dcmread(dicom / "sr.dcm")
    scoords = [item for item in sr_items(sr) if item.ValueType == "SCOORD"]
    assert len(scoords) == 2  # each outline, on the source image
    assert scoords[0].ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID == (
        pydicom.dcmread(study / "693_UNCR.dcm").SOPInstanceUID
    )
