"""`bundle`: the air-gapped installer, built on a connected machine from a source checkout."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from edge_agent.cli.terminal import VerboseOption, console, errors, exit_code, setup


@exit_code
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
    from installers.bundle import BundleRequest, build_bundle

    setup(None, verbose)
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
