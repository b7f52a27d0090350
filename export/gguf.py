"""Hugging Face Qwen2.5-VL checkpoint -> GGUF text model (+ quantized variants) + mmproj.

The converter is llama.cpp's `convert_hf_to_gguf.py` as vendored in the source distribution of the
llama-cpp-python version installed here, so the files always match the runtime that loads them."""

from __future__ import annotations

import ctypes
import importlib.metadata
import json
import logging
import os
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edge_agent.gguf_model import FORMAT
from export.convert_runner import DECIDER, known_pre_tokenizers
from imaging.errors import BadInput
from imaging.model_folder import ModelFolder, checkpoint_record

log = logging.getLogger(__name__)

SUPPORTED = ("Qwen2_5_VLForConditionalGeneration", "Qwen2VLForConditionalGeneration")
OUTTYPES = ("f16", "bf16", "f32")
QUANTS = ("q8_0", "q6_k", "q5_k_m", "q4_k_m", "q4_0")
CONVERTER_PARTS = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/")
UNKNOWN_PRE_TOKENIZER = "BPE pre-tokenizer was not recognized"
# The prompt profile the policies speak to a Qwen2.5-VL export unless told otherwise.
DEFAULT_PROFILE = "ophiuchus-v1"


class ExportError(BadInput):
    """The export cannot go on; the message says what to fix."""


@dataclass(frozen=True)
class GgufRequest:
    hf_dir: Path
    out_dir: Path
    outtype: str = "f16"
    quants: tuple[str, ...] = ()
    pre_tokenizer: str = ""  # explicit override for tokenizers the converter does not know
    llama_cpp_dir: Path | None = None  # a llama.cpp checkout to take the converter from
    force: bool = False
    mmproj_outtype: str = "f16"
    profile: str = DEFAULT_PROFILE  # the prompt profile the manifest names


Stage = Callable[[str], None]


def export_gguf(request: GgufRequest, stage: Stage = lambda name: None) -> dict:
    """Convert, quantize, hash; returns the manifest (also written as manifest.json)."""
    config = check_checkpoint(request.hf_dir)
    converter = converter_dir(request.llama_cpp_dir)
    if request.pre_tokenizer:
        check_pre_tokenizer(converter, request.pre_tokenizer)
    prepare_out_dir(request.out_dir, request.force)  # after every check: bad input loses nothing
    try:
        timings: dict[str, float] = {}
        text = request.out_dir / f"model-{request.outtype}.gguf"
        mmproj = request.out_dir / f"mmproj-{request.mmproj_outtype}.gguf"
        stage(f"converting the text model to {request.outtype}")
        timings["convert_text_s"] = timed(lambda: _convert(converter, request, text, False))
        stage(f"converting the vision tower to {request.mmproj_outtype} (mmproj)")
        timings["convert_mmproj_s"] = timed(lambda: _convert(converter, request, mmproj, True))
        files = [text, mmproj]
        for quant in request.quants:
            stage(f"quantizing to {quant}")
            target = request.out_dir / f"model-{quant}.gguf"
            timings[f"quantize_{quant}_s"] = timed(lambda q=quant, t=target: quantize(text, t, q))
            files.append(target)
        stage("hashing")
        folder = _write_manifest(request, config, converter, files, timings)
    except BaseException:
        shutil.rmtree(request.out_dir, ignore_errors=True)  # no partial export is left behind
        raise
    return folder.manifest.to_plain()


def check_checkpoint(hf_dir: Path) -> dict:
    """Config readable, architecture supported, every safetensors file complete."""
    config_path = hf_dir / "config.json"
    if not config_path.is_file():
        raise ExportError(f"{hf_dir} has no config.json: not a Hugging Face checkpoint")
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as exc:
        raise ExportError(f"{config_path} is not valid JSON: {exc}") from None
    architectures = config.get("architectures") or []
    if not set(architectures) & set(SUPPORTED):
        raise ExportError(
            f"architecture {architectures or 'unknown'} is not supported; supported: "
            f"{', '.join(SUPPORTED)}"
        )
    weights = sorted(hf_dir.glob("*.safetensors"))
    if not weights:
        raise ExportError(f"{hf_dir} holds no *.safetensors weights")
    for path in weights:
        _check_safetensors(path)
    return config


def _check_safetensors(path: Path) -> None:
    """The header parses and every tensor's bytes lie inside the file (catches truncation)."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        raw = handle.read(8)
        if len(raw) < 8:
            raise ExportError(f"{path.name} is truncated: {size} bytes, no safetensors header")
        (header_size,) = struct.unpack("<Q", raw)
        if header_size > size - 8:
            raise ExportError(f"{path.name} is truncated or corrupt: header runs past the end")
        try:
            header = json.loads(handle.read(header_size))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ExportError(f"{path.name} has a corrupt safetensors header") from None
    data_end = max(
        (t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0
    )
    if 8 + header_size + data_end > size:
        raise ExportError(
            f"{path.name} is truncated: tensors need {8 + header_size + data_end} bytes, "
            f"the file has {size}"
        )


def check_pre_tokenizer(converter: Path, name: str) -> None:
    """An override must be a name this converter (and so the runtime of the same llama.cpp)
    knows; any other writes a model llama.cpp refuses to load."""
    known = known_pre_tokenizers(converter)
    if not known:
        where = "{}: {}.{}".format(*DECIDER)
        raise ExportError(
            f"cannot read which pre-tokenizers the converter in {converter} knows ({where} not "
            "found); export without --pre-tokenizer, or with the installed llama-cpp-python's "
            "converter (no --llama-cpp-dir)"
        )
    if name not in known:
        raise ExportError(
            f"--pre-tokenizer {name!r} is not one llama.cpp's converter knows; known: "
            + ", ".join(known)
        )


def prepare_out_dir(out_dir: Path, force: bool) -> None:
    if out_dir.exists() and any(out_dir.iterdir()):
        if not force:
            raise ExportError(f"{out_dir} exists and is not empty; pass --force to replace it")
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)


def runtime_version() -> str:
    try:
        return importlib.metadata.version("llama_cpp_python")
    except importlib.metadata.PackageNotFoundError:
        raise ExportError(
            "llama-cpp-python is not installed: pip install 'edge-agent[llm]'"
        ) from None


def converter_dir(llama_cpp_dir: Path | None = None) -> Path:
    """The converter matching the installed runtime, unpacked once into a cache folder."""
    if llama_cpp_dir is not None:
        if not (llama_cpp_dir / "convert_hf_to_gguf.py").is_file():
            raise ExportError(f"{llama_cpp_dir} has no convert_hf_to_gguf.py")
        return llama_cpp_dir
    version = runtime_version()
    cache = _cache_root() / f"llama-cpp-python-{version}" / "llama.cpp"
    if (cache / "convert_hf_to_gguf.py").is_file():
        return cache
    with tempfile.TemporaryDirectory(prefix="edge-agent-sdist-") as scratch:
        log.info("fetching the llama-cpp-python %s source distribution for its converter", version)
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--no-binary",
                ":all:",
                f"llama-cpp-python=={version}",
                "-d",
                scratch,
            ],
            capture_output=True,
            text=True,
        )
        archives = list(Path(scratch).glob("llama_cpp_python-*.tar.gz"))
        if done.returncode != 0 or not archives:
            raise ExportError(
                f"cannot get the llama-cpp-python {version} sdist ({done.stderr.strip()[-300:]}); "
                "pass --llama-cpp-dir with a llama.cpp checkout of the same version"
            )
        _unpack_converter(archives[0], cache)
    return cache


def _unpack_converter(archive: Path, target: Path) -> None:
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            _, _, inside = member.name.partition("/vendor/llama.cpp/")
            if inside and inside.startswith(CONVERTER_PARTS) and member.isfile():
                member.name = inside
                tar.extract(member, staging, filter="data")
    staging.rename(target)


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "edge-agent"


def _convert(converter: Path, request: GgufRequest, outfile: Path, mmproj: bool) -> None:
    outtype = request.mmproj_outtype if mmproj else request.outtype
    # The runner starts in the project's folder (so `-m export.convert_runner` imports): the
    # paths it is given must not depend on the caller's working directory.
    command = [
        sys.executable,
        "-m",
        "export.convert_runner",
        str(converter.resolve()),
        request.pre_tokenizer,
        str(request.hf_dir.resolve()),
        "--outfile",
        str(outfile.resolve()),
        "--outtype",
        outtype,
        *(["--mmproj"] if mmproj else []),
    ]
    if request.pre_tokenizer:
        log.warning(
            "pre-tokenizer forced to %r by --pre-tokenizer: the converter's check of the "
            "tokenizer is skipped",
            request.pre_tokenizer,
        )
    done = subprocess.run(
        command, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1]
    )
    if done.returncode != 0:
        if UNKNOWN_PRE_TOKENIZER in done.stderr:
            raise ExportError(
                "llama.cpp's converter does not recognise this tokenizer's pre-tokenizer; if you "
                "know which it is, pass it explicitly with --pre-tokenizer NAME (e.g. qwen2)"
            )
        if "No space left on device" in done.stderr:
            raise ExportError(f"disk full while writing {outfile.name}")
        tail = "\n".join(done.stderr.strip().splitlines()[-8:])
        raise ExportError(f"conversion to {outfile.name} failed:\n{tail}")
    # The converter writes the mmproj under its own name next to --outfile when asked for one.
    if mmproj and not outfile.is_file():
        made = sorted(outfile.parent.glob("mmproj*.gguf"))
        if not made:
            raise ExportError("the converter wrote no mmproj file")
        made[0].rename(outfile)


def quantize(source: Path, target: Path, quant: str) -> None:
    """llama.cpp's quantizer through llama-cpp-python's binding."""
    import llama_cpp
    from llama_cpp._utils import suppress_stdout_stderr

    ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{quant.upper()}", None)
    if ftype is None:
        raise ExportError(f"unknown quantization {quant!r}; known: {', '.join(QUANTS)}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    with suppress_stdout_stderr():  # llama.cpp prints every tensor
        code = llama_cpp.llama_model_quantize(
            str(source).encode(), str(target).encode(), ctypes.byref(params)
        )
    if code != 0 or not target.is_file():
        target.unlink(missing_ok=True)
        raise ExportError(f"quantizing {source.name} to {quant} failed (code {code})")


def _write_manifest(request, config, converter, files, timings) -> ModelFolder:
    text = config.get("text_config", config)
    version = runtime_version()
    return ModelFolder.write(
        request.out_dir,
        format=FORMAT,
        roles={p.name: "mmproj" if p.name.startswith("mmproj") else "text" for p in files},
        source=checkpoint_record(request.hf_dir),
        versions={"llama_cpp_python": version},
        profile=request.profile,
        fields={
            "architecture": config["architectures"][0],
            "outtype": request.outtype,
            "mmproj_outtype": request.mmproj_outtype,
            "quants": list(request.quants),
            "pre_tokenizer_override": request.pre_tokenizer or None,
            "converter": {"path": str(converter), "llama_cpp_python": version},
            "runtime": {"llama_cpp_python": version},
            "context_length": text.get("max_position_embeddings"),
            "image": {
                "image_token_id": config.get("image_token_id"),
                "vision_start_token_id": config.get("vision_start_token_id"),
                "vision_end_token_id": config.get("vision_end_token_id"),
                "patch_size": config.get("vision_config", {}).get("patch_size"),
                "spatial_merge_size": config.get("vision_config", {}).get("spatial_merge_size"),
            },
            "timings": {k: round(v, 2) for k, v in timings.items()},
        },
    )


def timed(action: Callable[[], None]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start
