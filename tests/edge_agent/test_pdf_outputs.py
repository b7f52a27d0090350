"""report.pdf beyond `read --pdf`: printed again by `replay --pdf`, and, from the gateway with
`[report] pdf = true` and `pdf_dicom = true`, delivered to the PACS as an Encapsulated PDF in the
study it reports on (real `edge-agent serve`, real Orthanc, dciodvfy)."""

from __future__ import annotations

import json

import pydicom

from edge_agent.sample import write_sample_study
from tests.peers import Gateway, Orthanc, dciodvfy_errors, free_port, wait_for
from tests.support import pdf_text, run_cli

ANSWER = "Protocol demonstration (no AI model)."
PDF_CLASS = "1.2.840.10008.5.1.4.1.1.104.1"


def test_replay_pdf_prints_the_report_with_its_answer(tmp_path):
    study = write_sample_study(tmp_path / "study")
    done = run_cli("read", study, "--out", tmp_path / "read")
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "read" / "report.pdf").exists()
    again = run_cli(
        "replay", tmp_path / "read" / "trajectory.json", "--out", tmp_path / "re", "--pdf"
    )
    assert again.returncode == 0, again.stderr
    printed = tmp_path / "re" / "report.pdf"
    assert f"pdf: {printed}" in again.stdout
    answer = json.loads((tmp_path / "re" / "report.json").read_text())["answer"]
    assert answer.startswith(ANSWER)
    text = " ".join(pdf_text(printed).split())  # the page wraps the answer over lines
    assert " ".join(answer.split())[:80] in text


def test_a_follow_up_prints_a_pdf_that_was_printed_before_again(tmp_path):
    """report.pdf never lags behind report.html and the SR: it holds the follow-up too."""
    study = write_sample_study(tmp_path / "study")
    assert run_cli("read", study, "--out", tmp_path / "read", "--pdf").returncode == 0
    done = run_cli("ask", tmp_path / "read", "How many candidates?")  # no --pdf
    assert done.returncode == 0, done.stderr
    assert f"pdf: {tmp_path / 'read' / 'report.pdf'}" in done.stdout
    assert "How many candidates?" in pdf_text(tmp_path / "read" / "report.pdf")


def test_the_gateway_delivers_report_pdf_as_an_encapsulated_pdf_in_the_study(tmp_path):
    port = free_port()
    orthanc = Orthanc(tmp_path / "orthanc", {"edge": ["EDGEAGENT", "127.0.0.1", port]})
    gateway = Gateway(
        tmp_path / "gw",
        port=port,
        allowed=["ORTHANC"],
        destinations=[f"ORTHANC@127.0.0.1:{orthanc.dicom_port}"],
        tables="[report]\npdf = true\npdf_dicom = true\n",
    )
    try:
        study_uid = orthanc.push(write_sample_study(tmp_path / "study"), "edge")
        [series] = wait_for(lambda: orthanc.series_of(study_uid, "DOC"), 120, "the PDF in Orthanc")
        [instance] = series["Instances"]
        tags = orthanc.get(f"/instances/{instance}/simplified-tags")
        assert tags["SOPClassUID"] == PDF_CLASS and tags["StudyInstanceUID"] == study_uid
        assert tags["MIMETypeOfEncapsulatedDocument"] == "application/pdf"
        received = tmp_path / "received.dcm"
        received.write_bytes(orthanc.get_bytes(f"/instances/{instance}/file"))
        assert dciodvfy_errors(received) == []
        document = pydicom.dcmread(received)
        pdf = tmp_path / "received.pdf"
        pdf.write_bytes(document.EncapsulatedDocument[: document.EncapsulatedDocumentLength])
        assert ANSWER in pdf_text(pdf)  # the report itself, as printed beside the SR
        assert len(list(gateway.spool.rglob("report.pdf"))) == 1  # kept beside the other results
    finally:
        gateway.stop()
        orthanc.stop()
