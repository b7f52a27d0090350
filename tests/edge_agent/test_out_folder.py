"""A read into a folder that holds an earlier read: afterwards it holds this read only."""

from __future__ import annotations

import pydicom

from edge_agent.config import Config
from edge_agent.evaluation.runner import refusing
from edge_agent.read import read_study
from edge_agent.sample import write_sample_study
from tools.toolbox import default_toolbox


def test_a_second_read_leaves_nothing_of_the_first_but_what_it_wrote_again(tmp_path):
    study = write_sample_study(tmp_path / "study")
    out = tmp_path / "out"
    first = read_study(study, out, Config())
    assert {p.name for p in first.dicom} > {"sr.dcm", "seg.dcm", "ko.dcm"}
    (out / "report.pdf").write_bytes(b"%PDF of the first read")
    (out / "dicom" / "from-pacs.dcm").write_bytes(b"not ours")  # a name a read never writes
    (out / "notes.txt").write_text("the reader's")

    # every tool refused: the protocol answers without findings, so an SR alone
    second = read_study(study, out, Config(), toolbox=refusing(default_toolbox()))
    assert [p.name for p in second.dicom] == ["sr.dcm"]
    assert sorted(p.name for p in (out / "dicom").iterdir()) == ["from-pacs.dcm", "sr.dcm"]
    sr = pydicom.dcmread(out / "dicom" / "sr.dcm")
    assert sr.SOPInstanceUID == pydicom.dcmread(second.dicom[0]).SOPInstanceUID
    named = {name for image in second.trajectory.images for name in image.files}
    assert {f"evidence/{p.name}" for p in (out / "evidence").iterdir()} == named
    assert not (out / "report.pdf").exists()
    assert (out / "notes.txt").read_text() == "the reader's"
