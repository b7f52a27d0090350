"""The `edge-agent` command: a thin face over read_study, replay, the demo and the doctor.

Exit codes: 0 success, 2 bad input (one line, no traceback), 1 internal error."""

from __future__ import annotations

import datetime
import json
import logging
import signal
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from dicom_gateway.retrieve import get_study
from edge_agent import __version__
from edge_agent.config import Config, load_config
from edge_agent.read import ReadResult, read_study
from edge_agent.trajectory import StepRecord
from imaging.errors import BadInput

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="On-prem medical imaging agent that thinks with images.",
)
# soft_wrap: paths and UIDs stay on one line, so output can be grepped and copied.
console = Console(soft_wrap=True)
errors = Console(stderr=True, soft_wrap=True)
log = logging.getLogger("edge_agent")

ConfigOption = Annotated[
    Optional[Path],  # noqa: UP045 - typer reads the annotation at runtime on Python 3.10
    typer.Option("--config", "-c", help="edge-agent.toml; defaults apply without one."),
]
VerboseOption = Annotated[bool, typer.Option("--verbose", "-v", help="Log each event.")]


def main() -> None:
    app()


def _guarded(action: Callable[[], None]) -> None:
    """Turn errors into exit codes: the user's mistakes in one line, our bugs with a trace."""
    try:
        action()
    except BadInput as exc:
        errors.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        errors.print("interrupted")
        raise typer.Exit(130) from None
    except Exception:
        log.exception("internal error")
        errors.print("[bold red]internal error[/]: see the trace above; please report it.")
        raise typer.Exit(1) from None


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


def _setup(config_path: Path | None, verbose: bool, *, json_logs: bool = False) -> Config:
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
    return load_config(config_path)


@app.command()
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
        typer.Option(help="Policy name; overrides [policy] name in the config."),
    ] = None,
    pacs: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="Retrieve the study from AE@HOST:PORT (C-GET) instead of PATH."),
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
    config: ConfigOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Read one study and write report.json, report.html, trajectory.json, evidence/, dicom/."""

    def action() -> None:
        settings = _setup(config, verbose)
        if policy:
            settings = _with_policy(settings, policy)
        if model or mmproj:
            settings = _with_model(settings, model, mmproj)
        if (path is None) == (pacs is None) or bool(pacs) != bool(study):
            raise BadInput("give either PATH, or --pacs AE@HOST:PORT with --study UID")
        if pacs is None:
            _read_and_show(path, out, settings, question)
            return
        with tempfile.TemporaryDirectory(prefix="edge-agent-get-") as spool:
            count = get_study(settings.gateway.ae_title, _peer(pacs), study, Path(spool))
            errors.print(f"retrieved {count} instance(s) from {pacs}", highlight=False)
            _read_and_show(Path(spool), out, settings, question)

    _guarded(action)


def _peer(text: str):
    from dicom_gateway.settings import Peer

    try:
        return Peer.parse(text)
    except ValueError as exc:
        raise BadInput(str(exc)) from None


def _with_policy(settings: Config, name: str) -> Config:
    return replace(settings, policy=replace(settings.policy, name=name))


def _with_model(settings: Config, model: Path | None, mmproj: Path | None) -> Config:
    """--model / --mmproj go to the settings of the chosen model policy."""
    policy = settings.policy
    if policy.name.replace("-", "_") == "onnx_trt":
        if mmproj:
            raise BadInput("--mmproj is for --policy llama-cpp; the ONNX folder has its vision")
        onnx = replace(policy.onnx_trt, model_dir=str(model or ""))
        return replace(settings, policy=replace(policy, onnx_trt=onnx))
    llm = replace(policy.llama_cpp, model=str(model or ""), mmproj=str(mmproj or ""))
    return replace(settings, policy=replace(policy, llama_cpp=llm))


def _read_and_show(path: Path, out: Path, settings: Config, question: str | None) -> ReadResult:
    with Progress(
        TextColumn("loading"), BarColumn(), MofNCompleteColumn(), console=errors, transient=True
    ) as bar:
        task = bar.add_task("load", total=None)

        def progress(done: int, total: int, _file: Path) -> None:
            bar.update(task, completed=done, total=total)

        result = read_study(
            path,
            out,
            settings,
            question=question,
            progress=progress,
            on_step=_show_step,
            stream=lambda text: console.print(
                text, end="", style="dim", markup=False, highlight=False
            ),
        )
    _show_result(result)
    return result


def _show_step(step: StepRecord) -> None:
    style = "red" if step.error else "cyan"
    arguments = ", ".join(f"{k}={v}" for k, v in step.arguments.items())
    console.print(
        f"[bold]{step.number:>2}[/] [{style}]{step.tool}[/]({arguments})", highlight=False
    )
    if step.thought:
        console.print(f"    [dim]{step.thought}[/]", highlight=False)
    console.print(f"    {step.observation}", highlight=False, soft_wrap=True)


def _show_result(result: ReadResult) -> None:
    trajectory, report = result.trajectory, result.report
    if result.study.skipped:
        errors.print(f"[yellow]{len(result.study.skipped)} file(s) skipped[/] (named above)")
    console.print(f"[dim]{trajectory.selection}[/]", highlight=False)
    console.rule(trajectory.policy.label)
    if report["answer"]:
        console.print(report["answer"], highlight=False)
    else:
        console.print(f"[red]no answer[/]: {trajectory.end_reason} ({trajectory.end_detail})")
    console.print(f"[yellow]{report['disclaimer']}[/]", highlight=False)
    console.print(f"report: {result.out_dir / 'report.html'}", highlight=False)


@app.command()
def replay(
    trajectory: Annotated[Path, typer.Argument(help="A trajectory.json written by read.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the re-rendered reports.")],
    verbose: VerboseOption = False,
) -> None:
    """Re-render the reports of an earlier read from its trajectory alone."""

    def action() -> None:
        from edge_agent.report.files import copy_evidence, write_reports
        from edge_agent.trajectory import Trajectory

        _setup(None, verbose)
        recorded = Trajectory.load(trajectory)
        out.mkdir(parents=True, exist_ok=True)
        copy_evidence(recorded, trajectory.parent, out)
        write_reports(recorded, out)
        console.print(f"report: {out / 'report.html'}", highlight=False)

    _guarded(action)


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the study and reports.")] = (
        Path("edge-agent-demo")
    ),
    config: ConfigOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Assemble a sample study from files that ship with pydicom and read it (no model needed)."""

    def action() -> None:
        from edge_agent.sample import write_sample_study

        settings = _setup(config, verbose)
        study = write_sample_study(out / "study")
        console.print(f"sample study: {study}", highlight=False)
        _read_and_show(study, out / "report", settings, None)

    _guarded(action)


@app.command()
def doctor(
    out: Annotated[Path, typer.Option(help="Working folder (the spool lives under it).")] = Path(
        "."
    ),
    models: Annotated[
        Optional[list[Path]],  # noqa: UP045
        typer.Option(help="Model folder(s) with manifest.json, or a folder of them."),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Versions, decoders, GPU; config, spool, DICOM port, models, a smoke read; red exits 1."""
    red: list[str] = []

    def action() -> None:
        from rich.table import Table

        from edge_agent.doctor import checks

        _setup(None, False)
        table = Table("check", "", "detail", show_header=False)
        marks = {True: "[green]ok[/]", False: "[red]FAIL[/]", None: ""}
        for check in checks(config, out, tuple(models or ())):
            table.add_row(check.name, marks[check.ok], check.detail)
            if check.ok is False:
                red.append(check.name)
        console.print(table)
        console.print("[red]not ready:[/] " + ", ".join(red) if red else "[green]ready[/]")

    _guarded(action)
    if red:
        raise typer.Exit(1)


@app.command()
def bundle(
    out: Annotated[Path, typer.Option("--out", "-o", help="The bundle file to write (.tar).")],
    models: Annotated[
        Optional[list[Path]],  # noqa: UP045
        typer.Option(help="Model folder(s) with manifest.json to include."),
    ] = None,
    extras: Annotated[str, typer.Option(help="Extras to install, e.g. llm or llm,onnx.")] = "llm",
    python: Annotated[str, typer.Option(help="Target Python, e.g. 3.11.")] = "",
    target_platform: Annotated[
        str, typer.Option("--platform", help="Target platform tag (binary wheels only).")
    ] = "",
    gpu: Annotated[str, typer.Option(help="cuda12: build llama-cpp-python with CUDA.")] = "",
    sign: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(help="Ed25519 private key (PEM) to sign SHA256SUMS."),
    ] = None,
    verbose: VerboseOption = False,
) -> None:
    """Build the air-gapped bundle on a connected machine (run from a source checkout)."""

    def action() -> None:
        from installers.bundle import BundleRequest, build_bundle

        _setup(None, verbose)
        request = BundleRequest(
            out=out,
            models=tuple(models or ()),
            extras=extras,
            python=python,
            platform=target_platform,
            gpu=gpu,
            sign_key=sign,
        )
        with errors.status("collecting wheels and models"):
            path = build_bundle(request)
        console.print(f"bundle: {path} ({path.stat().st_size / 2**20:.1f} MiB)", highlight=False)

    _guarded(action)


@app.command()
def serve(config: ConfigOption = None, verbose: VerboseOption = False) -> None:
    """Run the DICOM gateway: receive studies, read each complete one, send results back."""

    def action() -> None:
        from dicom_gateway.service import Service

        settings = _setup(config, verbose, json_logs=True)
        stop = threading.Event()
        for number in (signal.SIGTERM, signal.SIGINT):
            signal.signal(number, lambda *_: stop.set())
        service = Service(settings)
        title = (
            f"edge-agent gateway {settings.gateway.ae_title} on "
            f"{settings.gateway.bind}:{settings.gateway.port}, spool {service.spool.root}"
        )
        errors.print(title, highlight=False)
        if not console.is_terminal:
            service.run(stop)
            return
        from rich.live import Live

        with Live(_status_panel(title, {}), console=console, refresh_per_second=2) as live:
            service.run(stop, on_tick=lambda status: live.update(_status_panel(title, status)))

    _guarded(action)


pacs = typer.Typer(
    no_args_is_help=True, help="Talk to PACS: find studies, see what waits to be sent."
)
app.add_typer(pacs, name="pacs")


@pacs.command("find")
def pacs_find(
    pacs_node: Annotated[str, typer.Option("--pacs", help="AE@HOST:PORT of the PACS.")],
    patient_id: Annotated[str, typer.Option(help="Patient ID to match.")] = "",
    date: Annotated[str, typer.Option(help="Study date, YYYYMMDD or a range.")] = "",
    modality: Annotated[str, typer.Option(help="A modality in the study, e.g. CT.")] = "",
    config: ConfigOption = None,
) -> None:
    """Find studies on a PACS (C-FIND, study level) and list them."""

    def action() -> None:
        from dicom_gateway.retrieve import FIND_KEYS, find_studies

        settings = _setup(config, False)
        found = find_studies(
            settings.gateway.ae_title,
            _peer(pacs_node),
            patient_id=patient_id,
            date=date,
            modality=modality,
        )
        _print_table(FIND_KEYS, [[s.attributes[k] for k in FIND_KEYS] for s in found])
        console.print(f"{len(found)} stud{'y' if len(found) == 1 else 'ies'}")

    _guarded(action)


@pacs.command("outbox")
def pacs_outbox(config: ConfigOption = None) -> None:
    """List results not yet delivered (pending, with the last error, or failed)."""

    def action() -> None:
        from dicom_gateway.index import Index

        settings = _setup(config, False)
        index_path = Path(settings.gateway.spool_dir) / "index.sqlite"
        if not index_path.is_file():
            raise BadInput(f"no spool index at {index_path}: has the gateway run here?")
        rows = Index(index_path).read("SELECT * FROM outbox WHERE state != 'sent' ORDER BY id")
        if not rows:
            console.print("outbox empty: everything was delivered")
            return
        _print_table(
            ("id", "destination", "SOP Instance UID", "state", "attempts", "next try", "error"),
            [
                [
                    str(r["id"]),
                    r["destination"],
                    r["sop_uid"],
                    r["state"],
                    str(r["attempts"]),
                    _when(r["next_try"]),
                    r["last_error"] or "",
                ]
                for r in rows
            ],
        )

    _guarded(action)


def _status_panel(title: str, status: dict[str, int]):
    from rich.panel import Panel
    from rich.table import Table

    table = Table.grid(padding=(0, 2))
    for name, count in sorted(status.items()):
        table.add_row(name, str(count))
    return Panel(table, title=title, subtitle="Ctrl-C or SIGTERM stops after the current read")


def _print_table(headers, rows) -> None:
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


def _when(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp).isoformat(sep=" ", timespec="seconds")


export_app = typer.Typer(no_args_is_help=True, help="Turn models into files a workstation runs.")
app.add_typer(export_app, name="export")


@export_app.command("tiny-vlm")
def export_tiny_vlm(
    out: Annotated[Path, typer.Argument(help="Folder for the Hugging Face checkpoint.")],
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same files.")] = 0,
) -> None:
    """A tiny random-weight Qwen2.5-VL (HF format) with a locally trained tokenizer, for tests."""

    def action() -> None:
        from export.tiny_vlm import build_tiny_vlm

        _setup(None, False)
        console.print(f"tiny Qwen2.5-VL: {build_tiny_vlm(out, seed)}", highlight=False)

    _guarded(action)


@export_app.command("gguf")
def export_gguf(
    hf_dir: Annotated[Path, typer.Argument(help="Hugging Face checkpoint folder.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the GGUF files.")],
    outtype: Annotated[str, typer.Option(help="f16, bf16 or f32 for the converted model.")] = "f16",
    quant: Annotated[str, typer.Option(help="Comma-separated: q8_0,q4_k_m,...")] = "",
    pre_tokenizer: Annotated[
        str, typer.Option(help="Force llama.cpp's pre-tokenizer NAME for an unknown tokenizer.")
    ] = "",
    llama_cpp_dir: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(help="Take the converter from this llama.cpp folder, not the sdist."),
    ] = None,
    force: Annotated[bool, typer.Option(help="Replace a non-empty output folder.")] = False,
    verbose: VerboseOption = False,
) -> None:
    """Convert a Qwen2.5-VL checkpoint to GGUF + mmproj, quantize, write manifest.json."""

    def action() -> None:
        from export.gguf import OUTTYPES, GgufRequest
        from export.gguf import export_gguf as run_export

        _setup(None, verbose)
        if outtype not in OUTTYPES:
            raise BadInput(f"--outtype must be one of {', '.join(OUTTYPES)}")
        request = GgufRequest(
            hf_dir=hf_dir,
            out_dir=out,
            outtype=outtype,
            quants=tuple(q.strip() for q in quant.split(",") if q.strip()),
            pre_tokenizer=pre_tokenizer,
            llama_cpp_dir=llama_cpp_dir,
            force=force,
        )
        with errors.status("exporting") as status:
            manifest = run_export(request, stage=lambda name: status.update(name))
        for entry in manifest["files"]:
            console.print(f"{entry['name']:<24} {entry['bytes']:>12,} B  {entry['sha256'][:16]}")
        console.print(f"manifest: {out / 'manifest.json'}", highlight=False)

    _guarded(action)


@export_app.command("verify")
def export_verify(
    gguf_dir: Annotated[Path, typer.Argument(help="A folder written by `export gguf`.")],
    hf: Annotated[Path, typer.Option(help="The Hugging Face checkpoint it came from.")],
) -> None:
    """Compare the GGUF files with the checkpoint; exit 1 when a threshold fails."""
    outcome: dict = {}

    def action() -> None:
        from export.verify import verify

        _setup(None, False)
        with errors.status("comparing logits and image embeddings"):
            outcome.update(verify(gguf_dir, hf))
        for result in outcome["results"]:
            mark = "[green]pass[/]" if result["passed"] else "[red]FAIL[/]"
            console.print(f"{mark} {result['name']}: {_numbers(result)} ({result['rule']})")
        console.print(f"verify: {gguf_dir / 'verify.json'}", highlight=False)

    _guarded(action)
    if not outcome.get("passed"):
        raise typer.Exit(1)


# --- tool models: `export tiny-locate`, `export tensorrt`, `export onnx sam2` ---------------


@export_app.command("tiny-locate")
def export_tiny_locate(
    out: Annotated[Path, typer.Argument(help="Folder for the model (manifest.json, ONNX, .npy).")],
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same files.")] = 0,
    size: Annotated[int, typer.Option(help="Image side the graph is fed, in pixels.")] = 64,
    force: Annotated[bool, typer.Option(help="Replace a non-empty output folder.")] = False,
) -> None:
    """A tiny random-weight text-prompted locate model with the BiomedParse-class contract."""

    def action() -> None:
        from export.locate_onnx import build_tiny_locate

        _setup(None, False)
        manifest = build_tiny_locate(out, seed, size=size, force=force)
        console.print(f"prompts: {', '.join(manifest['prompts'])}", highlight=False)
        console.print(f"manifest: {out / 'manifest.json'}", highlight=False)

    _guarded(action)


@export_app.command("tensorrt")
def export_tensorrt(
    onnx_file: Annotated[
        Path, typer.Argument(metavar="ONNX", help="An ONNX model, or a locate model folder.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="The engine (plan) file to write.")],
    fp16: Annotated[bool, typer.Option(help="Allow FP16 kernels.")] = False,
    int8_calib: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(help="Calibrate INT8 on the .npz feeds in this folder (arrays by input)."),
    ] = None,
    workspace_mib: Annotated[int, typer.Option(help="TensorRT workspace limit, MiB.")] = 4096,
    timing_cache: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(help="Timing cache file; default: the one ONNX Runtime's provider uses."),
    ] = None,
    max_batch: Annotated[int, typer.Option(help="Largest batch for a dynamic first axis.")] = 1,
    shape: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Option(help="NAME=MIN:OPT:MAX (e.g. image=1x3x64x64:1x3x512x512:1x3x1024x1024)."),
    ] = None,
    verbose: VerboseOption = False,
) -> None:
    """Build a TensorRT engine on this machine's NVIDIA GPU (profiles from the graph's inputs)."""

    def action() -> None:
        from export.tensorrt import BuildOptions, build_engine, parse_shape

        _setup(None, verbose)
        options = BuildOptions(
            fp16=fp16,
            int8_calib=int8_calib,
            workspace_mib=workspace_mib,
            timing_cache=timing_cache,
            max_batch=max_batch,
            shapes=dict(parse_shape(text) for text in shape or ()),
        )
        with errors.status("building the TensorRT engine"):
            record = build_engine(onnx_file, out, options)
        console.print(
            f"engine: {out} ({record['plan']['bytes']:,} B, sm {record['compute_capability']}, "
            f"flags {', '.join(record['flags']) or 'fp32'})",
            highlight=False,
        )

    _guarded(action)


onnx_app = typer.Typer(no_args_is_help=True, help="Export tool models to ONNX (+ int8).")
export_app.add_typer(onnx_app, name="onnx")


@onnx_app.command("sam2")
def export_onnx_sam2(
    checkpoint: Annotated[Path, typer.Option(help="SAM2 checkpoint (.pt with a 'model' dict).")],
    config: Annotated[str, typer.Option(help="sam2 config name, e.g. sam2.1_hiera_t.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the ONNX files.")],
    int8: Annotated[
        bool, typer.Option(help="Also an int8 encoder (dynamic quantization).")
    ] = False,
    override: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Option(help="Hydra override of the config, e.g. ++model.image_size=512."),
    ] = None,
    force: Annotated[bool, typer.Option(help="Replace a non-empty output folder.")] = False,
    verbose: VerboseOption = False,
) -> None:
    """SAM2 → image encoder + box decoder ONNX (+ int8); exit 1 if they disagree with PyTorch."""
    outcome: dict = {}

    def action() -> None:
        from export.sam_onnx import Sam2Request, export_sam2

        _setup(None, verbose)
        request = Sam2Request(config, checkpoint, out, int8, tuple(override or ()), force)
        with errors.status("exporting") as status:
            done = export_sam2(request, stage=lambda name: status.update(name))
        for entry in done.manifest["files"]:
            console.print(f"{entry['name']:<20} {entry['bytes']:>12,} B  {entry['sha256'][:16]}")
        outcome.update(done.verify)
        for result in done.verify["results"]:
            mark = "[green]pass[/]" if result["passed"] else "[red]FAIL[/]"
            console.print(
                f"{mark} {result['name']}: embedding max |diff| {result['embedding_max_abs_diff']}"
                f" (of {result['embedding_max_abs']}), logits max |diff| "
                f"{result['logits_max_abs_diff']}, mask IoU {result['mask_iou']}"
            )
        console.print(f"manifest: {out / 'manifest.json'}", highlight=False)
        console.print(f"verify: {out / 'verify.json'}", highlight=False)

    _guarded(action)
    if not outcome.get("passed"):
        raise typer.Exit(1)


def _numbers(result: dict) -> str:
    return ", ".join(f"{k} {result[k]}" for k in ("cosine", "top1", "max_abs") if k in result)


# --- export onnx-llm: decoder + vision encoder for the onnx_trt policy ------------------------


@export_app.command("onnx-llm")
def export_onnx_llm(
    hf_dir: Annotated[Path, typer.Argument(help="Hugging Face Qwen2.5-VL checkpoint folder.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the ONNX files.")],
    force: Annotated[bool, typer.Option(help="Replace a non-empty output folder.")] = False,
    verbose: VerboseOption = False,
) -> None:
    """Export the text decoder (KV cache in/out) and the vision encoder to ONNX, then verify them
    against the checkpoint (logits with and without the cache, image embeddings, an image prompt);
    exit 1 when a threshold fails."""
    outcome: dict = {}

    def action() -> None:
        from export.onnx_llm import OnnxLlmRequest
        from export.onnx_llm import export_onnx_llm as run_export
        from export.verify_onnx_llm import verify_onnx_llm

        _setup(None, verbose)
        with errors.status("exporting") as status:
            manifest = run_export(
                OnnxLlmRequest(hf_dir, out, force), stage=lambda name: status.update(name)
            )
            status.update("comparing logits with transformers")
            outcome.update(verify_onnx_llm(out, hf_dir))
        for entry in manifest["files"]:
            console.print(f"{entry['name']:<34} {entry['bytes']:>12,} B  {entry['sha256'][:16]}")
        for result in outcome["results"]:
            mark = "[green]pass[/]" if result["passed"] else "[red]FAIL[/]"
            console.print(f"{mark} {result['name']}: {_numbers(result)} ({result['rule']})")
        console.print(f"manifest: {out / 'manifest.json'}", highlight=False)

    _guarded(action)
    if not outcome.get("passed"):
        raise typer.Exit(1)


@app.callback(invoke_without_command=True)
def _version(
    version: Annotated[bool, typer.Option("--version", help="Print the version.")] = False,
) -> None:
    if version:
        console.print(f"edge-agent {__version__}")
        raise typer.Exit(0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
