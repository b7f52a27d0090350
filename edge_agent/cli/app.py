"""The `edge-agent` command: a thin face over read_study, replay, the demo, the gateway, the
exports, the bundle and the doctor. Each command group lives in its own module; this one puts
them on one typer app, in the order `--help` lists them, importing a command's module only when
that command runs (a read never loads the gateway, the exports or the evaluation)."""

from __future__ import annotations

import gc
import importlib
import sys
from collections.abc import Iterable
from typing import Annotated

import typer

from edge_agent import __version__

# name -> (module, attribute): a command, or a group of them (`pacs`, `export`, `eval`)
COMMANDS = {
    "read": ("edge_agent.cli.read", "read"),
    "ask": ("edge_agent.cli.ask", "ask"),
    "replay": ("edge_agent.cli.read", "replay"),
    "demo": ("edge_agent.cli.read", "demo"),
    "doctor": ("edge_agent.cli.doctor", "doctor"),
    "bundle": ("edge_agent.cli.bundle", "bundle"),
    "serve": ("edge_agent.cli.gateway", "serve"),
}
GROUPS = {
    "pacs": ("edge_agent.cli.gateway", "pacs"),
    "export": ("edge_agent.cli.export", "export_app"),
    "eval": ("edge_agent.cli.eval", "eval_app"),
}


def make_app(names: Iterable[str] = (*COMMANDS, *GROUPS)) -> typer.Typer:
    """The typer app with the commands and groups `names` (default: all of them)."""
    app = typer.Typer(
        add_completion=False,
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        help="On-prem medical imaging agent that thinks with images.",
    )
    for name in names:
        if name in COMMANDS:
            app.command()(_load(*COMMANDS[name]))
        else:
            app.add_typer(_load(*GROUPS[name]), name=name)
    app.callback(invoke_without_command=True)(_version)
    return app


def _load(module: str, attribute: str):
    return getattr(importlib.import_module(module), attribute)


def _version(
    version: Annotated[bool, typer.Option("--version", help="Print the version.")] = False,
) -> None:
    if version:
        print(f"edge-agent {__version__}")
        raise typer.Exit(0)


def main() -> None:
    """The console script. Only the command named is imported; help, `--version` and a name
    that is no command get the whole app (and its usual answer)."""
    named = next((arg for arg in sys.argv[1:] if not arg.startswith("-")), None)
    app = make_app([named] if named in COMMANDS or named in GROUPS else COMMANDS | GROUPS)
    # What the imports made lives as long as the process: the collector need not walk it again
    # and again while a read allocates (a study's headers are many small objects).
    gc.freeze()
    app()


def __getattr__(name: str):
    if name == "app":  # the whole CLI, for code that drives it in-process
        return make_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
