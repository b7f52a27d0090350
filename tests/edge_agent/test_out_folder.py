"""A read into a folder that holds an earlier read: afterwards it holds this read only."""

from __future__ import annotations

import pydicom

from edge_agent.config import Config
from edge_agent.evaluation.runner import refusing
from edge_agent.read import read_study
from edge_agent.replay import replay
from edge_agent.sample import write_sample_study
from tests.edge_agent.test_damaged_slice import DAMAGE_SOURCE_MID_READ
from tests.support import console_script
from tools.toolbox import default_toolbox


def test_a_second_read_leaves_nothing_of_the_first_but_what_it_wrote_again(tmp_path):
    study = write_sample_study(tmp_path / "study")
    out = tmp_path / "out"
    first = read_study(study, out, Config())
    assert {p.name for p in first.dicom} > {"sr.dcm", "seg.dcm", "ko.dcm"}
    (out / "report.pdf").write_bytes(b"%PDF of the first read")
    (out / "dicom" / "from-pacs.dcm").write_bytes(b"not ours")  # a name a read never writes
    (out / "notes.txt").write_text("the reader's")
    (out / "session").mkdir()  # the first read's saved model session (read --keep-session)
    (out / "session" / "session.json").write_text("{}")

    # every tool refused: the protocol answers without findings, so an SR alone
    second = read_study(study, out, Config(), toolbox=refusing(default_toolbox()))
    assert [p.name for p in second.dicom] == ["sr.dcm"]
    assert sorted(p.name for p in (out / "dicom").iterdir()) == ["from-pacs.dcm", "sr.dcm"]
    sr = pydicom.dcmread(out / "dicom" / "sr.dcm")
    assert sr.SOPInstanceUID == pydicom.dcmread(second.dicom[0]).SOPInstanceUID
    named = {name for image in second.trajectory.images for name in image.files}
    assert {f"evidence/{p.name}" for p in (out / "evidence").iterdir()} == named
    assert not (out / "report.pdf").exists()
    assert not (out / "session").exists()  # `ask` would continue the first read's session
    assert (out / "notes.txt").read_text() == "the reader's"


def test_a_read_into_a_folder_that_held_no_read_removes_nothing(tmp_path):
    """A PDF or an image of the user's own, beside where the read writes, are not a read's."""
    out = tmp_path / "out"
    (out / "evidence").mkdir(parents=True)
    (out / "evidence" / "my_scan.png").write_bytes(b"the user's")
    (out / "report.pdf").write_bytes(b"%PDF the user's")
    read_study(write_sample_study(tmp_path / "study"), out, Config())
    assert (out / "report.pdf").read_bytes() == b"%PDF the user's"
    assert (out / "evidence" / "my_scan.png").read_bytes() == b"the user's"


def test_a_read_that_fails_after_its_evidence_leaves_nothing_of_the_earlier_read(tmp_path):
    """Its source changed under it: it ends with its reports and no DICOM, and OUT/dicom does
    not keep the earlier read's objects beside them."""
    study = write_sample_study(tmp_path / "study")
    out = tmp_path / "out"
    assert read_study(study, out, Config()).dicom
    (out / "evidence" / "my_scan.png").write_bytes(b"the user's")
    code = DAMAGE_SOURCE_MID_READ.format(study=str(study))
    done = console_script(code, "read", str(study), "-o", str(out))
    assert done.returncode == 2 and "changed since it was loaded" in done.stderr
    assert list((out / "dicom").iterdir()) == []
    assert (out / "evidence" / "my_scan.png").read_bytes() == b"the user's"


def test_a_replay_into_the_folder_of_another_read_leaves_nothing_of_that_read(tmp_path):
    study = write_sample_study(tmp_path / "study")
    found = read_study(study, tmp_path / "found", Config())
    assert "seg.dcm" in {p.name for p in found.dicom}
    plain = read_study(study, tmp_path / "plain", Config(), toolbox=refusing(default_toolbox()))
    replayed = replay(plain.out_dir / "trajectory.json", found.out_dir)
    assert [p.name for p in replayed.dicom] == ["sr.dcm"]
    assert sorted(p.name for p in (found.out_dir / "dicom").iterdir()) == ["sr.dcm"]
    named = {name for image in plain.trajectory.images for name in image.files}
    assert {f"evidence/{p.name}" for p in (found.out_dir / "evidence").iterdir()} == named
