"""C-GET of a study from a real Orthanc: every instance it holds comes back, whatever its class."""

from __future__ import annotations

import shutil

import pydicom
import pytest

from dicom_gateway.retrieve import _classes_in_study, find_studies, get_study
from dicom_gateway.settings import Peer
from edge_agent.config import Config
from edge_agent.read import read_study
from edge_agent.sample import write_sample_study
from tests.peers import Orthanc


@pytest.mark.parametrize("find_allowed", [True, False], ids=["classes-in-study", "get-only"])
def test_a_study_holding_our_results_comes_back_whole(tmp_path, find_allowed):
    """The SR, SEG, KO and captures the gateway sends back sit in the study beside its images;
    a C-GET of that study brings all of them: with the classes Orthanc's C-FIND names, and with
    the storage classes offered when the PACS answers no C-FIND (it allows us C-GET only)."""
    study = write_sample_study(tmp_path / "study")
    result = read_study(study, tmp_path / "out", Config())
    for path in result.dicom:
        shutil.copy(path, study / path.name)
    orthanc = Orthanc(tmp_path / "orthanc", extra={"DicomAlwaysAllowFind": find_allowed})
    try:
        study_uid = orthanc.upload(study)
        peer = Peer("ORTHANC", "127.0.0.1", orthanc.dicom_port)
        named = _classes_in_study("EDGEAGENT", peer, study_uid)  # what the C-GET offers
        count = get_study("EDGEAGENT", peer, study_uid, tmp_path / "got")
        [found] = find_studies("EDGEAGENT", peer) if find_allowed else [None]
    finally:
        orthanc.stop()
    classes = sorted({str(pydicom.dcmread(p).SOPClassUID) for p in study.iterdir()})
    assert list(named) == (classes if find_allowed else [])
    if found is not None:  # several values as DICOM and QIDO-RS write them: CT\\SR\\...
        modalities = found.attributes["ModalitiesInStudy"]
        assert {"CT", "SR", "SEG"} <= set(modalities.split("\\")) and "[" not in modalities
    sent = {str(pydicom.dcmread(p).SOPInstanceUID) for p in study.iterdir()}
    got = {str(pydicom.dcmread(p).SOPInstanceUID) for p in (tmp_path / "got").iterdir()}
    assert count == len(sent) == 16 and got == sent
