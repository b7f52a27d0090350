"""The console script ends the process itself once its exit functions have run: the status and
everything printed must be what a normal interpreter exit gives."""

from __future__ import annotations

from pathlib import Path

from tests.support import console_script


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
