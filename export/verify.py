"""Do the GGUF files still compute what the checkpoint computes? Next-token logits on fixed text
probes (llama.cpp vs transformers on CPU), and the image path: mmproj embeddings vs the HF vision
tower for the same image."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from edge_agent.onnx_decoder import FORMAT as ONNX_LLM_FORMAT
from export.gguf import FORMAT as GGUF_FORMAT
from export.gguf import ExportError
from export.reference import (
    compare,
    hf_image_embedding,
    hf_logits,
    judge,
    load_hf,
    probe_image,
    row_cosines,
)
from imaging.model_folder import ModelFolder

log = logging.getLogger(__name__)


def verify(gguf_dir: Path, hf_dir: Path) -> dict:
    """Compare every text GGUF in the export against the checkpoint; write verify.json. An ONNX
    decoder export (`export onnx-llm`) is verified by its own module."""
    folder = ModelFolder.read(gguf_dir, (GGUF_FORMAT, ONNX_LLM_FORMAT), what="export")
    if folder.manifest.format == ONNX_LLM_FORMAT:
        from export.verify_onnx_llm import verify_onnx_llm

        return verify_onnx_llm(gguf_dir, hf_dir)
    mmproj = folder.verified("mmproj")
    folder.entry("text")  # none listed: the error names the roles there are
    texts = [folder.check(f) for f in folder.manifest.files if f.role == "text"]
    model = load_hf(hf_dir)  # once, for the text and the image comparisons
    reference = hf_logits(model, hf_dir)
    results = []
    for path in texts:
        kind = path.name.removeprefix("model-").removesuffix(".gguf")
        comparison = compare(kind, _gguf_logits(path, reference["ids"]), reference["logits"])
        results.append(
            {**comparison.to_json(), **judge(kind, comparison.cosine, comparison.top1, "text")}
        )
    image = _compare_image(mmproj, model, hf_dir, texts[0])
    results.append(image)
    report = {"passed": all(r["passed"] for r in results), "results": results}
    (gguf_dir / "verify.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def _gguf_logits(path: Path, probes: list[list[int]]) -> list[np.ndarray]:
    from llama_cpp import Llama

    try:
        model = Llama(model_path=str(path), n_ctx=512, logits_all=True, verbose=False, n_threads=2)
    except ValueError:  # llama-cpp-python's only word for any load failure
        raise ExportError(
            f"llama.cpp cannot load {path}: damaged, or written for another llama.cpp (an "
            "unknown pre-tokenizer, architecture or tensor type)"
        ) from None
    try:
        out = []
        for tokens in probes:
            model.reset()
            model.eval(tokens)
            out.append(np.array(model.scores[: len(tokens)], dtype=np.float32))
        return out
    finally:
        model.close()


def _compare_image(mmproj: Path, model, hf_dir: Path, text: Path) -> dict:
    kind = mmproj.stem.removeprefix("mmproj-")
    image = probe_image()
    want = hf_image_embedding(model, hf_dir, image)
    got = _gguf_image_embedding(mmproj, text, image)
    if got.shape != want.shape:
        return {
            "name": f"image ({kind})",
            "passed": False,
            "rule": f"shape {tuple(got.shape)} vs {tuple(want.shape)}",
        }
    cosine = float(np.mean(row_cosines(got, want)))
    return {
        "name": f"image ({kind})",
        "cosine": round(cosine, 6),
        "tokens": int(got.shape[0]),
        **judge(kind, cosine, 1.0, "image"),
    }


def _gguf_image_embedding(mmproj: Path, text_model: Path, image: np.ndarray) -> np.ndarray:
    from edge_agent.mtmd import MultimodalModel

    with MultimodalModel(text_model, mmproj, n_ctx=1024) as model:
        return model.image_embedding(image)
