"""`edge-agent read` in a real terminal (tmux): the live trail reads top to bottom, the loading
bar is gone before step 1, and nothing from a library is printed between the steps."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest


def _tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=True).stdout


def _read_in_tmux(study: Path, out: Path, width: int) -> str:
    """Runs the read in a detached tmux pane `width` columns wide; returns the whole pane text
    (scroll-back included) once the command has exited."""
    session = f"edge-agent-{uuid.uuid4().hex[:8]}"
    script = Path(sys.executable).parent / "edge-agent"
    done = out.parent / f"done-{width}"
    command = (
        f"PYTHONPATH={shlex.quote(os.environ.get('PYTHONPATH', ''))} "
        f"{script} read {shlex.quote(str(study))} --out {shlex.quote(str(out))}; "
        f"echo $? > {shlex.quote(str(done))}"
    )
    _tmux("new-session", "-d", "-s", session, "-x", str(width), "-y", "50", "bash", "--norc")
    try:
        _tmux("set-option", "-t", session, "history-limit", "5000")
        _tmux("send-keys", "-t", session, command, "Enter")
        deadline = time.monotonic() + 240
        while not done.exists() and time.monotonic() < deadline:
            time.sleep(0.2)  # polls for the exit file; the read itself takes seconds
        assert done.exists(), _tmux("capture-pane", "-p", "-t", session)
        assert done.read_text().strip() == "0"
        return _tmux("capture-pane", "-p", "-J", "-S", "-", "-t", session)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False)


@pytest.mark.parametrize("width", [80, 200])
def test_the_live_trail_reads_in_order_with_no_bar_left(sample_study, tmp_path, width):
    pane = _read_in_tmux(sample_study, tmp_path / f"out-{width}", width)
    lines = [line.rstrip() for line in pane.splitlines()]
    output = lines[next(i for i, line in enumerate(lines) if "edge-agent" in line) + 1 :]

    def first(marker: str) -> int:
        return next(i for i, line in enumerate(output) if marker in line)

    assert not [line for line in output if "loading" in line or "━" in line], pane
    assert not [line for line in output if "Warning" in line], pane
    series, step1 = first("series"), first(" 1 window(")
    label, answer = first("Protocol demonstration (no AI model)"), first("report: ")
    assert series < step1 < label < answer, pane
    assert output[step1].lstrip().startswith("1 window("), pane  # step 1 on its own line
