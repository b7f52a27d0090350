"""`edge-agent doctor`: what IT checks on a workstation, green or red, plus what support asks for.

Red means the workstation cannot do its job as configured; the command then exits non-zero."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from edge_agent import __version__
from edge_agent.cli.config import load_config
from imaging.errors import BadInput, ConfigError, ModelLoadError
from imaging.model_folder import MANIFEST, ModelFolder

PACKAGES = (
    "pydicom",
    "numpy",
    "opencv-python-headless",
    "pylibjpeg",
    "python-gdcm",
    "highdicom",
    "pynetdicom",
    "llama-cpp-python",
    "onnxruntime",
    "onnxruntime-gpu",
    "tensorrt",
)
DECODERS = (
    ("JPEG baseline", "1.2.840.10008.1.2.4.50"),
    ("JPEG lossless", "1.2.840.10008.1.2.4.70"),
    ("JPEG 2000", "1.2.840.10008.1.2.4.90"),
    ("JPEG-LS", "1.2.840.10008.1.2.4.80"),
    ("RLE", "1.2.840.10008.1.2.5"),
    ("deflate", "1.2.840.10008.1.2.1.99"),
)


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool | None  # None: information only
    detail: str


def checks(
    config_path: Path | None, out_dir: Path, models: tuple[Path, ...] = ()
) -> Iterator[Check]:
    yield Check("edge-agent", None, __version__)
    yield Check("python", None, f"{sys.version.split()[0]} ({sys.executable})")
    yield Check(
        "platform", None, f"{platform.platform()}; {os.cpu_count()} CPU(s); {_cpu_features()}"
    )
    for package in PACKAGES:
        yield Check(package, None, _version(package))
    yield _decoders()
    yield Check("onnxruntime providers", None, _providers())
    yield Check("NVIDIA GPU", None, _gpu())
    config = yield from _config(config_path)
    if config is None:
        return
    yield _spool(config, out_dir)
    yield _index(config, out_dir)
    yield _port(config)
    folders = _model_folders(models)
    for folder in folders:
        yield _model(folder)
    yield _tool_models(config)
    yield _smoke_read(config)
    if folders:
        from export.reference_agent import FOLDER

        for folder in folders:
            if folder.name == FOLDER:
                yield _known_answers(config, folder)


def _config(config_path: Path | None):
    try:
        config = load_config(config_path)
    except BadInput as exc:
        yield Check("config", False, str(exc))
        return None
    yield Check("config", True, str(config_path) if config_path else "defaults (no file)")
    return config


def _spool(config, out_dir: Path) -> Check:
    spool = Path(config.gateway.spool_dir)
    spool = spool if spool.is_absolute() else out_dir / spool
    # A check leaves nothing behind: a spool not made yet is judged by the folder that will hold
    # it (the gateway makes it on start).
    existing = next(p for p in (spool, *spool.parents) if p.exists())
    try:
        with tempfile.NamedTemporaryFile(dir=existing):
            pass
    except OSError as exc:
        return Check("spool writable", False, f"{existing}: {exc.strerror}")
    free = shutil.disk_usage(existing).free
    ok = free >= config.gateway.min_free_mb * 2**20
    return Check(
        "spool and free disk",
        ok,
        f"{spool}: {free / 2**30:.1f} GiB free (needs {config.gateway.min_free_mb} MiB)",
    )


def _index(config, out_dir: Path) -> Check:
    """The spool index: SQLite in the spool, or the shared PostgreSQL, which must answer."""
    from dicom_gateway.engines import describe_index

    spool = Path(config.gateway.spool_dir)
    try:
        detail = describe_index(config.gateway.database, out_dir / spool, timeout_s=10.0)
    except ConfigError as exc:
        return Check("index database", False, str(exc))
    return Check("index database", True, detail)


def _port(config) -> Check:
    address = (config.gateway.bind, config.gateway.port)
    with socket.socket() as probe:
        try:
            probe.bind(address)
        except OSError as exc:
            return Check(
                "DICOM port",
                False,
                f"{address[0]}:{address[1]} in use ({exc.strerror})"
                " - is the service already running?",
            )
    return Check("DICOM port", True, f"{address[0]}:{address[1]} free")


def _model_folders(models: tuple[Path, ...]) -> list[Path]:
    """Each path is a model folder (with manifest.json) or a folder of them."""
    found = []
    for path in models:
        inside = sorted(p.parent for p in path.glob(f"*/{MANIFEST}")) if path.is_dir() else []
        # A path that is no model folder (and holds none) is checked, so it shows red.
        found += inside if inside and not (path / MANIFEST).is_file() else [path]
    return found


def _model(path: Path) -> Check:
    """The folder's manifest parses and every file it lists matches it (the runtime's check)."""
    try:
        folder = ModelFolder.read(path)
    except ModelLoadError as exc:
        return Check(f"model {path.name}", False, str(exc))
    problems = folder.problems()
    if problems:
        return Check(f"model {path.name}", False, "; ".join(problems))
    manifest = folder.manifest
    if manifest.profile:
        from edge_agent.formats import ProfileError, load_profile

        try:  # every read with this folder loads it, and a read is where it must not fail
            load_profile(manifest.profile)
        except ProfileError as exc:
            return Check(f"model {path.name}", False, f"its manifest's prompt profile: {exc}")
    profile = f", profile {manifest.profile}" if manifest.profile else ""
    detail = f"{manifest.format}{profile}: {len(manifest.files)} file(s) match the manifest"
    return Check(f"model {path.name}", True, detail)


def _tool_models(config) -> Check:
    """The tools' configured models open (files, hashes, contract, one blank run) as at start-up."""
    from tools.toolbox import default_toolbox

    models = (("segment", config.tools.segment.model), ("locate", config.tools.locate.model))
    configured = [f"{tool} {path}" for tool, path in models if path]
    if not configured:
        return Check("tool models", None, "none configured: the tools run weight-free")
    try:
        default_toolbox(config.tools).close()
    except BadInput as exc:
        return Check("tool models", False, str(exc))
    return Check("tool models", True, f"open: {', '.join(configured)}")


def _smoke_read(config) -> Check:
    """A protocol read of the built-in sample: the whole chain without a model or network."""
    from dataclasses import replace

    from edge_agent.config import PolicySettings, ReportSettings
    from edge_agent.read import read_study
    from edge_agent.sample import write_sample_study

    smoke = replace(config, policy=PolicySettings(), report=ReportSettings(dicom=True))
    with tempfile.TemporaryDirectory(prefix="edge-agent-doctor-") as scratch:
        try:
            study = write_sample_study(Path(scratch) / "study")
            result = read_study(study, Path(scratch) / "out", smoke)
        except Exception as exc:  # any failure here is exactly what doctor must report
            return Check("smoke read", False, f"{type(exc).__name__}: {exc}")
    findings = len(result.report["findings"])
    return Check(
        "smoke read",
        findings > 0,
        f"protocol read of the sample: {findings} finding(s), {len(result.dicom)} DICOM object(s)",
    )


def _known_answers(config, folder: Path) -> Check:
    """The reference agent reads built-in cases with this workstation's llama.cpp build and
    tools (its hardware settings included); a broken build, kernel or file gets one wrong. The
    site's other settings ([read] modalities, [budget], [tools]) are for its studies, not for
    these cases, so the cases are read with the defaults."""
    from edge_agent.config import Config
    from edge_agent.policies import make_policy
    from export.look_check import read_cases, reference_policy
    from export.reference_agent import KNOWN_ANSWER, held_out

    name = "known-answer read"
    if importlib.util.find_spec("llama_cpp") is None:
        return Check(name, None, "llama-cpp-python not installed: no model runs here")
    text = next((f for f in ("model-q8_0.gguf", "model-f16.gguf") if (folder / f).is_file()), "")
    if not text:
        return Check(name, False, f"{folder} holds no model-q8_0.gguf or model-f16.gguf")
    ours = config.policy.llama_cpp
    cases = held_out(KNOWN_ANSWER)
    try:  # a folder without its manifest (no mmproj named) is a red line too
        settings = reference_policy(
            folder,
            text,
            n_gpu_layers=ours.n_gpu_layers,
            flash_attn=ours.flash_attn,
            n_threads=ours.n_threads,
        )
        policy = make_policy(settings)
        try:
            summary = read_cases(cases, Config(policy=settings), policy)
        finally:
            policy.close()
    except Exception as exc:  # any failure here is exactly what doctor must report
        return Check(name, False, f"{type(exc).__name__}: {exc}")
    ok = summary.accuracy == 1.0 and summary.zoom_hits == 1.0
    return Check(name, ok, f"reference agent ({text}, llama.cpp): {summary.line()}")


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _cpu_features() -> str:
    try:
        flags = next(
            line
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("flags")
        ).split()
    except (OSError, StopIteration):
        return "CPU features unknown"
    return " ".join(f for f in ("avx", "avx2", "fma", "f16c", "avx512f") if f in flags)


def _decoders() -> Check:
    from pydicom.pixels.decoders import base

    missing, present = [], []
    for name, syntax in DECODERS:
        decoder = base.get_decoder(syntax)
        (present if decoder and decoder.is_available else missing).append(name)
    detail = ", ".join(present) + (f"; missing: {', '.join(missing)}" if missing else "")
    return Check("pixel decoders", not missing, detail)


def _providers() -> str:
    try:
        import onnxruntime
    except ImportError:
        return "onnxruntime not installed"
    return ", ".join(onnxruntime.get_available_providers())


def _gpu() -> str:
    if shutil.which("nvidia-smi") is None:
        return "none found (nvidia-smi absent); CPU back ends only"
    return "nvidia-smi present"
