"""report.pdf: the same report printed by headless Chromium, checked as a reader would see it:
its pages rendered to PNG (poppler's pdftoppm) and its text extracted (pdftotext)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from edge_agent.report.pdf import find_browser
from tests.peers import tool
from tests.support import pdf_text, run_cli


@pytest.fixture(scope="module")
def printed(tmp_path_factory) -> Path:
    from edge_agent.sample import write_sample_study

    folder = tmp_path_factory.mktemp("pdf")
    study = write_sample_study(folder / "study")
    done = run_cli("read", study, "--out", folder / "out", "--pdf")
    assert done.returncode == 0, done.stderr
    assert f"pdf: {folder / 'out' / 'report.pdf'}" in done.stdout
    return folder / "out" / "report.pdf"


def test_the_pdf_pages_render_on_a4_with_the_key_images(printed, tmp_path):
    subprocess.run(
        [tool("pdftoppm", "poppler-utils"), "-r", "40", "-png", printed, tmp_path / "page"],
        check=True,
    )
    pages = sorted(tmp_path.glob("page-*.png"))
    assert len(pages) >= 2
    images = [cv2.imread(str(page)) for page in pages]
    assert all(abs(i.shape[0] / i.shape[1] - 297 / 210) < 0.01 for i in images)  # A4
    dark = [float((i < 60).all(axis=2).mean()) for i in images]
    assert max(dark) > 0.05, dark  # a CT key image is drawn, not an empty frame


def test_the_pdf_holds_the_report_and_the_unfolded_trail(printed):
    text = pdf_text(printed)
    for expected in (
        "Protocol demonstration (no AI model).",
        "Finding 1",
        "Finding 2",
        "instance 3, slice position -65.7 mm",
        "The policy answered after 8 tool call(s).",
        "Step 8: measure",  # the trail, folded on screen, is printed
        "not for clinical use.",
    ):
        assert expected in text, expected
    # the identifiers, folded on screen, are printed (read in order: their table wraps)
    raw = pdf_text(printed, "-raw")
    assert "Identifiers Study Instance UID 1." in " ".join(raw.split())


def test_without_chromium_pdf_is_one_line_exit_2(sample_study, tmp_path):
    script = Path(sys.executable).parent / "edge-agent"
    done = subprocess.run(
        [script, "read", sample_study, "--out", tmp_path / "o", "--pdf"],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": str(tmp_path)},  # no browser anywhere on it
    )
    assert done.returncode == 2, done.stderr
    assert "--pdf needs Chromium" in done.stderr and "Traceback" not in done.stderr
    assert (tmp_path / "o" / "report.html").is_file()  # the read itself is kept


def test_printing_looks_up_no_host_and_connects_nowhere(sample_study, tmp_path):
    """The bundle opens no connection but to configured DICOM peers: Chromium printing the PDF
    neither asks the resolver for a name (its updater, its account checks) nor connects out."""
    log = tmp_path / "chromium.strace"
    wrapper = tmp_path / "bin" / "chromium"
    wrapper.parent.mkdir()
    wrapper.write_text(
        f"#!/bin/sh\nexec {tool('strace', 'strace')} -f -qq "
        f'-e trace=socket,connect,sendto,sendmmsg -o {log} {find_browser()} "$@"\n'
    )
    wrapper.chmod(0o755)
    script = Path(sys.executable).parent / "edge-agent"
    env = {**os.environ, "PATH": f"{wrapper.parent}:{os.environ['PATH']}"}
    done = subprocess.run(
        [script, "read", sample_study, "--out", tmp_path / "o", "--pdf"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    calls = log.read_text().splitlines()
    assert not [line for line in calls if "htons(53)" in line]  # no name looked up
    assert _outward_streams(calls) == []  # and no connection out


def _outward_streams(calls: list[str]) -> list[str]:
    """connect() calls of stream sockets to addresses off this machine, from an strace -f log
    (a datagram socket's connect sends nothing: Chromium asks the kernel for its route so)."""
    datagram, pending = set(), set()
    for line in calls:
        pid = line.split(maxsplit=1)[0]
        made = re.search(r"= (\d+)$", line)
        if "socket(" in line and "SOCK_DGRAM" in line:
            if made:
                datagram.add((pid, made[1]))
            else:  # <unfinished ...>: its descriptor comes on the resumed line
                pending.add(pid)
        elif "<... socket resumed>" in line and pid in pending and made:
            pending.discard(pid)
            datagram.add((pid, made[1]))
    outward = []
    for line in calls:
        found = re.match(r"(\d+)\s+connect\((\d+), \{sa_family=AF_INET6?,", line)
        local = "127.0.0.1" in line or '"::1"' in line
        if found and found.groups() not in datagram and not local:
            outward.append(line)
    return outward
