"""`edge-agent eval run` and `edge-agent eval compare`: the terminal face of the evaluation
(edge_agent/evaluation)."""

from __future__ import annotations

import logging
import sys
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from dicom_gateway.remote import get_study
from dicom_gateway.settings import GatewaySettings
from edge_agent.cli.config import load_config
from edge_agent.cli.gateway import archive
from edge_agent.cli.terminal import POLICY_HELP, exit_code, styled
from edge_agent.evaluation.cases import CaseSet, read_cases
from edge_agent.evaluation.compare import compare_runs
from edge_agent.evaluation.insertion import build_insertion_set
from edge_agent.evaluation.outputs import write_comparison, write_run_outputs
from edge_agent.evaluation.page import metric_rows
from edge_agent.evaluation.runner import open_run, run_eval
from edge_agent.evaluation.sources import Retrieve
from imaging.errors import BadInput

log = logging.getLogger(__name__)
console = Console(stderr=True, markup=False)  # as the terminal's: text printed as it is
BUILTIN = ("insertion",)

eval_app = typer.Typer(
    help="Measure what a policy reads correctly: run a case set, compare runs.",
    no_args_is_help=True,
    add_completion=False,
)


@eval_app.command("run")
@exit_code
def run(
    cases: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Argument(help="Case file (.csv, .jsonl, .json): VQA, multiple choice or site list."),
    ] = None,
    out: Annotated[
        Path,
        typer.Option(
            "--out", "-o", help="Run folder (resumed if it exists, made with the same settings)."
        ),
    ] = (Path("edge-agent-eval")),
    builtin: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="A built-in set instead of CASES: 'insertion'."),
    ] = None,
    config: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--config", "-c", help="edge-agent.toml (policy, back end, tools)."),
    ] = None,
    policy: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help=POLICY_HELP),
    ] = None,
    no_tools: Annotated[
        bool, typer.Option("--no-tools", help="Ablation: tools refuse; answer from the images.")
    ] = False,
    pacs: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            help="AE@HOST:PORT (C-GET) or dicomweb+https://HOST/PATH (WADO-RS) for the rows "
            "given by study_uid."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the built-in insertion set.")] = 16,
) -> int:
    """Read every case with the same read_study a real read uses; write RUN/metrics.json/.html."""
    finished = []  # cases of this case file finished so far, resumed or read now
    try:
        settings = load_config(config)
        if policy:
            settings = replace(settings, policy=replace(settings.policy, name=policy))
        case_set = _case_set(cases, builtin, out, seed)
        _show_left_out(case_set)
        opened = open_run(case_set, settings, out, no_tools=no_tools)
        with _progress() as bar:
            task = bar.add_task("cases", total=len(case_set.cases))

            def advance(result, resumed: bool) -> None:
                finished.append(result.id)
                bar.advance(task)
                if result.status == "failed":
                    bar.console.print(
                        styled(f"case {result.id} failed:", "red", f" {result.reason}")
                    )

            results = run_eval(
                case_set,
                settings,
                out,
                retrieve=_retrieve(pacs, settings.gateway),
                on_case=advance,
                opened=opened,
            )
        metrics = write_run_outputs(out, results)
    except KeyboardInterrupt:
        console.print(
            f"interrupted: {len(finished)} case(s) finished in {out}; run again to resume"
        )
        return 130
    _show([str(out)], [metric_rows(metrics)])
    console.print(f"metrics: {out / 'metrics.json'}  page: {out / 'metrics.html'}")
    return 0


@eval_app.command("compare")
@exit_code
def compare(
    runs: Annotated[list[Path], typer.Argument(help="Run folders; the first is the baseline.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for compare.html/.json.")] = (
        Path("edge-agent-compare")
    ),
) -> None:
    """Metrics side by side; accuracy paired per case with McNemar's test; the flipped cases."""
    comparison = compare_runs(runs)
    page = write_comparison(out, comparison)
    _show(list(comparison.runs), [metric_rows(m) for m in comparison.metrics])
    for pairing in comparison.pairings:
        test = pairing.test
        console.print(
            f"{pairing.a} vs {pairing.b}: {pairing.paired} paired, right only in A "
            f"{test.only_a}, only in B {test.only_b}, McNemar p = {test.p_value:.4g} "
            f"({test.method})",
            highlight=False,
        )
        for flip in pairing.flips:
            console.print(
                f"  flipped {flip.case}: {flip.outcome_a} -> {flip.outcome_b}  "
                f"{flip.read_a}  {flip.read_b}",
                highlight=False,
            )
    console.print(f"page: {page}")


def _case_set(cases: Path | None, builtin: str | None, out: Path, seed: int) -> CaseSet:
    if (cases is None) == (builtin is None):
        raise BadInput("give either CASES or --builtin NAME")
    if builtin is None:
        return read_cases(cases)
    if builtin not in BUILTIN:
        raise BadInput(f"built-in set {builtin!r} is unknown; built in: {', '.join(BUILTIN)}")
    return read_cases(build_insertion_set(out / "builtin-insertion", seed))


def _retrieve(pacs: str | None, gateway: GatewaySettings) -> Retrieve | None:
    """C-GET or WADO-RS from `--pacs` for the rows given by study_uid."""
    if pacs is None:
        return None
    source = archive(pacs, gateway)
    return lambda study_uid, folder: get_study(gateway.ae_title, source, study_uid, folder)


def _show_left_out(case_set: CaseSet) -> None:
    for problem in case_set.problems:
        console.print(styled(f"row {problem.where} left out:", "yellow", f" {problem.problem}"))


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
    )


def _show(names: list[str], tables: list[list[tuple[str, str]]]) -> None:
    table = Table("metric", *names)
    for i, (name, _) in enumerate(tables[0]):
        table.add_row(name, *(t[i][1] for t in tables))
    Console(file=sys.stdout, markup=False).print(table)
