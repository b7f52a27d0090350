"""Does a SAM2 ONNX export compute what SAM2 computes in PyTorch? A fixed probe image and boxes go
through both: PyTorch eager, and the runtime the segment tool uses (`tools.sam_onnx.SamOnnx` on
ONNX Runtime's CPU provider, with its own pre-processing). Writes verify.json."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch

from export.sam2_model import BoxDecoder, ImageEncoder
from tools.onnx_runtime import RuntimeSettings
from tools.sam_onnx import (
    EMBEDDINGS,
    SamImage,
    SamOnnx,
    preprocess,
    read_manifest,
    scale_boxes,
)

log = logging.getLogger(__name__)

VERIFY = "verify.json"
PROBE_SIZE = (480, 360)  # (w, h): not square, so the box and mask scaling are exercised
DISCS = ((150, 140, 60, 200), (330, 200, 80, 90), (240, 290, 40, 240))  # x, y, radius, grey
# max abs diff <= rel * max(1, max |reference|); IoU of the masks (logits > 0) per probe box.
TOLERANCES = {
    "fp32": {"embedding_rel": 1e-3, "logits_rel": 1e-3, "min_mask_iou": 0.99},
    "int8": {"min_mask_iou": 0.80},
}


def probe_image() -> np.ndarray:
    """Grey discs on a gradient with fixed noise: deterministic, no file needed."""
    w, h = PROBE_SIZE
    y, x = np.mgrid[:h, :w]
    image = 40 + 0.2 * x + np.random.default_rng(0).normal(0, 4, (h, w))
    for cx, cy, r, grey in DISCS:
        image[(x - cx) ** 2 + (y - cy) ** 2 < r**2] = grey
    return np.clip(image, 0, 255).astype(np.uint8)


def probe_boxes() -> np.ndarray:
    """A box a little larger than each disc, in probe-image pixels."""
    return np.array(
        [(cx - 1.2 * r, cy - 1.2 * r, cx + 1.2 * r, cy + 1.2 * r) for cx, cy, r, _ in DISCS]
    )


def verify_sam2(out_dir: Path, encoder: ImageEncoder, decoder: BoxDecoder) -> dict:
    """Every encoder in the export (fp32, int8 if there) against PyTorch; writes verify.json."""
    export, spec = read_manifest(out_dir)
    image, boxes = probe_image(), probe_boxes()
    reference = _torch_reference(encoder, decoder, spec.image, image, boxes)
    results = []
    for kind, role in (("fp32", "encoder"), ("int8", "encoder-int8")):
        if any(f.role == role for f in export.manifest.files):
            model = SamOnnx(export.path, RuntimeSettings(("cpu",)), encoder=kind)
            try:
                results.append(_compare(kind, model, image, boxes, reference))
            finally:
                model.close()
    report = {
        "passed": all(r["passed"] for r in results),
        "probe": {"image_size": list(PROBE_SIZE), "boxes": boxes.round(1).tolist()},
        "tolerances": TOLERANCES,
        "results": results,
    }
    (export.path / VERIFY).write_text(json.dumps(report, indent=2) + "\n")
    return report


def _torch_reference(encoder, decoder, spec: SamImage, image, boxes) -> dict:
    side = spec.size
    tensor = torch.from_numpy(preprocess(image, side, spec.mean, spec.std))
    scaled = torch.from_numpy(scale_boxes(boxes, PROBE_SIZE, side))
    with torch.no_grad():
        embeddings = encoder(tensor)
        logits, _ = decoder(*embeddings, scaled)
    return {
        "embeddings": dict(zip(EMBEDDINGS, (e.numpy() for e in embeddings), strict=True)),
        "logits": logits[:, 0].numpy(),
    }


def _compare(kind: str, model: SamOnnx, image, boxes, reference) -> dict:
    embedding = model.embed(image)
    embed_diff = max(
        _max_abs(embedding.features[name] - reference["embeddings"][name]) for name in EMBEDDINGS
    )
    embed_scale = max(_max_abs(value) for value in reference["embeddings"].values())
    together = model.decode(embedding, boxes).logits  # n boxes in one call
    one_by_one = np.concatenate([model.decode(embedding, box[None]).logits for box in boxes])
    logits_diff = max(
        _max_abs(together - reference["logits"]), _max_abs(one_by_one - reference["logits"])
    )
    ious = [
        _iou(mine > 0, theirs > 0)
        for mine, theirs in zip(together, reference["logits"], strict=True)
    ]
    measured = {
        "name": f"encoder {kind} + decoder, ONNX Runtime cpu vs PyTorch",
        "embedding_max_abs_diff": _round(embed_diff),
        "embedding_max_abs": _round(embed_scale),
        "logits_max_abs_diff": _round(logits_diff),
        "logits_max_abs": _round(_max_abs(reference["logits"])),
        "mask_iou": [round(v, 4) for v in ious],
    }
    return {**measured, **_judge(kind, measured, embed_scale, _max_abs(reference["logits"]))}


def _judge(kind: str, measured: dict, embed_scale: float, logits_scale: float) -> dict:
    rule = TOLERANCES[kind]
    checks = [("min mask IoU", min(measured["mask_iou"]) >= rule["min_mask_iou"])]
    if "embedding_rel" in rule:
        limit = rule["embedding_rel"] * max(1.0, embed_scale)
        checks.append(("embedding", measured["embedding_max_abs_diff"] <= limit))
    if "logits_rel" in rule:
        limit = rule["logits_rel"] * max(1.0, logits_scale)
        checks.append(("logits", measured["logits_max_abs_diff"] <= limit))
    failed = [name for name, ok in checks if not ok]
    return {"passed": not failed, "failed": failed}


def _max_abs(array: np.ndarray) -> float:
    return float(np.max(np.abs(array)))


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def _round(value: float) -> float:
    return float(f"{value:.4g}")
