"""`ask`: a follow-up question about a finished read; its answer joins every report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edge_agent.cli.terminal import ConfigOption, VerboseOption, console, exit_code, setup


@exit_code
def ask(
    result: Annotated[Path, typer.Argument(help="The --out folder of an earlier read.")],
    question: Annotated[str, typer.Argument(help="The follow-up question.")],
    pdf: Annotated[bool, typer.Option("--pdf", help="Print report.pdf again too.")] = False,
    config: ConfigOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Ask a further question about the same read (e.g. "which candidates are larger than 20
    mm?"); the answer is appended to trajectory.json and the reports (and a new SR instance)."""
    from edge_agent.followup import ask as answer
    from edge_agent.replay import replay
    from edge_agent.report.files import write_reports

    settings = setup(config, verbose)
    trajectory = answer(result, question)
    write_reports(trajectory, result)  # trajectory.json first: the replay below reads it
    done = replay(result / "trajectory.json", result, dicom=settings.report.dicom)
    console.rule(f"Q{len(trajectory.follow_ups)}: {question}", style="dim")
    console.print(trajectory.follow_ups[-1].answer, highlight=False, markup=False)
    if done.dicom:
        console.print(f"SR (new instance): {done.dicom[0]}", highlight=False)
    elif done.dicom_skipped:
        console.print(f"[yellow]no DICOM objects[/]: {done.dicom_skipped}", highlight=False)
    if pdf:
        from edge_agent.report.pdf import write_pdf

        console.print(f"pdf: {write_pdf(result)}", highlight=False)
    console.print(f"report: {result / 'report.html'}", highlight=False)
