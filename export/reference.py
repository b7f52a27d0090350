"""What the checkpoint itself computes, that every export of it is compared against: the text
probes and their next-token logits, the probe image and its vision-tower embedding (transformers on
CPU), and how a comparison is judged per file type."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

PROBES = (
    "The new image has index 2, width 512 and height 512.",
    "<think> Let me look closer at the lesion. </think> Action: Zoom-in",
    "A hypodense lesion in the right hepatic lobe",
    "kidney spleen lung nodule bone fracture",
)


# Per file type: what must hold for the text logits (cosine / top-1) and the image embeddings.
THRESHOLDS = {
    "f32": {"cosine": 0.9999, "image_cosine": 0.999},
    "f16": {"cosine": 0.999, "image_cosine": 0.99},
    "bf16": {"cosine": 0.99, "image_cosine": 0.99},
    "q8_0": {"top1": 0.95},
    # ONNX Runtime vs PyTorch, both float32: only the order of floating-point operations differs
    "onnx-f32": {"cosine": 0.99999, "max_abs": 1e-3},
}


IMAGE_SIDE = 112  # a multiple of 28 inside both processors' limits: neither resizes it


@dataclass(frozen=True)
class Comparison:
    name: str
    cosine: float
    top1: float
    max_abs: float  # largest difference of one logit

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "cosine": round(self.cosine, 6),
            "top1": round(self.top1, 4),
            "max_abs": float(f"{self.max_abs:.3g}"),
        }


def judge(kind: str, cosine: float, top1: float, path: str, max_abs: float = 0.0) -> dict:
    """Whether a comparison meets its file type's thresholds (THRESHOLDS), and the rule."""
    rule = THRESHOLDS.get(kind)
    if rule is None:
        return {"passed": True, "rule": "report only"}
    checks = []
    if path == "text" and "cosine" in rule:
        checks.append((f"cosine >= {rule['cosine']}", cosine >= rule["cosine"]))
    if path == "text" and "top1" in rule:
        checks.append((f"top1 >= {rule['top1']}", top1 >= rule["top1"]))
    if path == "text" and "max_abs" in rule:
        checks.append((f"max_abs <= {rule['max_abs']}", max_abs <= rule["max_abs"]))
    if path == "image" and "image_cosine" in rule:
        checks.append((f"image cosine >= {rule['image_cosine']}", cosine >= rule["image_cosine"]))
    return {
        "passed": all(ok for _, ok in checks),
        "rule": ", ".join(name for name, _ in checks) or "report only",
    }


def load_hf(hf_dir: Path):
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    return Qwen2_5_VLForConditionalGeneration.from_pretrained(hf_dir, dtype=torch.float32).eval()


def hf_logits(model, hf_dir: Path) -> dict:
    import torch
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(hf_dir)
    ids, logits = [], []
    with torch.no_grad():
        for text in PROBES:
            tokens = tokenizer(text)["input_ids"]
            output = model(input_ids=torch.tensor([tokens]))
            ids.append(tokens)
            logits.append(output.logits[0].float().numpy())  # every position
    return {"ids": ids, "logits": logits}


def compare(name: str, got: list[np.ndarray], want: list[np.ndarray]) -> Comparison:
    """Mean cosine over every probe position, how often the top token agrees, the largest
    difference of one logit."""
    cosines, agree, total, max_abs = [], 0, 0, 0.0
    for mine, theirs in zip(got, want, strict=True):
        vocab = min(mine.shape[-1], theirs.shape[-1])
        a, b = mine[:, :vocab], theirs[:, :vocab]
        cosines += list(row_cosines(a, b))
        agree += int(np.sum(a.argmax(1) == b.argmax(1)))
        total += len(a)
        max_abs = max(max_abs, float(np.max(np.abs(a - b))))
    return Comparison(name, float(np.mean(cosines)), agree / total, max_abs)


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def probe_image() -> np.ndarray:
    """A fixed RGB test pattern: gradients and a disc, no randomness."""
    y, x = np.mgrid[:IMAGE_SIDE, :IMAGE_SIDE]
    disc = ((x - 60) ** 2 + (y - 50) ** 2 < 400) * 120
    rgb = np.stack([x * 2, y * 2, disc + 60], axis=-1)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def hf_image_embedding(model, hf_dir: Path, image: np.ndarray) -> np.ndarray:
    import torch
    from PIL import Image
    from transformers import AutoImageProcessor

    processor = AutoImageProcessor.from_pretrained(hf_dir)
    inputs = processor(images=[Image.fromarray(image)], return_tensors="pt")
    with torch.no_grad():
        embeds = model.model.visual(inputs["pixel_values"], grid_thw=inputs["image_grid_thw"])
    if hasattr(embeds, "pooler_output"):
        embeds = embeds.pooler_output
    return embeds.float().numpy()
