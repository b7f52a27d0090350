"""The console script ends the process itself once its exit functions have run: the status and
everything printed must be what a normal interpreter exit gives; what the user can mend ends in
one line and exit 2."""

from __future__ import annotations

from pathlib import Path

from tests.support import console_script, run_cli


def test_a_failure_while_loading_a_command_exits_1_with_its_trace():
    broken = "import edge_agent.cli.app as app; app.COMMANDS['broken'] = ('json', 'missing')"
    done = console_script(broken, "broken")
    assert done.returncode == 1
    assert "AttributeError: module 'json' has no attribute 'missing'" in done.stderr


def test_an_interrupt_before_the_command_runs_exits_130():
    interrupt = (
        "import edge_agent.cli.app as app\n"
        "def stop(*_): raise KeyboardInterrupt\n"
        "app.make_app = stop"
    )
    assert console_script(interrupt, "read").returncode == 130


def test_a_read_prints_every_line_and_writes_every_file_before_the_process_ends(
    sample_study: Path, tmp_path: Path
):
    out = tmp_path / "out"
    done = console_script("", "read", str(sample_study), "--policy", "protocol", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert done.stdout.rstrip().splitlines()[-1] == f"report: {out / 'report.html'}"
    assert (out / "report.html").read_text().rstrip().endswith("</html>")
    assert sorted(p.name for p in (out / "dicom").iterdir())[0] == "ko.dcm"


def test_an_output_that_cannot_be_written_is_one_line_exit_2_and_loses_nothing(
    sample_study: Path, tmp_path: Path
):
    """--out naming a file (EEXIST), or a folder under one (ENOTDIR), as a read-only or full
    disk would: the system's reason and the file it refused, no trace."""
    taken = tmp_path / "taken"
    taken.write_text("kept")
    done = run_cli("read", sample_study, "--out", taken)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [f"error: {taken}: File exists"]
    read = tmp_path / "read"
    assert run_cli("read", sample_study, "--out", read).returncode == 0
    done = run_cli("replay", read / "trajectory.json", "--out", taken / "again")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [f"error: {taken / 'again'}: Not a directory"]
    done = run_cli("demo", "--out", taken)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [f"error: {taken / 'study'}: Not a directory"]
    assert taken.read_text() == "kept"
