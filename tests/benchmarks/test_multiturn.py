"""benchmarks/multiturn.py's arguments: what it cannot run with is refused in one line, exit 2,
before any model is loaded."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "multiturn.py"


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--rounds", "0"), "--rounds must be 1 or more, not 0"),
        (("--server", "{not_executable}"), "no executable llama-server at"),
        (("--server", "{missing}"), "no executable llama-server at"),
    ],
)
def test_arguments_it_cannot_run_with_are_refused_in_one_line(tmp_path, args, says):
    not_executable = tmp_path / "llama-server"
    not_executable.write_text("#!/bin/sh\n")
    paths = {"not_executable": not_executable, "missing": tmp_path / "absent"}
    done = _run(tmp_path, *(a.format(**paths) for a in args))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and says in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
