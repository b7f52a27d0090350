"""Do the ONNX models compute what the checkpoint computes? Through the runtime's own code
(edge_agent.onnx_decoder, edge_agent.vision_inputs), on CPU:

- text: logits at every position of the text probes, once from an empty cache in one call, once
  with the cache (half the probe, then one token per call);
- vision: the encoder's image embeddings for fixed test images (one window and several);
- image + text: logits of a prompt holding an image, image embeddings and M-RoPE positions
  included, prefilled in chunks with the cache."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from edge_agent.onnx_decoder import KvCache, OnnxDecoder, OnnxVision, turn_chunks
from edge_agent.vision_inputs import mrope_positions
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
from imaging.errors import ModelLoadError
from tools.onnx_runtime import RuntimeSettings

log = logging.getLogger(__name__)

KIND = "onnx-f32"
CPU = RuntimeSettings(providers=("cpu",))
IMAGE_PROMPT = ("<|im_start|>user\n", "What is shown?<|im_end|>\n<|im_start|>assistant\n")


def verify_onnx_llm(onnx_dir: Path, hf_dir: Path) -> dict:
    """Compare the exported decoder and vision encoder with the checkpoint; write verify.json."""
    model = load_hf(hf_dir)
    reference = hf_logits(model, hf_dir)
    try:
        decoder = OnnxDecoder(onnx_dir, CPU)
    except ModelLoadError as exc:
        raise ExportError(str(exc)) from None
    try:
        vision = OnnxVision(decoder, CPU)
    except ModelLoadError as exc:
        decoder.close()
        raise ExportError(str(exc)) from None
    try:
        results = [
            _judged(compare(name, logits, reference["logits"]), reference["ids"])
            for name, logits in (
                ("onnx (no cache)", [_whole(decoder, ids) for ids in reference["ids"]]),
                ("onnx (cache)", [_incremental(decoder, ids) for ids in reference["ids"]]),
            )
        ]
        results.append(_vision(vision, model, hf_dir))
        results.append(_image_prompt(decoder, vision, model, hf_dir))
    finally:
        vision.close()
        decoder.close()
    report = {"passed": all(r["passed"] for r in results), "results": results}
    (onnx_dir / "verify.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def _judged(comparison, ids: list[list[int]]) -> dict:
    return {
        **comparison.to_json(),
        "positions": sum(len(row) for row in ids),
        **judge(KIND, comparison.cosine, comparison.top1, "text", comparison.max_abs),
    }


def _whole(decoder: OnnxDecoder, ids: list[int]) -> np.ndarray:
    return decoder.forward(ids, KvCache(decoder.shape))


def _incremental(decoder: OnnxDecoder, ids: list[int]) -> np.ndarray:
    """Half the probe as a prefill, then each further token on its own, continuing the cache."""
    cache, half = KvCache(decoder.shape), max(1, len(ids) // 2)
    rows = [decoder.forward(ids[:half], cache)]
    rows += [decoder.forward([token], cache) for token in ids[half:]]
    return np.concatenate(rows)


def _test_images() -> list[np.ndarray]:
    """The probe (one attention window), and a wide one made of it (two windows, not square)."""
    probe = probe_image()
    return [probe, np.ascontiguousarray(np.concatenate([probe, probe[:, ::-1]], axis=1))]


def _vision(vision: OnnxVision, model, hf_dir: Path) -> dict:
    got, want = [], []
    for image in _test_images():
        got.append(vision.encode(image)[0])
        want.append(hf_image_embedding(model, hf_dir, image))
    if [g.shape for g in got] != [w.shape for w in want]:
        return {"name": "onnx vision", "passed": False, "rule": "embedding shapes differ"}
    cosine = float(
        np.mean(np.concatenate([row_cosines(g, w) for g, w in zip(got, want, strict=True)]))
    )
    max_abs = max(float(np.max(np.abs(g - w))) for g, w in zip(got, want, strict=True))
    return {
        "name": "onnx vision",
        "cosine": round(cosine, 6),
        "max_abs": float(f"{max_abs:.3g}"),
        "tokens": sum(len(g) for g in got),
        **judge(KIND, cosine, 1.0, "text", max_abs),
    }


def _image_prompt(decoder: OnnxDecoder, vision: OnnxVision, model, hf_dir: Path) -> dict:
    """An image inside a chat turn: ONNX (chunked, cached) vs transformers (one call)."""
    image = _test_images()[1]
    embeds, grid = vision.encode(image)
    ids = [
        *decoder.tokenize(IMAGE_PROMPT[0]),
        vision.start_id,
        *[vision.image_token_id] * len(embeds),
        vision.end_id,
        *decoder.tokenize(IMAGE_PROMPT[1]),
    ]
    positions = mrope_positions(ids, 0, vision.image_token_id, [grid], vision.spec.merge_size)
    cache, rows = KvCache(decoder.shape), []
    for part, part_embeds, part_positions in turn_chunks(
        ids, embeds, positions, 7, vision.image_token_id
    ):
        rows.append(decoder.forward(part, cache, part_embeds, part_positions))
    comparison = compare(
        "onnx (image + text)", [np.concatenate(rows)], [_hf_image_logits(model, hf_dir, image, ids)]
    )
    return _judged(comparison, [ids])


def _hf_image_logits(model, hf_dir: Path, image: np.ndarray, ids: list[int]) -> np.ndarray:
    import torch
    from PIL import Image
    from transformers import AutoImageProcessor

    inputs = AutoImageProcessor.from_pretrained(hf_dir)(
        images=[Image.fromarray(image)], return_tensors="pt"
    )
    tokens = torch.tensor([ids])
    with torch.no_grad():  # token types tell transformers where the image is (M-RoPE positions)
        out = model(
            input_ids=tokens,
            mm_token_type_ids=(tokens == model.config.image_token_id).to(torch.int32),
            pixel_values=inputs["pixel_values"],
            image_grid_thw=inputs["image_grid_thw"],
        )
    return out.logits[0].float().numpy()
