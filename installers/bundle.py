"""`edge-agent bundle`: everything a workstation without network needs, in one tar file.

Wheels for every dependency (built once here), model folders with their manifests, a config
template, install.sh / uninstall.sh, a systemd unit, a bill of materials and SHA256SUMS
(optionally signed with Ed25519)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from edge_agent import __version__
from imaging.checksum import sha256_file
from imaging.errors import BadInput

log = logging.getLogger(__name__)

PROJECT = Path(__file__).resolve().parents[1]
TEMPLATES = ("install.sh", "uninstall.sh", "edge-agent.service")


class BundleError(BadInput):
    """The bundle cannot be built as asked."""


@dataclass(frozen=True)
class BundleRequest:
    out: Path
    models: tuple[Path, ...] = ()
    extras: str = "llm"  # what the workstation runs; export tools stay on the build machine
    python: str = ""  # target Python, e.g. "3.11", when it differs from this one
    platform: str = ""  # target platform tag, e.g. "manylinux_2_28_x86_64"
    gpu: str = ""  # "cuda12": a llama-cpp-python wheel built with CUDA
    sign_key: Path | None = None
    reference_agent: bool = True  # the trained tiny agent `doctor` reads known answers with


def build_bundle(request: BundleRequest) -> Path:
    for model in request.models:
        if not (model / "manifest.json").is_file():
            raise BundleError(f"{model} has no manifest.json: export it with edge-agent first")
    if request.sign_key and not request.sign_key.is_file():
        raise BundleError(f"signing key {request.sign_key} does not exist")
    with tempfile.TemporaryDirectory(prefix="edge-agent-bundle-") as scratch:
        root = Path(scratch) / f"edge-agent-{__version__}"
        (root / "wheels").mkdir(parents=True)
        _wheels(request, root / "wheels")
        for model in request.models:
            shutil.copytree(model, root / "models" / model.name)
        if request.reference_agent:
            _reference_agent(Path(scratch) / "reference", root / "models")
        (root / "config").mkdir()
        shutil.copy(PROJECT / "edge-agent.example.toml", root / "config" / "edge-agent.toml")
        for name in TEMPLATES:
            (root / name).write_text(_template(name))
        (root / "install.sh").chmod(0o755)
        (root / "uninstall.sh").chmod(0o755)
        (root / "VERSION").write_text(__version__)
        (root / "EXTRAS").write_text(request.extras)
        (root / "sbom.json").write_text(json.dumps(_sbom(root), indent=2) + "\n")
        _checksums(root)
        if request.sign_key:
            _sign(root, request.sign_key)
        request.out.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(request.out, "w") as tar:
            tar.add(root, arcname=root.name)
    return request.out


def _reference_agent(scratch: Path, models: Path) -> None:
    """The committed reference checkpoint exported to GGUF (f16, q8_0 + mmproj) by the converter
    of the llama-cpp-python version this bundle installs."""
    from export.gguf import GgufRequest, export_gguf
    from export.reference_agent import CHECKPOINT, FOLDER, PRE_TOKENIZER

    export_gguf(GgufRequest(CHECKPOINT, scratch, quants=("q8_0",), pre_tokenizer=PRE_TOKENIZER))
    shutil.copytree(scratch, models / FOLDER)


def _template(name: str) -> str:
    return resources.files("installers").joinpath("templates", name).read_text()


def _wheels(request: BundleRequest, wheelhouse: Path) -> None:
    """Wheels for the project and its dependencies; pip's cache keeps builds (llama-cpp-python)."""
    target = f"{PROJECT}" + (f"[{request.extras}]" if request.extras else "")
    env = dict(os.environ)
    if request.gpu:
        if request.gpu != "cuda12":
            raise BundleError(f"--gpu {request.gpu!r}: only cuda12 is known")
        if shutil.which("nvcc") is None:
            raise BundleError("--gpu cuda12 needs the CUDA toolkit (nvcc) on the build machine")
        env["CMAKE_ARGS"] = "-DGGML_CUDA=on"
    if request.python or request.platform:
        # Another target: only binary wheels can be taken; nothing is compiled for it here.
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--only-binary",
            ":all:",
            "--dest",
            str(wheelhouse),
        ]
        command += ["--python-version", request.python] if request.python else []
        command += ["--platform", request.platform] if request.platform else []
        _run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--no-deps",
                "--wheel-dir",
                str(wheelhouse),
                str(PROJECT),
            ],
            env,
        )
        _run([*command, target], env)
    else:
        _run([sys.executable, "-m", "pip", "wheel", "--wheel-dir", str(wheelhouse), target], env)


def _run(command: list[str], env: dict) -> None:
    log.info("running %s", " ".join(command))
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-10:])
        raise BundleError(f"{' '.join(command[2:4])} failed:\n{tail}")


def _sbom(root: Path) -> dict:
    """Name, version and hash of every wheel and model file."""
    wheels = []
    for wheel in sorted((root / "wheels").glob("*.whl")):
        name, version = wheel.name.split("-")[:2]
        wheels.append(
            {"name": name, "version": version, "file": wheel.name, "sha256": sha256_file(wheel)}
        )
    models = (
        [
            {"file": str(path.relative_to(root)), "sha256": sha256_file(path)}
            for path in sorted((root / "models").rglob("*"))
            if path.is_file()
        ]
        if (root / "models").is_dir()
        else []
    )
    return {"edge_agent": __version__, "wheels": wheels, "models": models}


def _checksums(root: Path) -> None:
    lines = [
        f"{sha256_file(path)}  {path.relative_to(root)}"
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.name != "SHA256SUMS"
    ]
    (root / "SHA256SUMS").write_text("\n".join(lines) + "\n")


def _sign(root: Path, key: Path) -> None:
    done = subprocess.run(
        [
            "openssl",
            "pkeyutl",
            "-sign",
            "-inkey",
            str(key),
            "-rawin",
            "-in",
            str(root / "SHA256SUMS"),
            "-out",
            str(root / "SHA256SUMS.sig"),
        ],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise BundleError(
            f"signing SHA256SUMS failed (an Ed25519 key is expected): {done.stderr.strip()[-300:]}"
        )
