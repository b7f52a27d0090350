"""The [gateway] table of edge-agent.toml: who may send, where we listen, where results go."""

from __future__ import annotations

import ipaddress
import math
import re
from dataclasses import dataclass, field

from dicom_gateway.routing import Routing
from dicom_gateway.web_settings import WebPeer, WebSettings, is_web
from imaging.errors import BadInput

AE_TITLE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # 16 chars of the default repertoire, no '\'
# Lower bounds, each the least that still means what the key says: a poll of 0 spins a core
# while idle, a first retry of 0 hammers a PACS that is down.
AT_LEAST = {
    "stable_after_s": 0.1,
    "lease_s": 1.0,
    "retry_first_s": 0.5,
    "poll_s": 0.05,
    "max_attempts": 1,
    "min_free_mb": 0,
}


def is_ae_title(text: str) -> bool:
    """1-16 characters of the default repertoire, not all spaces (a blank AE title is none)."""
    return bool(AE_TITLE.match(text)) and bool(text.strip())


class StartError(BadInput):
    """This machine cannot give what the settings name (a port in use, an address not here, a
    folder or file that cannot be used): the service does not start, and says which."""


@dataclass(frozen=True)
class Peer:
    """A DICOM node, written AE@HOST:PORT as dcmtk users do."""

    ae_title: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Peer:
        match = re.fullmatch(r"([^@]{1,16})@([^:@]+):(\d{1,5})", text.strip())
        if not match or not is_ae_title(match[1]) or not 0 < int(match[3]) < 65536:
            raise ValueError(f"{text!r} is not AE@HOST:PORT (AE title of 1-16 characters)")
        return cls(match[1], match[2], int(match[3]))

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


@dataclass(frozen=True)
class GatewaySettings:
    ae_title: str = "EDGEAGENT"
    bind: str = "127.0.0.1"  # listen on loopback unless IT opens it up
    port: int = 11112
    max_pdu: int = 65536  # the largest PDU we receive; a peer's longer PDU closes its connection
    max_associations: int = 16  # at once, from all callers (a PACS often opens several per study)
    max_pending: int = 32  # TCP connections not yet associated (port scans, health checks)
    max_pending_per_address: int = 16  # of those, from one address: the rest stay for others
    handshake_timeout_s: float = 10.0  # connect to A-ASSOCIATE (TLS included), or closed
    network_timeout_s: float = 60.0  # silence mid-PDU, or on an idle association, ends it
    # Calling AE titles allowed to connect, optionally pinned to an IP as "AE@IP".
    # Empty accepts any calling AE (a warning says so at start).
    allowed: tuple[str, ...] = ()
    spool_dir: str = "edge-agent-spool"  # on a shared mount when roles run on several machines
    # Empty: the spool's own SQLite index (one machine). postgresql://user@host/db: one
    # PostgreSQL index that every listener, worker and outbox of a site shares.
    database: str = ""
    min_free_mb: int = 512  # below this, C-STORE answers 0xA700 (out of resources)
    stable_after_s: float = 30.0  # a study is complete when nothing arrived for this long
    late_instances: str = "ignore"  # after a read started: "ignore" or "reread" (once)
    lease_s: float = 900.0
    max_attempts: int = 3
    # AE@HOST:PORT or dicomweb+https://HOST/PATH that receive our DICOM results
    destinations: tuple[str, ...] = ()
    retry_first_s: float = 5.0
    retry_max_s: float = 900.0
    poll_s: float = 1.0
    # Processes that accept associations on the port (SO_REUSEPORT): past one core for many
    # associations at once. The limits above (associations, pending) hold for each process.
    listener_processes: int = 1
    tls_cert: str = ""
    tls_key: str = ""
    tls_ca: str = ""  # when set, peers must present a certificate signed by it
    web: WebSettings = field(default_factory=WebSettings)  # STOW-RS in, DICOMweb servers
    routing: Routing = field(default_factory=Routing)  # which studies are read, and how

    def __post_init__(self) -> None:
        if not is_ae_title(self.ae_title):
            raise ValueError(f"ae_title {self.ae_title!r} is not a valid AE title")
        self._check_numbers()
        if not self.spool_dir.strip():
            raise ValueError("spool_dir must name a folder (empty would spool where serve starts)")
        if not 0 < self.port < 65536:
            raise ValueError(f"port must be between 1 and 65535, not {self.port}")
        if self.late_instances not in ("ignore", "reread"):
            raise ValueError(
                f"late_instances must be 'ignore' or 'reread', not {self.late_instances!r}"
            )
        if not 4096 <= self.max_pdu <= 2**26:
            raise ValueError(f"max_pdu must be between 4096 and {2**26}, not {self.max_pdu}")
        if self.max_associations < 1 or not 1 <= self.max_pending_per_address <= self.max_pending:
            raise ValueError(
                "max_associations must be >= 1, and 1 <= max_pending_per_address <= max_pending"
            )
        if not 0 < self.handshake_timeout_s <= self.network_timeout_s:
            raise ValueError("handshake_timeout_s must be > 0 and at most network_timeout_s")
        if not 1 <= self.listener_processes <= 64:
            raise ValueError(
                f"listener_processes must be between 1 and 64, not {self.listener_processes}"
            )
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("tls_cert and tls_key go together")
        uses_postgres(self.database)
        for text in self.destinations:
            destination(text)
        for entry in self.allowed:
            _allowed_entry(entry)

    def _check_numbers(self) -> None:
        """Every number finite and within its bounds, named by its key when it is not."""
        for name in ("handshake_timeout_s", "network_timeout_s", "retry_max_s", *AT_LEAST):
            value = getattr(self, name)
            if isinstance(value, bool) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, not {value!r}")
        for name, least in AT_LEAST.items():
            if getattr(self, name) < least:
                raise ValueError(f"{name} must be at least {least}, not {getattr(self, name)}")
        if self.retry_max_s < self.retry_first_s:
            raise ValueError(
                f"retry_max_s ({self.retry_max_s}) must be at least retry_first_s "
                f"({self.retry_first_s})"
            )

    @property
    def peers(self) -> tuple[Peer | WebPeer, ...]:
        return tuple(destination(text) for text in self.destinations)

    @property
    def destination_names(self) -> frozenset[str]:
        """The destinations as the outbox names them: the only ones ever sent to."""
        return frozenset(str(peer) for peer in self.peers)

    @property
    def allowed_callers(self) -> dict[str, str | None]:
        """Calling AE title -> required source IP (None: any address)."""
        return dict(_allowed_entry(entry) for entry in self.allowed)


def _allowed_entry(entry: str) -> tuple[str, str | None]:
    ae, pinned, ip = entry.partition("@")
    if not is_ae_title(ae) or ae != ae.strip():
        raise ValueError(
            f"allowed entry {entry!r}: {ae!r} is not an AE title (no spaces around it)"
        )
    if not pinned:
        return ae, None
    try:
        return ae, peer_address(ip)
    except ValueError:
        raise ValueError(
            f"allowed entry {entry!r}: {ip!r} is not an IP address (write AE@IP, e.g. "
            "PACS@10.0.0.1; a host name is not resolved)"
        ) from None


def peer_address(text: str) -> str:
    """An IP address as a pin and a peer's address are compared: canonical, and an IPv4 peer
    seen on a dual-stack socket (::ffff:10.0.0.1) as the IPv4 address it is. ValueError if
    `text` is not an IP address."""
    address = ipaddress.ip_address(text)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return str(address)


def destination(text: str) -> Peer | WebPeer:
    """A DIMSE node (AE@HOST:PORT) or a DICOMweb server (dicomweb+https://HOST/PATH)."""
    return WebPeer.parse(text) if is_web(text) else Peer.parse(text)


def uses_postgres(database: str) -> bool:
    """True: `database` is the shared PostgreSQL index's URL; False: empty, SQLite in the spool.
    ValueError for anything else, naming the URL's scheme only (the rest may hold a password)."""
    if not database:
        return False
    if database.startswith(("postgresql://", "postgres://")):
        return True
    scheme = database.split("://", 1)[0] if "://" in database else ""
    named = f"a {scheme}:// URL" if re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme) else "that"
    raise ValueError(f"database must be empty or a postgresql:// URL, not {named}")
