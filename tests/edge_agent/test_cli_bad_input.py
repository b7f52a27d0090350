"""What a user gives the CLI that it cannot use: one line that names what is wrong, exit 2, no
trace, nothing written."""

from __future__ import annotations

from pathlib import Path

from tests.support import run_cli


def _one_line(done) -> str:
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.splitlines()
    return line


def test_a_file_that_is_not_utf8_text_is_one_line_exit_2(sample_study: Path, tmp_path: Path):
    """A DICOM file given as a trajectory or a configuration, a case file in a legacy code
    page."""
    dicom = sample_study / "CT001.dcm"
    line = _one_line(run_cli("replay", dicom, "--out", tmp_path / "r"))
    assert line.startswith(f"error: {dicom} is not a trajectory: not UTF-8 text (")
    line = _one_line(run_cli("read", sample_study, "--out", tmp_path / "r", "--config", dicom))
    assert line.startswith(f"error: config {dicom} is not UTF-8 text (")
    cases = tmp_path / "cases.csv"
    cases.write_bytes("id,question,answer\n1,Läsion?,ja\n".encode("latin-1"))
    line = _one_line(run_cli("eval", "run", cases, "--out", tmp_path / "r"))
    assert line == (
        f"error: case file {cases} is not UTF-8 text (invalid continuation byte at byte 22)"
    )
    assert not (tmp_path / "r").exists()


def test_a_negative_count_of_candidates_is_refused_when_the_config_is_read(
    sample_study: Path, tmp_path: Path
):
    config = tmp_path / "edge-agent.toml"
    config.write_text("[policy.protocol]\ncandidates = -1\n")
    line = _one_line(run_cli("read", sample_study, "--out", tmp_path / "r", "--config", config))
    assert line == (
        f"error: config {config}: config.policy.protocol: candidates must be >= 0 "
        "(0 marks them only), not -1"
    )
    assert not (tmp_path / "r").exists()
