"""Real peers for tests: Orthanc on loopback ports, dcmtk tools, dicom3tools, headless Chromium."""

from __future__ import annotations

import functools
import json
import os
import random
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from contextlib import closing
from pathlib import Path

import pytest


def tool(name: str, package: str) -> str:
    """A real peer's executable, the one its Debian package installed; its absence fails the test.

    Never whatever PATH finds first: with the virtual environment activated, `storescu`,
    `echoscu`, `storescp` and `findscu` are pynetdicom's look-alikes in .venv/bin."""
    path = _packaged(name, package) or _outside_venv(name)
    if path is None:
        pytest.fail(f"{name} is missing: apt-get install {package} (.ci/run does)")
    return path


@functools.cache
def _packaged(name: str, package: str) -> str | None:
    """`name` from the package's own file list (dpkg), when dpkg knows the package."""
    try:
        listed = subprocess.run(
            ["dpkg-query", "-L", package], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in listed.stdout.splitlines():
        if Path(line).name == name and "bin/" in line and os.access(line, os.X_OK):
            return line
    return None


def _outside_venv(name: str) -> str | None:
    """Without dpkg: PATH, less this interpreter's virtual environment."""
    venv_bins = {str(Path(sys.prefix) / "bin"), str(Path(sys.executable).parent)}
    path = os.pathsep.join(
        d for d in os.environ.get("PATH", "").split(os.pathsep) if d.rstrip("/") not in venv_bins
    )
    return shutil.which(name, path=path)


def dciodvfy_errors(path: Path) -> list[str]:
    """What dicom3tools' validator calls an error in one file: none for a valid object."""
    done = subprocess.run(
        [tool("dciodvfy", "dicom3tools"), str(path)],
        capture_output=True,
        text=True,
        errors="replace",  # it quotes values: an SR in another character set too
        timeout=60,
    )
    return [line for line in done.stderr.splitlines() if line.startswith("Error")]


_GIVEN: set[int] = set()
LOWEST_PORT = 20000  # the ports given are from here to below the ephemeral range


@functools.cache
def ephemeral_ports() -> range:
    """The ports the kernel gives outgoing connections as their source ports (read once)."""
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):  # not Linux: the IANA dynamic range
        low, high = 49152, 65535
    return range(low, high + 1)


def free_port() -> int:
    """A loopback port nothing listens on now, below the ephemeral range, and never one given
    before in this process. A port the kernel picks (bind to 0) is an ephemeral one: any
    outgoing connection made before the server binds it (a client of the test's PostgreSQL, a
    storescu) may take it as its source port, and the server then fails to start."""
    below = ephemeral_ports().start
    while True:
        port = random.randrange(LOWEST_PORT, below)
        if port in _GIVEN:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:  # in use, or held by a closing connection
                continue
        _GIVEN.add(port)
        return port


class Orthanc:
    """One Orthanc process with its own storage, on free loopback ports."""

    def __init__(
        self,
        folder: Path,
        modalities: dict[str, list] | None = None,
        ports: tuple[int, int] | None = None,
        extra: dict | None = None,
    ) -> None:
        """`extra`: more configuration (plugins and their tables) over the defaults below."""
        self.http_port, self.dicom_port = ports or (free_port(), free_port())
        self.aet = "ORTHANC"
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
            "DicomModalities": modalities or {},
            "DicomAlwaysAllowStore": True,
            "DicomAlwaysAllowFind": True,
            "DicomAlwaysAllowGet": True,
            **(extra or {}),
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
        return json.loads(self.get_bytes(path))

    def get_bytes(self, path: str) -> bytes:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=10) as r:
            return r.read()

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

    def series_of(self, study_uid: str, modality: str) -> list[dict] | None:
        """The study's series of one modality; None until there is one (for `wait_for`)."""
        try:
            series = self.series_of_study(study_uid)
        except ValueError:
            return None
        return [s for s in series if s["MainDicomTags"].get("Modality") == modality] or None

    def upload(self, study: Path) -> str:
        """Store a study folder's files in Orthanc, as a PACS holds them; its Study Instance UID."""
        import pydicom

        for path in sorted(study.iterdir()):
            self.post("/instances", path.read_bytes())
        return str(pydicom.dcmread(next(study.iterdir())).StudyInstanceUID)

    def push(self, study: Path, modality: str) -> str:
        """Upload a study folder, then have Orthanc C-STORE it to `modality` (as a PACS
        forwards a study to a reader); its Study Instance UID."""
        study_uid = self.upload(study)
        [match] = self.post("/tools/lookup", study_uid)
        self.send([match["ID"]], modality)
        return study_uid

    def send(self, resources: list[str], modality: str) -> None:
        """Have Orthanc C-STORE these of its resources (Orthanc IDs) to `modality`, in one
        association, and wait until it is done."""
        body = json.dumps({"Resources": resources, "Synchronous": True})
        self.post(f"/modalities/{modality}/store", body)

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


def chromium_dom(page: Path, profile: Path, width: int = 1280) -> str:
    """The DOM of a local page after its scripts ran, as headless Chromium sees it in a window
    `width` pixels wide."""
    done = subprocess.run(
        [
            tool("chromium", "chromium"),
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            f"--window-size={width},900",
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


def chromium_screenshot(page: Path, shot: Path, profile: Path, width: int, height: int) -> Path:
    """A PNG of a local page as headless Chromium draws it at width x height."""
    done = subprocess.run(
        [
            tool("chromium", "chromium"),
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            "--hide-scrollbars",
            f"--window-size={width},{height}",
            f"--screenshot={shot}",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0 or not shot.is_file():
        raise RuntimeError(f"chromium failed ({done.returncode}): {done.stderr[-2000:]}")
    return shot


def wait_for(condition, timeout: float, what: str, every: float = 0.2):
    """Poll `condition` until it returns something truthy; fail naming `what` otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    pytest.fail(f"timed out after {timeout:g} s waiting for {what}")


class Gateway:
    """`edge-agent serve` as a real process with its own spool and configuration."""

    def __init__(
        self, folder: Path, probe=None, tables: str = "", verbose: bool = True, **gateway
    ) -> None:
        """`gateway`: [gateway] keys; `tables`: TOML of other tables ([report], [[gateway.…]]),
        appended as written; `verbose`: `serve --verbose` (each event in serve.log), else as
        the service unit runs it."""
        self.folder = folder
        self._verbose = verbose
        self._probe = probe or (lambda port: echo(port, "EDGEAGENT", "ECHOSCU") == 0)
        self.port = gateway.pop("port", None) or free_port()
        self.spool = folder / "spool"
        if gateway.get("allowed") and "ECHOSCU" not in gateway["allowed"]:
            gateway["allowed"] = [*gateway["allowed"], "ECHOSCU"]  # the readiness probe
        settings = {
            "spool_dir": str(self.spool),
            "port": self.port,
            "stable_after_s": 2.0,
            "poll_s": 0.2,
            **gateway,
        }
        lines = ["[gateway]"] + [f"{k} = {json.dumps(v)}" for k, v in settings.items()]
        folder.mkdir(parents=True, exist_ok=True)
        self.config = folder / "edge-agent.toml"
        self.config.write_text("\n".join(lines) + "\n" + tables)
        self._process: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        script = Path(sys.executable).parent / "edge-agent"
        self._log = open(self.folder / "serve.log", "ab")  # noqa: SIM115 - closed in stop()
        self._process = subprocess.Popen(
            [str(script), "serve", *["--verbose"] * self._verbose, "--config", str(self.config)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        wait_for(self._answers_echo, 30, "the gateway to answer C-ECHO")

    def _answers_echo(self) -> bool:
        if self._process.poll() is not None:
            pytest.fail(f"gateway exited: {(self.folder / 'serve.log').read_text()[-3000:]}")
        return self._probe(self.port)

    @property
    def pid(self) -> int:
        return self._process.pid

    def kill(self) -> None:
        self._process.kill()  # SIGKILL: no cleanup of any kind
        self._process.wait()
        self._log.close()

    def stop(self) -> int:
        """SIGTERM, as systemd stops the service; returns its exit status."""
        if self._process.poll() is None:
            self._process.terminate()
            self._process.wait(timeout=60)
        self._log.close()
        return self._process.returncode

    def logs(self) -> str:
        return (self.folder / "serve.log").read_text() + (self.spool / "audit.jsonl").read_text()

    def db(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.spool / "index.sqlite", timeout=30)
        db.row_factory = sqlite3.Row
        return db

    def jobs(self) -> list[sqlite3.Row]:
        with closing(self.db()) as db:
            return db.execute("SELECT * FROM jobs ORDER BY id").fetchall()

    def audit(self) -> list[dict]:
        path = self.spool / "audit.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def echo(port: int, called: str, calling: str) -> int:
    """dcmtk echoscu's exit status."""
    return subprocess.run(
        [tool("echoscu", "dcmtk"), "-aet", calling, "-aec", called, "127.0.0.1", str(port)],
        capture_output=True,
        timeout=30,
    ).returncode
