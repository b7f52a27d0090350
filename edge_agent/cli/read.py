"""`read`, `replay` and `demo`: one study read with its reasoning shown live, or re-rendered."""

from __future__ import annotations

import tempfile
from contextlib import ExitStack, nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Optional

import typer

from edge_agent.cli.config import FileConfig
from edge_agent.cli.terminal import (
    POLICY_HELP,
    ConfigOption,
    VerboseOption,
    console,
    errors,
    exit_code,
    setup,
    show_step,
    stream,
    styled,
)
from edge_agent.collector import collector_off
from edge_agent.policies import policy_key
from edge_agent.read import ReadResult, read_study
from edge_agent.selection import Selection
from imaging.errors import BadInput
from imaging.study import Study


@exit_code
def read(
    path: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Argument(help="A study folder (searched recursively) or a file."),
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the reports.")] = Path(
        "edge-agent-read"
    ),
    question: Annotated[Optional[str], typer.Option(help="What to ask.")] = None,  # noqa: UP045
    policy: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help=POLICY_HELP),
    ] = None,
    pacs: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            help="Retrieve the study from AE@HOST:PORT (C-GET) or dicomweb+https://HOST/PATH "
            "(WADO-RS) instead of PATH."
        ),
    ] = None,
    study: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="Study Instance UID to retrieve with --pacs."),
    ] = None,
    model: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(
            help="GGUF text model for --policy llama-cpp; for --policy onnx-trt the folder "
            "written by `export onnx-llm`."
        ),
    ] = None,
    mmproj: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(help="GGUF vision projector (mmproj) for --policy llama-cpp."),
    ] = None,
    pdf: Annotated[
        bool, typer.Option("--pdf", help="Also print report.pdf (needs Chromium).")
    ] = False,
    interactive: Annotated[
        bool,
        typer.Option(
            "--interactive",
            "-i",
            help="After the answer, take follow-up questions from the terminal.",
        ),
    ] = False,
    keep_session: Annotated[
        bool,
        typer.Option(
            "--keep-session",
            help="Save a model read's KV cache in OUT/session/, so `ask` continues it later "
            "(a study retrieved with --pacs is kept in OUT/study/).",
        ),
    ] = False,
    profile: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            help="Prompt profile (a name such as ophiuchus-v1, or a .toml file) for a model "
            "policy; default: the model folder's manifest, else the read's."
        ),
    ] = None,
    config: ConfigOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Read one study and write report.json, report.html, trajectory.json, evidence/, dicom/."""
    settings = setup(config, verbose)
    if policy:
        settings = _with_policy(settings, policy)
    if model or mmproj:
        settings = _with_model(settings, model, mmproj)
    if profile:
        settings = _with_profile(settings, profile)
    if (path is None) == (pacs is None) or bool(pacs) != bool(study):
        raise BadInput("give either PATH, or --pacs with --study UID")
    kept_study = _kept_study(out) if pacs and keep_session else None
    with ExitStack() as kept:
        # a model read taking follow-ups keeps its model (and KV cache), workspace and tools
        held = _held(settings, kept) if interactive or keep_session else {}
        if pacs is None:
            result = read_and_show(path, out, settings, question, **held)
        else:
            from dicom_gateway.remote import get_study  # pynetdicom: only a --pacs read needs it
            from edge_agent.cli.gateway import archive

            spool = kept_study or Path(
                kept.enter_context(tempfile.TemporaryDirectory(prefix="edge-agent-"))
            )
            remote = archive(pacs, settings.gateway)
            count = get_study(settings.gateway.ae_title, remote, study, spool)
            errors.print(f"retrieved {count} instance(s) from {pacs}", highlight=False)
            result = read_and_show(spool, out, settings, question, **held)
        if pdf:
            from edge_agent.report.pdf import write_pdf

            console.print(f"pdf: {write_pdf(out)}", highlight=False)
        _follow_ups(result, settings, held, interactive=interactive, keep=keep_session, pdf=pdf)


def _kept_study(out: Path) -> Path:
    """Where a retrieved study stays when its session is kept: `ask` loads the study again from
    the folder the read names, so it must outlive the read. A folder holding an earlier study
    is refused rather than emptied or mixed with this one."""
    folder = out / "study"
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise BadInput(f"{folder} is not empty: --keep-session keeps the retrieved study there")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _held(settings: FileConfig, kept: ExitStack) -> dict:
    """A model policy and the tools, opened here so they outlive the read; none for protocol."""
    if policy_key(settings.policy.name) == "protocol":
        return {}
    from edge_agent.policies import make_policy
    from tools.toolbox import default_toolbox

    toolbox = default_toolbox(settings.tools)
    kept.callback(toolbox.close)
    policy = make_policy(settings.policy, stream=stream)
    kept.callback(policy.close)  # closed first: the model session before the tools
    return {"policy": policy, "toolbox": toolbox}


def _follow_ups(
    result: ReadResult,
    settings: FileConfig,
    held: dict,
    *,
    interactive: bool,
    keep: bool,
    pdf: bool,
) -> None:
    """Questions after the answer (a model read continues its session), then the session saved
    for `ask` when asked to keep it."""
    opened = None
    if held and hasattr(held["policy"], "resume"):
        from edge_agent.model_followup import OpenRead

        opened = OpenRead(
            held["policy"], result.trajectory, result.workspace, held["toolbox"], settings.budget
        )
    if interactive:
        from edge_agent.cli.ask import follow_ups

        follow_ups(result.out_dir, settings, pdf=pdf, opened=opened)
    if keep and opened is None:
        errors.print(
            styled("--keep-session", "yellow", ": the protocol has no model session to keep")
        )
    elif keep and not hasattr(opened.policy, "save_session"):
        errors.print(styled("--keep-session", "yellow", ": only a llama-cpp session can be saved"))
    elif keep:
        from edge_agent.model_followup import save_session

        saved = save_session(opened.policy, opened.trajectory, result.out_dir, settings)
        console.print(
            f"session: {result.out_dir / 'session'} ({saved.bytes / 2**20:.1f} MiB)",
            highlight=False,
        )


def _with_policy(settings: FileConfig, name: str) -> FileConfig:
    return replace(settings, policy=replace(settings.policy, name=name))


def _with_model(settings: FileConfig, model: Path | None, mmproj: Path | None) -> FileConfig:
    """--model / --mmproj go to the settings of the chosen model policy."""
    policy = settings.policy
    if policy_key(policy.name) == "onnx_trt":
        if mmproj:
            raise BadInput("--mmproj is for --policy llama-cpp; the ONNX folder has its vision")
        onnx = replace(policy.onnx_trt, model_dir=str(model or ""))
        return replace(settings, policy=replace(policy, onnx_trt=onnx))
    llm = replace(policy.llama_cpp, model=str(model or ""), mmproj=str(mmproj or ""))
    return replace(settings, policy=replace(policy, llama_cpp=llm))


def _with_profile(settings: FileConfig, profile: str) -> FileConfig:
    """--profile goes to both model policies; the one that runs uses it (unknown: exit 2)."""
    from edge_agent.formats import load_profile

    load_profile(profile)  # checked now, whichever policy runs
    policy = settings.policy
    return replace(
        settings,
        policy=replace(
            policy,
            llama_cpp=replace(policy.llama_cpp, profile=profile),
            onnx_trt=replace(policy.onnx_trt, profile=profile),
        ),
    )


def read_and_show(
    path: Path, out: Path, settings: FileConfig, question: str | None, *, policy=None, toolbox=None
) -> ReadResult:
    """The live trail: a loading bar that is gone before anything else is printed (on a
    terminal; elsewhere a transient bar shows nothing), the series chosen, then each step as it
    happens, then the answer."""
    bar = _loading_bar() if errors.is_terminal else None
    task = bar.add_task("load", total=None) if bar is not None else None

    def progress(done: int, total: int, _file: Path) -> None:
        bar.update(task, completed=done, total=total)

    def selected(study: Study, selection: Selection) -> None:
        if bar is not None:
            bar.stop()  # transient: the bar's line is erased, so step 1 starts on a clean line
        if study.skipped:
            errors.print(
                styled(f"{len(study.skipped)} file(s) skipped", "yellow", " (named above)")
            )
        console.print(selection.reason, style="dim", highlight=False)

    with collector_off(), bar if bar is not None else nullcontext():
        result = read_study(
            path,
            out,
            settings,
            question=question,
            policy=policy,
            toolbox=toolbox,
            progress=progress if bar is not None else None,
            on_selected=selected,
            on_step=show_step,
            stream=stream,
        )
    _show_result(result)
    return result


def _loading_bar():
    """rich's progress bar, imported only for a terminal that shows it."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    return Progress(
        TextColumn("loading"), BarColumn(), MofNCompleteColumn(), console=errors, transient=True
    )


def _show_result(result: ReadResult) -> None:
    trajectory, report = result.trajectory, result.report
    console.rule(trajectory.policy.label)
    if report["answer"]:
        console.print(report["answer"], highlight=False)
    else:
        console.print(
            styled("no answer", "red", f": {trajectory.end_reason} ({trajectory.end_detail})")
        )
    console.print(report["disclaimer"], style="yellow", highlight=False)
    console.print(f"report: {result.out_dir / 'report.html'}", highlight=False)


@exit_code
def replay(
    trajectory: Annotated[Path, typer.Argument(help="A trajectory.json written by read.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the re-rendered reports.")],
    source: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(help="The source study, for dicom/ (default: the folder the read names)."),
    ] = None,
    pdf: Annotated[
        bool, typer.Option("--pdf", help="Also print report.pdf (needs Chromium).")
    ] = False,
    config: ConfigOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Re-render the reports of an earlier read from its trajectory; dicom/ too when the source
    study is at hand."""
    from edge_agent.replay import replay as replay_read

    settings = setup(config, verbose)
    with collector_off():
        result = replay_read(trajectory, out, source, dicom=settings.report.dicom)
    if result.dicom_skipped:
        console.print(
            styled("no DICOM objects", "yellow", f": {result.dicom_skipped}"), highlight=False
        )
    if pdf:
        from edge_agent.report.pdf import write_pdf

        console.print(f"pdf: {write_pdf(out)}", highlight=False)
    console.print(f"report: {out / 'report.html'}", highlight=False)


@exit_code
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the study and reports.")] = (
        Path("edge-agent-demo")
    ),
    config: ConfigOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Assemble a sample study from files that ship with pydicom and read it (no model needed)."""
    from edge_agent.sample import write_sample_study

    settings = setup(config, verbose)
    study = write_sample_study(out / "study")
    console.print(f"sample study: {study}", highlight=False)
    read_and_show(study, out / "report", settings, None)
