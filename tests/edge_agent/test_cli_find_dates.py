"""`pacs find --date` as a PACS matches a study date: the DICOM form, a range with an end left
open, or an ISO date, against a real Orthanc; any other text is refused before an association."""

from __future__ import annotations

import pytest

from edge_agent.sample import write_sample_study
from tests.peers import Orthanc
from tests.support import run_cli


def test_a_study_is_found_by_its_date_written_as_dicom_or_iso(tmp_path):
    orthanc = Orthanc(tmp_path / "orthanc")
    try:
        study_uid = orthanc.upload(write_sample_study(tmp_path / "study"))  # of 2004-01-19
        node = f"ORTHANC@127.0.0.1:{orthanc.dicom_port}"
        for date, count in [
            ("20040119", 1),
            ("2004-01-19", 1),
            ("2004-01-01-2004-01-31", 1),
            ("-20040119", 1),
            ("2004-01-20-", 0),
            ("2004-01-20", 0),
        ]:
            done = run_cli("pacs", "find", "--pacs", node, "--date", date)
            assert done.returncode == 0, done.stderr
            assert done.stdout.rstrip().endswith(f"{count} stud{'y' if count == 1 else 'ies'}")
            assert (study_uid in done.stdout) == bool(count), date
    finally:
        orthanc.stop()


@pytest.mark.parametrize(
    ("date", "line"),
    [
        ("19.01.2004", "is not a date: give YYYYMMDD or YYYY-MM-DD, or a range FROM-TO"),
        ("-", "is not a date: give YYYYMMDD or YYYY-MM-DD, or a range FROM-TO"),
        ("2004-13-01", "2004-13-01 is no day of the calendar"),
        ("20040230", "20040230 is no day of the calendar"),
        ("20041231-20040101", "ends before it starts"),
    ],
)
def test_a_date_no_pacs_can_match_is_refused_before_an_association(date, line):
    done = run_cli("pacs", "find", "--pacs", "PACS@127.0.0.1:9", "--date", date)
    assert done.returncode == 2, done.stderr
    [error] = done.stderr.splitlines()
    assert error.startswith(f"error: --date {date!r}") and line in error
