"""What the gateway needs from a read, and nothing more: a study folder in, result files out.

The gateway imports nothing from the agent. The CLI hands `Service` a `Reader` made of the
agent's `read_study` (`edge_agent/cli/gateway_reader.py`); a test or another back end can hand it
any other object with these two calls."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class ReadRequest:
    """What a routing rule asks of one read; empty strings leave the reader's own defaults."""

    question: str = ""
    policy: str = ""  # a policy name the reader opened at start
    rule: str = ""  # the routing rule that chose this read, for the reader's records
    replaces: str = ""  # a read again: the results folder of the study's last read


DEFAULT_REQUEST = ReadRequest()


@dataclass(frozen=True)
class ReadOutcome:
    study_uid: str  # the Study Instance UID of the files actually read
    dicom: tuple[Path, ...]  # results to send: SR first, then SEG, Secondary Captures, KO
    findings: int
    end_reason: str  # why the read ended (an answer, a budget), for the audit trail


class Reader(Protocol):
    def read(
        self, study_dir: Path, out_dir: Path, request: ReadRequest = DEFAULT_REQUEST
    ) -> ReadOutcome:
        """Read the one study in `study_dir`, writing every result into `out_dir`, asking
        `request`'s question with its policy when it names them.

        Raises `imaging.errors.BadInput` when the files (or the models) cannot be used as they
        are, so retrying cannot help; any other exception is retried under the lease rules."""
        ...

    def close(self) -> None:
        """Free the models a reader keeps loaded between reads."""
        ...
