"""The [gateway.web] table: the STOW-RS endpoint we serve, who may post to it, and the DICOMweb
servers we send to or query (each with its bearer token)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from imaging.errors import ConfigError

SCHEMES = ("dicomweb+https://", "dicomweb+http://")
CLIENT_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")


class TokenError(ConfigError):
    """A token that cannot be used: missing, unreadable or both inline and in a file."""


def is_web(text: str) -> bool:
    """A DICOMweb node (`dicomweb+https://host/path`) rather than a DIMSE AE@HOST:PORT."""
    return text.strip().lower().startswith(SCHEMES)


@dataclass(frozen=True)
class WebPeer:
    """A DICOMweb server, written `dicomweb+https://host[:port]/path` (http: loopback only)."""

    url: str  # the service root with its real scheme: https://host/path

    @classmethod
    def parse(cls, text: str) -> WebPeer:
        text = text.strip()
        if not is_web(text):
            raise ValueError(f"{text!r} is not dicomweb+https://HOST/PATH")
        url = text[len("dicomweb+") :].rstrip("/")
        parts = urlsplit(url)
        if not parts.hostname or parts.query or parts.fragment or parts.username:
            raise ValueError(f"{text!r}: give a host and a path, no query, fragment or user")
        if parts.scheme == "http" and not _loopback(parts.hostname):
            raise ValueError(f"{text!r}: plain http is allowed to loopback only; use https")
        return cls(url)

    def __str__(self) -> str:
        return f"dicomweb+{self.url}"


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _token(token: str, token_file: str, owner: str) -> str:
    if bool(token) == bool(token_file):
        raise TokenError(f"{owner}: give exactly one of token and token_file")
    if token:
        return token
    try:
        text = Path(token_file).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise TokenError(f"{owner}: cannot read token_file {token_file}: {exc.strerror}") from None
    if not text:
        raise TokenError(f"{owner}: token_file {token_file} is empty")
    return text


@dataclass(frozen=True)
class WebClient:
    """A peer allowed to STOW to us; `name` is its calling identity in the audit and in
    routing rules (`stow_client`)."""

    name: str
    token: str = ""
    token_file: str = ""  # a file holding the token (keeps it out of edge-agent.toml)

    def __post_init__(self) -> None:
        if not CLIENT_NAME.match(self.name):
            raise ValueError(f"client name {self.name!r}: 1-32 letters, digits, '_', '.', '-'")
        if bool(self.token) == bool(self.token_file):
            raise ValueError(f"client {self.name}: give exactly one of token and token_file")

    def secret(self) -> str:
        return _token(self.token, self.token_file, f"client {self.name}")


@dataclass(frozen=True)
class WebServer:
    """A DICOMweb server we send results to or query: its URL, token, and CA to trust."""

    url: str  # dicomweb+https://host/path, as written in destinations or --pacs
    token: str = ""
    token_file: str = ""
    ca: str = ""  # a CA bundle to verify the server with; "" trusts the system's

    def __post_init__(self) -> None:
        WebPeer.parse(self.url)
        if self.token and self.token_file:
            raise ValueError(f"server {self.url}: give one of token and token_file, not both")

    def secret(self) -> str:
        """The bearer token ("" for a server that asks for none)."""
        if not (self.token or self.token_file):
            return ""
        return _token(self.token, self.token_file, f"server {self.url}")


@dataclass(frozen=True)
class WebSettings:
    port: int = 0  # the STOW-RS endpoint (POST /studies); 0: not served
    bind: str = "127.0.0.1"
    tls_cert: str = ""  # required unless bind is a loopback address
    tls_key: str = ""
    tls_ca: str = ""  # when set, clients must also present a certificate signed by it
    max_request_mb: int = 512  # a larger STOW body is refused (413) before it is stored
    max_inflight_mb: int = 1024  # STOW bodies held at once, all requests; past it: 503
    clients: tuple[WebClient, ...] = ()  # who may STOW, each with a bearer token
    servers: tuple[WebServer, ...] = ()  # tokens and CAs of the dicomweb+ URLs we talk to

    def __post_init__(self) -> None:
        if not 0 <= self.port < 65536:
            raise ValueError(f"web port {self.port} is not 0 (off) or a TCP port")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("web tls_cert and tls_key go together")
        if self.port and not self.tls_cert and not _loopback(self.bind):
            raise ValueError(f"web bind {self.bind!r} is not loopback: set tls_cert and tls_key")
        if self.port and not self.clients:
            raise ValueError("web port is set but no [[gateway.web.clients]] may post to it")
        names = [c.name for c in self.clients]
        if len(set(names)) != len(names):
            raise ValueError(f"web client names must be unique: {names}")
        if self.max_request_mb < 1:
            raise ValueError("web max_request_mb must be at least 1")
        if self.max_inflight_mb < self.max_request_mb:
            raise ValueError(
                f"web max_inflight_mb ({self.max_inflight_mb}) is below max_request_mb "
                f"({self.max_request_mb}): a request of the largest size could never be taken"
            )

    def server(self, peer: WebPeer) -> WebServer:
        """The configured server for a URL (tokenless when none is configured)."""
        for server in self.servers:
            if WebPeer.parse(server.url) == peer:
                return server
        return WebServer(str(peer))
