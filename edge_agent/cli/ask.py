"""`ask`: a follow-up question about a finished read; its answer joins every report."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from edge_agent.cli.config import FileConfig
from edge_agent.cli.terminal import (
    ConfigOption,
    VerboseOption,
    console,
    errors,
    exit_code,
    setup,
    styled,
)
from imaging.errors import BadInput

if TYPE_CHECKING:
    from edge_agent.model_followup import OpenRead


@exit_code
def ask(
    result: Annotated[Path, typer.Argument(help="The --out folder of an earlier read.")],
    question: Annotated[str, typer.Argument(help="The follow-up question.")],
    pdf: Annotated[
        bool, typer.Option("--pdf", help="Print report.pdf too (one already there always is).")
    ] = False,
    config: ConfigOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Ask a further question about the same read (e.g. "which candidates are larger than 20
    mm?"); the answer is appended to trajectory.json and the reports (and a new SR instance).
    A model read continues its saved session (`read --keep-session`)."""
    from edge_agent.followup import asking

    settings = setup(config, verbose)
    with asking(result):  # one ask at a time on a result: each continues the one before
        _ask(result, question, settings, pdf=pdf)


def _ask(result: Path, question: str, settings: FileConfig, *, pdf: bool) -> None:
    from edge_agent.trajectory import Trajectory

    trajectory = Trajectory.load(result / "trajectory.json")
    if trajectory.policy.name == "protocol":
        answer_and_show(result, question, settings, pdf=pdf)
        return
    from edge_agent.cli.terminal import stream
    from edge_agent.model_followup import reopen

    # the settings the read's images were shown with, as its session records
    opened, settings = reopen(result, trajectory, settings, stream=stream)
    try:
        # the next ask continues this one
        answer_and_show(result, question, settings, pdf=pdf, opened=opened, keep_session=True)
    finally:
        opened.policy.close()
        opened.toolbox.close()


def answer_and_show(
    result: Path,
    question: str,
    settings: FileConfig,
    *,
    pdf: bool,
    opened: OpenRead | None = None,
    keep_session: bool = False,
) -> None:
    """One follow-up: answered (by the protocol from the read's measurements, or by the model
    continuing its session), appended to every report, printed (`ask`, `read --interactive`).
    `keep_session`: the model session is saved with the answer, before the trajectory."""
    from edge_agent.replay import replay_trajectory
    from edge_agent.report.files import write_evidence
    from imaging.atomic import write_all_atomic

    if opened is None:
        from edge_agent.followup import ask as answer

        trajectory = answer(result, question)
    else:
        from edge_agent.cli.terminal import show_step

        console.rule(f"Q{len(opened.trajectory.follow_ups) + 1}: {question}", style="dim")
        trajectory = opened.ask(question, on_step=show_step)
        if keep_session:  # a crash between the two leaves a session `ask` refuses by its count
            from edge_agent.model_followup import save_session

            save_session(opened.policy, trajectory, result, settings)
        write_evidence(opened.workspace, trajectory, result)
        # beside its session at once: the reports search the source folder first, and a
        # failure there would leave the trajectory a session `ask` refuses by its count
        write_all_atomic({result / "trajectory.json": trajectory.to_json().encode()})
    # every report, trajectory.json included, with the source's headers (the outline notes)
    done = replay_trajectory(trajectory, result, result, dicom=settings.report.dicom)
    if opened is None:
        console.rule(f"Q{len(trajectory.follow_ups)}: {question}", style="dim")
    console.print(trajectory.follow_ups[-1].answer, highlight=False)
    if done.dicom:
        console.print(f"SR (new instance): {done.dicom[0]}", highlight=False)
    elif done.dicom_skipped:
        console.print(
            styled("no DICOM objects", "yellow", f": {done.dicom_skipped}"), highlight=False
        )
    if pdf or (result / "report.pdf").is_file():  # one printed before would be out of date
        from edge_agent.report.pdf import write_pdf

        console.print(f"pdf: {write_pdf(result)}", highlight=False)
    console.print(f"report: {result / 'report.html'}", highlight=False)


def follow_ups(
    result: Path, settings: FileConfig, *, pdf: bool, opened: OpenRead | None = None
) -> None:
    """`read --interactive`: questions from the terminal until an empty line or end of input;
    `opened`: a model read's session, continued by each question; no `ask` meanwhile."""
    from edge_agent.followup import asking

    try:
        with asking(result):
            while True:
                console.print(
                    styled("follow-up question", "bold", " (empty line to end): "), end=""
                )
                line = sys.stdin.readline()
                if not sys.stdin.isatty():  # a terminal echoes the line and its Enter; a pipe not
                    console.print()
                if not line.strip():
                    return
                answer_and_show(result, line.strip(), settings, pdf=pdf, opened=opened)
    except BadInput as exc:  # the read stands; say why no follow-up, and stop asking
        errors.print(styled("no follow-up", "yellow", f": {exc}"), highlight=False)
