"""The audit trail: one JSON line per event (associations, stored instances, reads, sends).

UIDs, AE titles and addresses only: never patient names, IDs or birth dates."""

from __future__ import annotations

import datetime as dt
import json
import logging
import socket
import threading
from pathlib import Path

log = logging.getLogger(__name__)


def keep_phi_out_of_logs() -> None:
    """pynetdicom's own debug output can dump whole datasets (patient names included), and
    pydicom's and highdicom's warnings quote the value they warn about (a one-part patient name,
    a malformed birth date): captured, so nothing prints raw beside the JSON lines, and dropped,
    so no header value reaches the log. The audit names what went wrong."""
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    logging.captureWarnings(True)
    for library in ("py.warnings", "pydicom", "highdicom"):
        logging.getLogger(library).setLevel(logging.ERROR)


def audit_path(spool_root: Path, shared: bool) -> Path:
    """Where this process appends: `spool/audit.jsonl` on one machine; with an index shared by
    several (`shared`), `spool/audit/HOST.jsonl`, one file per machine. Appends from several
    machines to one file on a network file system (NFS) are not atomic and can overwrite each
    other."""
    if not shared:
        return spool_root / "audit.jsonl"
    return spool_root / "audit" / f"{socket.gethostname()}.jsonl"


class Audit:
    def __init__(self, path: Path, node: str = "") -> None:
        """`node`: host:pid of the process, on every line (several share one trail)."""
        self._node = node
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._lock = threading.Lock()

    def __call__(self, event: str, **fields) -> None:
        record = {
            "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds"),
            "event": event,
            **({"node": self._node} if self._node else {}),
            **fields,
        }
        line = json.dumps(record, sort_keys=False)
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()
        if log.isEnabledFor(logging.INFO):  # the line is built only for a log that keeps it
            log.info("%s %s", event, " ".join(f"{k}={v}" for k, v in fields.items()))

    def close(self) -> None:
        with self._lock:
            self._file.close()


def stored_fields(stored) -> dict:
    """What the audit records of an instance the spool stored (a `spool.StoredInstance`), the
    same whether it came by C-STORE or STOW-RS."""
    return {
        "study_uid": stored.study_uid,
        "series_uid": stored.series_uid,
        "sop_uid": stored.sop_uid,
        "bytes": stored.size,
        "late": stored.late,
    }
