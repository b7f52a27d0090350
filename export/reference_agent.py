"""The reference agent, end to end: train it on the second-look task, then our own exports of
it (GGUF f16 / q8_0 / q4_0 with its mmproj, and ONNX), each a model folder with its manifest.
`edge-agent export train-tiny-agent OUT` runs this; OUT/hf is the checkpoint the repository
keeps (export/reference_agent/), OUT/gguf and OUT/onnx are rebuilt from it in seconds. A
non-empty one of the three is refused before any training, unless asked to replace it."""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

from export.gguf import ExportError, GgufRequest, export_gguf
from export.onnx_llm import OnnxLlmRequest, export_onnx_llm
from export.second_look import LookCase, make_case
from export.train_agent import HELD_OUT_SEED, Schedule, Trained, train_tiny_agent

log = logging.getLogger(__name__)

# The checkpoint as committed: `edge-agent export train-tiny-agent` writes the same files.
CHECKPOINT = Path(__file__).resolve().parent / "reference_agent"
FOLDER = "reference-agent"  # its GGUF model folder's name in a bundle (`doctor` looks for it)
QUANTS = ("q8_0", "q4_0")
PRE_TOKENIZER = "qwen2"  # our tokenizer splits as Qwen2 does; llama.cpp cannot tell by its hash
# How many built-in known-answer cases `doctor` reads: the first held-out ones, never trained on.
KNOWN_ANSWER = 4
PARTS = ("hf", "gguf", "onnx")  # what `build_reference` writes under OUT


@dataclass(frozen=True)
class Built:
    hf: Path
    gguf: Path
    onnx: Path | None
    trained: Trained | None = None


def held_out(count: int, first: int = 0) -> list[LookCase]:
    return [make_case(HELD_OUT_SEED, n) for n in range(first, first + count)]


def export_reference(hf_dir: Path, out: Path, onnx: bool = True, force: bool = False) -> Built:
    """GGUF f16 + q8_0 + q4_0 + mmproj (OUT/gguf) and, when asked, ONNX (OUT/onnx)."""
    gguf = out / "gguf"
    export_gguf(GgufRequest(hf_dir, gguf, quants=QUANTS, pre_tokenizer=PRE_TOKENIZER, force=force))
    onnx_dir = None
    if onnx:
        onnx_dir = out / "onnx"
        export_onnx_llm(OnnxLlmRequest(hf_dir, onnx_dir, force=force))
    return Built(hf_dir, gguf, onnx_dir)


def check_out(out: Path, force: bool) -> None:
    """Before the training: OUT and its parts are folders, and each part is empty unless
    `force` (then it is replaced), so an earlier build is never lost unasked."""
    above = next(p for p in (out, *out.parents) if p.exists())
    for path in (above, *(out / part for part in PARTS)):
        if path.exists() and not path.is_dir():
            raise ExportError(f"{path} is a file, not a folder")
    filled = [out / p for p in PARTS if (out / p).is_dir() and any((out / p).iterdir())]
    if filled and not force:
        names = ", ".join(str(p) for p in filled)
        raise ExportError(f"{names} not empty; pass --force to replace")


def build_reference(
    out: Path, schedule: Schedule, seed: int = 0, threads: int = 2, force: bool = False
) -> Built:
    """Train into OUT/hf, then export; the learning curve stays in OUT/hf."""
    check_out(out, force)
    hf_dir = out / "hf"
    if hf_dir.exists():
        shutil.rmtree(hf_dir)
    trained = train_tiny_agent(hf_dir, schedule, seed, threads)
    log.info("trained: %s", trained.final)
    built = export_reference(hf_dir, out, force=force)
    return replace(built, trained=trained)
