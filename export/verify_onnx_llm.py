"""Does the ONNX text decoder compute what the checkpoint computes? Logits at every position of
the text probes, through the runtime's own decoder code (edge_agent.onnx_decoder): once from an
empty cache in one call, once with the cache (half the probe, then one token per call)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from edge_agent.onnx_decoder import KvCache, OnnxDecoder
from export.gguf import ExportError
from export.verify import compare, hf_logits, judge, load_hf
from tools.onnx_runtime import ModelLoadError, RuntimeSettings

log = logging.getLogger(__name__)

KIND = "onnx-f32"


def verify_onnx_llm(onnx_dir: Path, hf_dir: Path) -> dict:
    """Compare the exported decoder with the checkpoint on CPU; write verify.json."""
    reference = hf_logits(load_hf(hf_dir), hf_dir)
    try:
        decoder = OnnxDecoder(onnx_dir, RuntimeSettings(providers=("cpu",)))
    except ModelLoadError as exc:
        raise ExportError(str(exc)) from None
    try:
        runs = {
            "onnx (no cache)": [_whole(decoder, ids) for ids in reference["ids"]],
            "onnx (cache)": [_incremental(decoder, ids) for ids in reference["ids"]],
        }
    finally:
        decoder.close()
    results = []
    for name, logits in runs.items():
        comparison = compare(name, logits, reference["logits"])
        results.append(
            {
                **comparison.to_json(),
                "positions": sum(len(ids) for ids in reference["ids"]),
                **judge(KIND, comparison.cosine, comparison.top1, "text", comparison.max_abs),
            }
        )
    report = {"passed": all(r["passed"] for r in results), "results": results}
    (onnx_dir / "verify.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def _whole(decoder: OnnxDecoder, ids: list[int]) -> np.ndarray:
    return decoder.forward(ids, KvCache(decoder.shape))


def _incremental(decoder: OnnxDecoder, ids: list[int]) -> np.ndarray:
    """Half the probe as a prefill, then each further token on its own, continuing the cache."""
    cache, half = KvCache(decoder.shape), max(1, len(ids) // 2)
    rows = [decoder.forward(ids[:half], cache)]
    rows += [decoder.forward([token], cache) for token in ids[half:]]
    return np.concatenate(rows)
