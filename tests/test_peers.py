"""The tests' real peers are the real ones, whatever PATH says."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.peers import LOWEST_PORT, _outside_venv, ephemeral_ports, free_port, tool


@pytest.mark.parametrize("name", ["storescu", "echoscu", "storescp", "findscu"])
def test_dcmtk_is_found_when_the_activated_venv_shadows_it(monkeypatch, name):
    venv_bin = str(Path(sys.executable).parent)  # pynetdicom installs look-alikes here
    monkeypatch.setenv("PATH", venv_bin + os.pathsep + os.environ.get("PATH", ""))
    for found in (tool(name, "dcmtk"), _outside_venv(name)):
        assert found and not found.startswith(venv_bin)
        version = subprocess.run([found, "--version"], capture_output=True, text=True, timeout=30)
        assert version.stdout.startswith(f"$dcmtk: {name} v")


def test_a_free_port_is_none_an_outgoing_connection_could_take_meanwhile():
    """Between free_port() and the server's bind, a connection the test opens (to its
    PostgreSQL, say) gets a source port from the ephemeral range: never the one given."""
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
    assert all(LOWEST_PORT <= port < ephemeral_ports().start for port in ports)
