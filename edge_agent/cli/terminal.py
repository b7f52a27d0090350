"""What every command shares with the terminal: the consoles, the logging set-up, the common
options, and the one place where an outcome becomes an exit code.

Exit codes: 0 success, 2 bad input or an output the system will not take (one line, no
traceback), 1 internal error (with a trace), 130 interrupted; a command may also return 1 itself
(a red check, a failed threshold)."""

from __future__ import annotations

import errno
import functools
import json
import logging
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.text import Text

from edge_agent.cli.config import FileConfig, load_config
from imaging.errors import BadInput

if TYPE_CHECKING:
    from edge_agent.trajectory import StepRecord

# soft_wrap: paths and UIDs stay on one line, so output can be grepped and copied. markup=False:
# what a user, a model, a header or a path says is printed as it is ("[/]" in a question,
# "[left lobe]" in a thought); a label is styled as a rich Text (`styled`), never by markup.
console = Console(soft_wrap=True, markup=False)
errors = Console(stderr=True, soft_wrap=True, markup=False)
log = logging.getLogger("edge_agent")

ConfigOption = Annotated[
    Optional[Path],  # noqa: UP045 - typer reads the annotation at runtime on Python 3.10
    typer.Option("--config", "-c", help="edge-agent.toml; defaults apply without one."),
]
# Help text is rich markup: a TOML table name must be escaped, or "[policy]" vanishes.
POLICY_HELP = "protocol, llama-cpp or onnx-trt; overrides \\[policy] name in the config."
VerboseOption = Annotated[bool, typer.Option("--verbose", "-v", help="Log each event.")]


def exit_code(command: Callable[..., int | None]) -> Callable[..., None]:
    """The command returns its exit code (None is 0); the user's mistakes end in one line (2),
    our bugs with a trace (1)."""

    @functools.wraps(command)
    def guarded(*args, **kwargs) -> None:
        try:
            code = command(*args, **kwargs)
        except KeyboardInterrupt:
            errors.print("interrupted")
            raise typer.Exit(130) from None
        except Exception as exc:
            line = _users_to_mend(exc)
            if line is None:
                log.exception("internal error")
                errors.print(
                    styled("internal error", "bold red", ": see the trace above; please report it.")
                )
                raise typer.Exit(1) from None
            errors.print(styled("error:", "bold red", f" {line}"), highlight=False)
            raise typer.Exit(2) from None
        if code:
            raise typer.Exit(code)

    return guarded


# What the system says of a file it will not take (read-only, full, over quota, a file where
# a folder goes, no permission): the user mends it, as bad input. Any other OSError is our bug.
CANNOT_WRITE = frozenset(
    {
        errno.ENOSPC,
        errno.EDQUOT,
        errno.EROFS,
        errno.EACCES,
        errno.EPERM,
        errno.EEXIST,
        errno.ENOTDIR,
        errno.EISDIR,
    }
)


def _users_to_mend(exc: Exception) -> str | None:
    """The one line an error the user can mend ends with; None for our bug."""
    if isinstance(exc, BadInput):
        return str(exc)
    if isinstance(exc, OSError) and exc.errno in CANNOT_WRITE:  # a file read can be refused too
        return exc.strerror if exc.filename is None else f"{exc.filename}: {exc.strerror}"
    return None


class JsonLines(logging.Formatter):
    """One JSON object per event, for a service whose logs go to a collector."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["trace"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def setup(config_path: Path | None, verbose: bool, *, json_logs: bool = False) -> FileConfig:
    """Logging for this run, then the configuration (defaults without a file)."""
    if errors.is_terminal:
        handler: logging.Handler = RichHandler(console=errors, show_path=False, show_time=verbose)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:  # one line per event for log files and pipes
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(
            JsonLines()
            if json_logs
            else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        )
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, handlers=[handler], force=True
    )
    # pydicom logs each failed decoder plugin with its traceback; the error a damaged file is
    # skipped with already names every plugin's reason on one line.
    logging.getLogger("pydicom.pixels.decoders.base").setLevel(logging.CRITICAL)
    # pydicom and highdicom warn of each value they read leniently, quoting it (a patient's name
    # too), as a warning and a log line: the line a damaged file is skipped with names what is
    # wrong with it. Other libraries' warnings (llama.cpp's, torch's on export) still show.
    warnings.filterwarnings("ignore", module=r"(pydicom|highdicom)(\.|$)")
    for library in ("pydicom", "highdicom"):
        logging.getLogger(library).setLevel(logging.ERROR)
    return load_config(config_path)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A table on a terminal; tab-separated lines for scripts and pipes (nothing cut short)."""
    if console.is_terminal:
        from rich.table import Table

        table = Table(*headers)
        for row in rows:
            table.add_row(*row)
        console.print(table)
    else:
        for line in [headers, *rows]:
            sys.stdout.write("\t".join(line) + "\n")


def styled(label: str, style: str, rest: str = "") -> Text:
    """A label in a style, then plain text: how a line is coloured on consoles that read no
    markup."""
    return Text.assemble((label, style), rest)


def show_step(step: StepRecord) -> None:
    """One step of the live trail: the call, the thought, what the tool observed."""
    arguments = ", ".join(f"{k}={v}" for k, v in step.arguments.items())
    call = Text.assemble(
        (f"{step.number:>2}", "bold"),
        " ",
        (step.tool, "red" if step.error else "cyan"),
        f"({arguments})",
    )
    console.print(call, highlight=False)
    if step.thought:
        console.print(f"    {step.thought}", style="dim", highlight=False)
    console.print(f"    {step.observation}", highlight=False)


def stream(text: str) -> None:
    """A model's reply as it is decoded, dim, on the live trail."""
    console.print(text, end="", style="dim", highlight=False)
