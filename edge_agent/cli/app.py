"""The `edge-agent` command: a thin face over read_study, replay, the demo, the gateway, the
exports, the bundle and the doctor. Each command group lives in its own module; this one only
puts them on one typer app, in the order `--help` lists them."""

from __future__ import annotations

from typing import Annotated

import typer

from edge_agent import __version__
from edge_agent.cli.bundle import bundle
from edge_agent.cli.doctor import doctor
from edge_agent.cli.eval import eval_app
from edge_agent.cli.export import export_app
from edge_agent.cli.gateway import pacs, serve
from edge_agent.cli.read import demo, read, replay
from edge_agent.cli.terminal import console

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="On-prem medical imaging agent that thinks with images.",
)
for command in (read, replay, demo, doctor, bundle, serve):
    app.command()(command)
app.add_typer(pacs, name="pacs")
app.add_typer(export_app, name="export")
app.add_typer(eval_app, name="eval")


@app.callback(invoke_without_command=True)
def _version(
    version: Annotated[bool, typer.Option("--version", help="Print the version.")] = False,
) -> None:
    if version:
        console.print(f"edge-agent {__version__}")
        raise typer.Exit(0)


def main() -> None:
    app()
