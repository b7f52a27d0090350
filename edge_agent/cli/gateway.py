"""`serve` and `pacs find|outbox|status`: the DICOM gateway, composed with the agent's read
here."""

from __future__ import annotations

import datetime
import logging
import re
import signal
import threading
from typing import TYPE_CHECKING, Annotated

import typer

from dicom_gateway.settings import GatewaySettings
from edge_agent.cli.terminal import (
    ConfigOption,
    VerboseOption,
    console,
    errors,
    exit_code,
    print_table,
    setup,
)
from imaging.errors import BadInput

RoleOption = Annotated[
    str,
    typer.Option(
        "--role",
        help="all (one machine), or one role of a site that shares a PostgreSQL index: "
        "listener, worker or outbox.",
    ),
]

if TYPE_CHECKING:
    from dicom_gateway.remote import Node


@exit_code
def serve(config: ConfigOption = None, verbose: VerboseOption = False, role: RoleOption = "all"):
    """Run the DICOM gateway: receive studies, read each complete one, send results back."""
    from dicom_gateway.nodes import ROLES
    from dicom_gateway.service import Service
    from edge_agent.cli.gateway_reader import AgentReader

    if role not in ROLES:
        raise BadInput(f"--role {role!r} is not one of {', '.join(ROLES)}")
    settings = setup(config, verbose, json_logs=True)
    gateway = settings.gateway
    if role != "all" and not gateway.database:
        raise BadInput(
            f"--role {role} needs the shared index: set [gateway] database = 'postgresql://…'"
        )
    stop = threading.Event()
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: stop.set())
    routed = gateway.routing.policies  # each rule's policy, opened once at start
    service = Service(gateway, lambda: AgentReader(settings, routed), role)
    where = f" on {gateway.bind}:{gateway.port}" if service.listener else ""
    title = f"edge-agent gateway {gateway.ae_title} {role}{where}, spool {service.spool.root}"
    errors.print(title, highlight=False)
    if not console.is_terminal:
        service.run(stop)
        return
    from rich.live import Live

    with Live(_status_panel(title, {}), console=console, refresh_per_second=2) as live:
        service.run(stop, on_tick=lambda status: live.update(_status_panel(title, status)))


def _status_panel(title: str, status: dict[str, int]):
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    table = Table.grid(padding=(0, 2))
    for name, count in sorted(status.items()):
        table.add_row(name, str(count))
    # a panel reads a str title as markup: the spool's path and the AE title are shown as they are
    return Panel(
        table, title=Text(title), subtitle="Ctrl-C or SIGTERM stops after the current read"
    )


pacs = typer.Typer(
    no_args_is_help=True, help="Talk to PACS: find studies, see what waits to be sent."
)


@pacs.command("find")
@exit_code
def pacs_find(
    pacs_node: Annotated[
        str,
        typer.Option("--pacs", help="AE@HOST:PORT of the PACS, or dicomweb+https://HOST/PATH."),
    ],
    patient_id: Annotated[str, typer.Option(help="Patient ID to match.")] = "",
    date: Annotated[
        str,
        typer.Option(
            help="Study date, YYYYMMDD (or YYYY-MM-DD), or a range FROM-TO; an end may "
            "be left open."
        ),
    ] = "",
    modality: Annotated[str, typer.Option(help="A modality in the study, e.g. CT.")] = "",
    config: ConfigOption = None,
) -> None:
    """Find studies on a PACS (C-FIND, or QIDO-RS for a DICOMweb server) and list them."""
    from dicom_gateway.remote import find_studies
    from dicom_gateway.retrieve import FIND_KEYS

    settings = setup(config, False)
    found = find_studies(
        settings.gateway.ae_title,
        archive(pacs_node, settings.gateway),
        patient_id=patient_id,
        date=study_date(date),
        modality=modality,
    )
    print_table(FIND_KEYS, [[s.attributes[k] for k in FIND_KEYS] for s in found])
    console.print(f"{len(found)} stud{'y' if len(found) == 1 else 'ies'}")


@pacs.command("outbox")
@exit_code
def pacs_outbox(config: ConfigOption = None) -> None:
    """List results not yet delivered (pending, with the last error, failed, or held for a
    destination no longer configured)."""
    from dicom_gateway.outbox import undelivered

    gateway = setup(config, False).gateway
    rows = undelivered(_index(gateway), gateway.destination_names)
    if not rows:
        console.print("outbox empty: everything was delivered")
        return
    print_table(
        ("id", "destination", "SOP Instance UID", "state", "attempts", "next try", "error"),
        [
            [
                str(r.id),
                r.destination,
                r.sop_uid,
                r.state,
                str(r.attempts),
                _when(r.next_try),
                r.last_error,
            ]
            for r in rows
        ],
    )


@pacs.command("status")
@exit_code
def pacs_status(config: ConfigOption = None) -> None:
    """The site at a glance: queue depth, workers and their last heartbeat, reads per hour."""
    from dicom_gateway.overview import overview

    gateway = setup(config, False).gateway
    seen = overview(_index(gateway), gateway.destination_names)
    print_table(
        ("node", "role", "state", "job", "last heartbeat"),
        [
            [n.name, n.role, n.state if n.alive else f"gone ({n.state})", str(n.job_id or ""),
             f"{n.seen_s_ago:.0f} s ago"]
            for n in seen.nodes
        ],
    )  # fmt: skip
    oldest = (
        f"{seen.oldest_waiting} (waiting {seen.oldest_waiting_s:.0f} s)"
        if seen.oldest_waiting
        else "none"
    )
    for name, value in (
        ("studies receiving", seen.receiving),
        ("queue depth", f"{seen.queued} queued, {seen.running} reading"),
        ("workers alive", seen.workers_alive),
        ("reads in the last hour", f"{seen.reads_last_hour} ({seen.failed_last_hour} failed)"),
        ("oldest waiting study", oldest),
        ("results waiting to be sent", seen.outbox_pending),
        ("results held (destination no longer configured)", seen.outbox_held),
    ):
        console.print(f"{name}: {value}", highlight=False)


def _index(gateway: GatewaySettings):
    """The index the site's gateway writes: its PostgreSQL, or the spool's SQLite file."""
    from dicom_gateway.engines import open_index
    from dicom_gateway.index import index_path

    path = index_path(gateway.spool_dir)
    if not gateway.database and not path.is_file():
        raise BadInput(f"no spool index at {path}: has the gateway run here?")
    # An unreachable server is the one-line error below, not a warning per connection attempt.
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
    return open_index(gateway.database, gateway.spool_dir, connect_timeout_s=10)


def archive(text: str, gateway: GatewaySettings) -> Node:
    """AE@HOST:PORT or dicomweb+https://HOST/PATH (its token from [gateway.web]); a typo is bad
    input."""
    from dicom_gateway.remote import node

    try:
        return node(text, gateway.web)
    except ValueError as exc:
        raise BadInput(str(exc)) from None


_DAY = r"\d{8}|\d{4}-\d{2}-\d{2}"


def study_date(text: str) -> str:
    """--date as a PACS matches it (DA: YYYYMMDD, or a range with either end open), from that
    or from ISO dates: any other text would match no study and say "0 studies"."""
    if not text or re.fullmatch(_DAY, text):
        ends = [text]
    else:
        match = re.fullmatch(rf"({_DAY})?-({_DAY})?", text)
        if match is None or match.groups() == (None, None):
            raise BadInput(
                f"--date {text!r} is not a date: give YYYYMMDD or YYYY-MM-DD, or a range "
                "FROM-TO (an end may be left open)"
            )
        ends = [day or "" for day in match.groups()]
    days = [_day(day, text) for day in ends]
    if len(days) == 2 and all(days) and days[0] > days[1]:
        raise BadInput(f"--date {text!r} ends before it starts")
    return "-".join(days)


def _day(day: str, text: str) -> str:
    if not day:
        return ""
    try:
        return datetime.datetime.strptime(day.replace("-", ""), "%Y%m%d").strftime("%Y%m%d")
    except ValueError:
        raise BadInput(f"--date {text!r}: {day} is no day of the calendar") from None


def _when(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp).isoformat(sep=" ", timespec="seconds")
