"""Real DICOMweb peers for tests: Orthanc with its DICOMweb plugin (Debian orthanc-dicomweb), a
self-signed certificate from openssl, and the gateway with its STOW-RS endpoint on loopback."""

from __future__ import annotations

import json
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.peers import Gateway, Orthanc, free_port, tool

PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
TOKEN = "orthanc-token-3f9c"  # the bearer token the gateway gives the client named "orthanc"


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key (openssl), valid for a day."""
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / "server.crt", folder / "server.key"
    subprocess.run(
        [
            tool("openssl", "openssl"),
            *("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


def orthanc_web(folder: Path, servers: dict | None = None, ca: Path | None = None) -> Orthanc:
    """Orthanc serving QIDO/WADO/STOW at /dicom-web/, with `servers` for its own STOW client
    (name -> {"Url": ..., "HttpHeaders": ...}) and `ca` the certificate it trusts for HTTPS."""
    if not PLUGIN.is_file():
        pytest.fail(f"{PLUGIN} is missing: apt-get install orthanc-dicomweb (.ci/run does)")
    extra = {
        "Plugins": [str(PLUGIN)],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "Servers": servers or {}},
    }
    if ca is not None:
        extra |= {"HttpsCACertificates": str(ca), "HttpsVerifyPeers": True}
    orthanc = Orthanc(folder, extra=extra)
    if "dicom-web" not in orthanc.get("/plugins"):
        orthanc.stop()
        pytest.fail("Orthanc started without its DICOMweb plugin")
    return orthanc


def dicomweb_url(orthanc: Orthanc) -> str:
    return f"dicomweb+http://127.0.0.1:{orthanc.http_port}/dicom-web"


def toml_list(values) -> str:
    return json.dumps(list(values))  # a JSON list of strings is a TOML array too


def web_gateway(
    folder: Path,
    cert: Path | None,
    key: Path | None,
    rules: str = "",
    web_port: int | None = None,
    web: str = "",
    **gateway,
) -> tuple[Gateway, int]:
    """`edge-agent serve` with STOW-RS on a free port (HTTPS when given a certificate) for the
    client "orthanc" with TOKEN, `web` (TOML) added to [gateway.web] and `rules` (TOML)
    appended; returns it and its web port."""
    web_port = web_port or free_port()
    tls = f'tls_cert = "{cert}"\ntls_key = "{key}"\n' if cert else ""
    tables = (
        f"[gateway.web]\nport = {web_port}\n{tls}{web}\n"
        f'[[gateway.web.clients]]\nname = "orthanc"\ntoken = "{TOKEN}"\n{rules}'
    )
    return Gateway(folder, tables=tables, **gateway), web_port


class Scripted:
    """A loopback HTTP server that reads each request whole and answers every one the same way
    (`status`, `headers`, `body`): a misbehaving DICOMweb server, a redirect target or a proxy.
    `requests` lists (method, path, body size) of what reached it."""

    def __init__(self, status: int = 200, headers: dict | None = None, body: bytes = b"") -> None:
        self.requests: list[tuple[str, str, int]] = []
        scripted = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                size = len(self._body())
                scripted.requests.append((self.command, self.path, size))
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
                    return self.rfile.read(int(self.headers.get("Content-Length", 0)))
                data = bytearray()
                while size := int(self.rfile.readline().split(b";")[0], 16):
                    data += self.rfile.read(size)
                    self.rfile.readline()
                self.rfile.readline()
                return bytes(data)

            def log_message(self, *args) -> None:  # quiet: pytest shows failures
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
