"""The tests' real peers are the real ones, whatever PATH says."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.peers import _outside_venv, tool


@pytest.mark.parametrize("name", ["storescu", "echoscu", "storescp", "findscu"])
def test_dcmtk_is_found_when_the_activated_venv_shadows_it(monkeypatch, name):
    venv_bin = str(Path(sys.executable).parent)  # pynetdicom installs look-alikes here
    monkeypatch.setenv("PATH", venv_bin + os.pathsep + os.environ.get("PATH", ""))
    for found in (tool(name, "dcmtk"), _outside_venv(name)):
        assert found and not found.startswith(venv_bin)
        version = subprocess.run([found, "--version"], capture_output=True, text=True, timeout=30)
        assert version.stdout.startswith(f"$dcmtk: {name} v")
