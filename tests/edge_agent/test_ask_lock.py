"""One process at a time asks follow-ups about a result: each continues the trajectory (and a
model's session) the one before wrote, so a second one at the same time would drop an answer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from edge_agent.trajectory import Trajectory
from tests.support import run_cli

TYPED = "Which candidates are larger than 1 cm?"
ASKED = "How many candidates?"


def _until_prompt(process: subprocess.Popen) -> str:
    """What the process printed up to its follow-up prompt (it then waits for a question)."""
    shown = ""
    while "(empty line to end): " not in shown:
        char = process.stdout.read(1)
        if not char:
            break
        shown += char
    return shown


def test_an_ask_while_follow_ups_are_taken_is_refused_at_once(sample_study, tmp_path):
    out = tmp_path / "out"
    script = Path(sys.executable).parent / "edge-agent"
    reading = subprocess.Popen(
        [str(script), "read", str(sample_study), "--out", str(out), "--interactive"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert "follow-up question" in _until_prompt(reading)
        # the reading process waits for a question with the result open for follow-ups
        done = run_cli("ask", out, ASKED)
        assert done.returncode == 2 and "Traceback" not in done.stderr
        assert (
            done.stderr.strip()
            == f"error: another ask is running on {out}: ask again when it has answered"
        )
        assert Trajectory.load(out / "trajectory.json").follow_ups == ()
        _, errors = reading.communicate(f"{TYPED}\n\n", timeout=300)
    finally:
        if reading.poll() is None:
            reading.kill()
            reading.communicate()
    assert reading.returncode == 0, errors
    assert [f.question for f in Trajectory.load(out / "trajectory.json").follow_ups] == [TYPED]
    # the read has ended: its result takes the next ask, after the typed one
    done = run_cli("ask", out, ASKED)
    assert done.returncode == 0, done.stderr
    trajectory = Trajectory.load(out / "trajectory.json")
    assert [f.question for f in trajectory.follow_ups] == [TYPED, ASKED]
