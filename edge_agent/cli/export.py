"""`export ...`: turn checkpoints into the files a workstation runs (GGUF, ONNX, TensorRT), each
checked against its source; a failed threshold exits 1."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.text import Text

from edge_agent.cli.terminal import VerboseOption, console, errors, exit_code, setup, styled
from imaging.errors import BadInput

export_app = typer.Typer(no_args_is_help=True, help="Turn models into files a workstation runs.")


@export_app.command("tiny-vlm")
@exit_code
def export_tiny_vlm(
    out: Annotated[Path, typer.Argument(help="Folder for the Hugging Face checkpoint.")],
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same files.")] = 0,
) -> None:
    """A tiny random-weight Qwen2.5-VL (HF format) with a locally trained tokenizer, for tests."""
    from export.tiny_vlm import build_tiny_vlm

    setup(None, False)
    console.print(f"tiny Qwen2.5-VL: {build_tiny_vlm(out, seed)}", highlight=False)


@export_app.command("train-tiny-agent")
@exit_code
def export_train_tiny_agent(
    out: Annotated[Path, typer.Argument(help="Folder for hf/, gguf/ and onnx/.")],
    minutes: Annotated[
        Optional[float],  # noqa: UP045
        typer.Option(
            help="Time box that may cut the stages (the result is then not the reference)."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Training seed; the same seed, the same steps.")] = 0,
    threads: Annotated[int, typer.Option(help="PyTorch CPU threads.")] = 2,
    check: Annotated[int, typer.Option(help="Held-out cases read with the q8_0 GGUF after.")] = 20,
    force: Annotated[bool, typer.Option(help="Replace non-empty OUT/hf, gguf, onnx.")] = False,
) -> int:
    """Train the tiny reference agent on the second-look task (CPU), every step of its schedule,
    export GGUF f16/q8_0/q4_0 + mmproj and ONNX, and read held-out cases with it; exit 1 when
    one is answered wrongly."""
    from export.reference_agent import build_reference
    from export.train_agent import BUDGET_MINUTES, Schedule

    setup(None, False)
    if (minutes is not None and minutes <= 0) or threads < 1 or check < 0:
        raise BadInput("--minutes must be positive, --threads at least 1, --check not negative")
    with errors.status("training (see OUT/hf/learning-curve.jsonl)"):
        built = build_reference(out, Schedule(minutes=minutes), seed, threads, force)
    trained = built.trained
    console.print(
        f"trained in {trained.wall_s / 60:.1f} min on {trained.threads} thread(s) "
        f"(budget {BUDGET_MINUTES:g} min)",
        highlight=False,
    )
    for cut in trained.cut:
        errors.print(
            f"WARNING: {cut.line()} (--minutes {minutes:g}): these weights are NOT the "
            "reference agent's",
            highlight=False,
        )
    console.print(f"checkpoint: {built.hf}\nGGUF: {built.gguf}\nONNX: {built.onnx}")
    if not check:
        return 0
    summary = _read_held_out(built.gguf, check)
    console.print(f"held-out, q8_0: {summary.line()}", highlight=False)
    return 0 if summary.accuracy == 1.0 else 1


def _read_held_out(gguf: Path, count: int):
    from edge_agent.config import Config
    from edge_agent.policies import make_policy
    from export.look_check import read_cases, reference_policy
    from export.reference_agent import held_out

    settings = reference_policy(gguf, "model-q8_0.gguf")
    policy = make_policy(settings)
    try:
        return read_cases(held_out(count), Config(policy=settings), policy)
    finally:
        policy.close()


@export_app.command("gguf")
@exit_code
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
    from export.gguf import OUTTYPES, GgufRequest
    from export.gguf import export_gguf as run_export

    setup(None, verbose)
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
        manifest = run_export(request, stage=lambda name: status.update(Text(name)))
    _print_files(manifest, 24)
    console.print(f"manifest: {out / 'manifest.json'}", highlight=False)


@export_app.command("verify")
@exit_code
def export_verify(
    gguf_dir: Annotated[Path, typer.Argument(help="A folder written by `export gguf`.")],
    hf: Annotated[Path, typer.Option(help="The Hugging Face checkpoint it came from.")],
) -> int:
    """Compare the GGUF files with the checkpoint; exit 1 when a threshold fails."""
    from export.verify import verify

    setup(None, False)
    with errors.status("comparing logits and image embeddings"):
        outcome = verify(gguf_dir, hf)
    _print_checks(outcome)
    console.print(f"verify: {gguf_dir / 'verify.json'}", highlight=False)
    return _passed(outcome)


# --- tool models: `export tiny-locate`, `export tensorrt`, `export onnx sam2` ---------------


@export_app.command("tiny-locate")
@exit_code
def export_tiny_locate(
    out: Annotated[Path, typer.Argument(help="Folder for the model (manifest.json, ONNX, .npy).")],
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same files.")] = 0,
    size: Annotated[int, typer.Option(help="Image side the graph is fed, in pixels.")] = 64,
    force: Annotated[bool, typer.Option(help="Replace a non-empty output folder.")] = False,
) -> None:
    """A tiny random-weight text-prompted locate model with the BiomedParse-class contract."""
    from export.locate_onnx import build_tiny_locate

    setup(None, False)
    manifest = build_tiny_locate(out, seed, size=size, force=force)
    console.print(f"prompts: {', '.join(manifest['prompts'])}", highlight=False)
    console.print(f"manifest: {out / 'manifest.json'}", highlight=False)


@export_app.command("tensorrt")
@exit_code
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
    from export.tensorrt import BuildOptions, build_engine, parse_shape

    setup(None, verbose)
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


onnx_app = typer.Typer(no_args_is_help=True, help="Export tool models to ONNX (+ int8).")
export_app.add_typer(onnx_app, name="onnx")


@onnx_app.command("sam2")
@exit_code
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
) -> int:
    """SAM2 → image encoder + box decoder ONNX (+ int8); exit 1 if they disagree with PyTorch."""
    from export.sam_onnx import Sam2Request, export_sam2

    setup(None, verbose)
    request = Sam2Request(config, checkpoint, out, int8, tuple(override or ()), force)
    with errors.status("exporting") as status:
        done = export_sam2(request, stage=lambda name: status.update(Text(name)))
    _print_files(done.manifest, 20)
    for result in done.verify["results"]:
        console.print(
            _mark(result) + f" {result['name']}: embedding max |diff| "
            f"{result['embedding_max_abs_diff']} (of {result['embedding_max_abs']}), logits max "
            f"|diff| {result['logits_max_abs_diff']}, mask IoU {result['mask_iou']}"
        )
    console.print(f"manifest: {out / 'manifest.json'}", highlight=False)
    console.print(f"verify: {out / 'verify.json'}", highlight=False)
    return _passed(done.verify)


# --- export onnx-llm: decoder + vision encoder for the onnx_trt policy ------------------------


@export_app.command("onnx-llm")
@exit_code
def export_onnx_llm(
    hf_dir: Annotated[Path, typer.Argument(help="Hugging Face Qwen2.5-VL checkpoint folder.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the ONNX files.")],
    force: Annotated[bool, typer.Option(help="Replace a non-empty output folder.")] = False,
    verbose: VerboseOption = False,
) -> int:
    """Export the text decoder (KV cache in/out) and the vision encoder to ONNX, then verify them
    against the checkpoint (logits with and without the cache, image embeddings, an image prompt);
    exit 1 when a threshold fails."""
    from export.onnx_llm import OnnxLlmRequest
    from export.onnx_llm import export_onnx_llm as run_export
    from export.verify_onnx_llm import verify_onnx_llm

    setup(None, verbose)
    with errors.status("exporting") as status:
        manifest = run_export(
            OnnxLlmRequest(hf_dir, out, force), stage=lambda name: status.update(Text(name))
        )
        status.update("comparing logits with transformers")
        outcome = verify_onnx_llm(out, hf_dir)
    _print_files(manifest, 34)
    _print_checks(outcome)
    console.print(f"manifest: {out / 'manifest.json'}", highlight=False)
    return _passed(outcome)


def _print_files(manifest: dict, width: int) -> None:
    for entry in manifest["files"]:
        console.print(f"{entry['name']:<{width}} {entry['bytes']:>12,} B  {entry['sha256'][:16]}")


def _print_checks(outcome: dict) -> None:
    for result in outcome["results"]:
        numbers = ", ".join(
            f"{k} {result[k]}" for k in ("cosine", "top1", "max_abs") if k in result
        )
        console.print(_mark(result) + f" {result['name']}: {numbers} ({result['rule']})")


def _mark(result: dict) -> Text:
    return styled("pass", "green") if result["passed"] else styled("FAIL", "red")


def _passed(outcome: dict) -> int:
    """Exit 1 when any threshold failed: a script or CI must not ship the files."""
    return 0 if outcome.get("passed") else 1
