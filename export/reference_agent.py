"""The reference agent, end to end: train it on the second-look task, then our own exports of
it (GGUF f16 / q8_0 / q4_0 with its mmproj, and ONNX), each a model folder with its manifest.
`edge-agent export train-tiny-agent OUT` runs this; OUT/hf is the checkpoint the repository
keeps (export/reference_agent/), OUT/gguf and OUT/onnx are rebuilt from it in seconds."""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from export.gguf import GgufRequest, export_gguf
from export.onnx_llm import OnnxLlmRequest, export_onnx_llm
from export.second_look import LookCase, make_case
from export.train_agent import HELD_OUT_SEED, Schedule, train_tiny_agent

log = logging.getLogger(__name__)

# The checkpoint as committed: `edge-agent export train-tiny-agent` writes the same files.
CHECKPOINT = Path(__file__).resolve().parent / "reference_agent"
FOLDER = "reference-agent"  # its GGUF model folder's name in a bundle (`doctor` looks for it)
QUANTS = ("q8_0", "q4_0")
PRE_TOKENIZER = "qwen2"  # our tokenizer splits as Qwen2 does; llama.cpp cannot tell by its hash
# Built-in known-answer cases (`doctor`): held-out cases, never trained on.
KNOWN_ANSWER = (0, 1, 2, 3)


@dataclass(frozen=True)
class Built:
    hf: Path
    gguf: Path
    onnx: Path | None


def held_out(count: int, first: int = 0) -> list[LookCase]:
    return [make_case(HELD_OUT_SEED, n) for n in range(first, first + count)]


def export_reference(hf_dir: Path, out: Path, onnx: bool = True, force: bool = True) -> Built:
    """GGUF f16 + q8_0 + q4_0 + mmproj (OUT/gguf) and, when asked, ONNX (OUT/onnx)."""
    gguf = out / "gguf"
    export_gguf(GgufRequest(hf_dir, gguf, quants=QUANTS, pre_tokenizer=PRE_TOKENIZER, force=force))
    onnx_dir = None
    if onnx:
        onnx_dir = out / "onnx"
        export_onnx_llm(OnnxLlmRequest(hf_dir, onnx_dir, force=force))
    return Built(hf_dir, gguf, onnx_dir)


def build_reference(out: Path, schedule: Schedule, seed: int = 0, threads: int = 2) -> Built:
    """Train into OUT/hf, then export; the learning curve stays in OUT/hf."""
    hf_dir = out / "hf"
    if hf_dir.exists():
        shutil.rmtree(hf_dir)
    final = train_tiny_agent(hf_dir, schedule, seed, threads)
    log.info("trained: %s", final)
    return export_reference(hf_dir, out)
