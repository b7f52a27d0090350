"""`doctor`: green/red checks of this workstation; any red exits 1."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from edge_agent.cli.terminal import ConfigOption, console, exit_code, setup, styled


@exit_code
def doctor(
    out: Annotated[Path, typer.Option(help="Working folder (the spool lives under it).")] = Path(
        "."
    ),
    models: Annotated[
        Optional[list[Path]],  # noqa: UP045
        typer.Option(help="Model folder(s) with manifest.json, or a folder of them."),
    ] = None,
    config: ConfigOption = None,
) -> int:
    """Versions, decoders, GPU; config, spool, DICOM port, models, a smoke read; red exits 1."""
    from rich.table import Table

    from edge_agent.cli.readiness import checks

    setup(None, False)
    table = Table("check", "", "detail", show_header=False)
    marks = {True: styled("ok", "green"), False: styled("FAIL", "red"), None: ""}
    red = []
    for check in checks(config, out, tuple(models or ())):
        table.add_row(check.name, marks[check.ok], check.detail)
        if check.ok is False:
            red.append(check.name)
    console.print(table)
    console.print(
        styled("not ready:", "red", " " + ", ".join(red)) if red else styled("ready", "green")
    )
    return 1 if red else 0
