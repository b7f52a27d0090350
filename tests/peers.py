"""Real peers for tests: Orthanc on loopback ports, dcmtk tools, dicom3tools, headless Chromium."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest


def tool(name: str, package: str) -> str:
    """A real peer's executable; its absence fails the test with the package to install."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is missing: apt-get install {package} (.ci/run does)")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Orthanc:
    """One Orthanc process with its own storage, on free loopback ports."""

    def __init__(self, folder: Path) -> None:
        self.http_port, self.dicom_port, self.aet = free_port(), free_port(), "ORTHANC"
        folder.mkdir(parents=True, exist_ok=True)
        config = {
            "Name": "edge-agent-test",
            "StorageDirectory": str(folder / "storage"),
            "IndexDirectory": str(folder / "index"),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": self.aet,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomCheckCalledAet": True,
            "HttpServerEnabled": True,
            "Plugins": [],
        }
        (folder / "orthanc.json").write_text(json.dumps(config))
        self._log = open(folder / "orthanc.log", "wb")  # noqa: SIM115 - closed in stop()
        self._process = subprocess.Popen(
            [tool("Orthanc", "orthanc"), str(folder / "orthanc.json")],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self._wait_ready(folder)

    def _wait_ready(self, folder: Path, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"Orthanc exited: {(folder / 'orthanc.log').read_text()[-2000:]}"
                )
            try:
                self.get("/system")
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("Orthanc did not answer on its HTTP port in time")

    def get(self, path: str):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=10) as r:
            return json.loads(r.read())

    def post(self, path: str, body: bytes | str):
        data = body.encode() if isinstance(body, str) else body
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.http_port}{path}", data=data, method="POST"
        )
        with urllib.request.urlopen(request, timeout=30) as r:
            return json.loads(r.read())

    def series_of_study(self, study_uid: str) -> list[dict]:
        [match] = self.post("/tools/lookup", study_uid)
        return [self.get(f"/series/{s}") for s in self.get(match["Path"])["Series"]]

    def stop(self) -> None:
        self._process.terminate()
        try:
            self._process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self._process.kill()
        self._log.close()


def storescu(orthanc: Orthanc, files: list[Path]) -> subprocess.CompletedProcess:
    """dcmtk's storescu into Orthanc over DICOM, as a modality would send."""
    env = {**os.environ, "TCP_NODELAY": "1"}
    return subprocess.run(
        [
            tool("storescu", "dcmtk"),
            "--required",
            "-aec",
            orthanc.aet,
            "-aet",
            "EDGEAGENT",
            "127.0.0.1",
            str(orthanc.dicom_port),
            *map(str, files),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_dom(page: Path, profile: Path) -> str:
    """The DOM of a local page after its scripts ran, as headless Chromium sees it."""
    done = subprocess.run(
        [
            tool("chromium", "chromium"),
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            "--virtual-time-budget=5000",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise RuntimeError(f"chromium failed ({done.returncode}): {done.stderr[-2000:]}")
    return done.stdout
