"""The `edge-agent` command: a thin face over read_study, replay, the demo, the gateway, the
exports, the bundle and the doctor. Each command group lives in its own module; this one puts
them on one typer app, in the order `--help` lists them, importing a command's module only when
that command runs (a read never loads the gateway, the exports or the evaluation)."""

from __future__ import annotations

import atexit
import contextlib
import importlib
import logging
import os
import sys
from collections.abc import Iterable
from typing import Annotated

import typer

from edge_agent import __version__
from edge_agent.collector import collector_paused

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
    atexit.register(_exit_now)  # first registered, so the last exit function to run
    try:
        named = next((arg for arg in sys.argv[1:] if not arg.startswith("-")), None)
        with collector_paused():  # imports make what lives as long as the process
            app = make_app([named] if named in COMMANDS or named in GROUPS else COMMANDS | GROUPS)
        app()
    except SystemExit as done:
        code = done.code
        _exit_status.append(code if isinstance(code, int) else int(code is not None))
        raise
    except KeyboardInterrupt:
        _exit_status.append(130)
        raise
    except BaseException:
        _exit_status.append(1)  # the interpreter prints the trace, then exits with 1
        raise
    _exit_status.append(0)


_exit_status: list[int] = []


def _exit_now() -> None:
    """The end of the console script, once every other exit function has run (threads joined,
    logging shut down, temporary files removed, child processes reaped): the process ends here
    instead of tearing down each module and freeing a read's objects one by one, which is time
    the user waits for (about 0.3 s after a 300-slice read) and changes nothing on disk. Every
    file we write is closed by then (atomic writes, closed handles); stdio is flushed here."""
    logging.shutdown()  # in case logging was imported, and registered, before main()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing reaches it
            stream.flush()
    if _exit_status:  # else main() never finished: the interpreter ends as it would anyway
        os._exit(_exit_status[-1])


def __getattr__(name: str):
    if name == "app":  # the whole CLI, for code that drives it in-process
        return make_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
