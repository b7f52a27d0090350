"""A SAM-class segmentation model on ONNX Runtime: the image embedding once, then box → mask.

The model is a folder written by `edge-agent export onnx sam2`: `manifest.json` names the image
encoder, the prompt encoder + mask decoder and (optionally) an int8 encoder with their SHA-256,
and the input size and normalisation they were exported for. Every file is checked against its
hash and opened when the toolbox is built, so a damaged model is an error at start-up."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from imaging.errors import ModelLoadError
from imaging.model_folder import ModelFolder
from imaging.records import RecordError, from_plain
from tools.onnx_runtime import OnnxModel, RuntimeSettings
from tools.render import to_rgb

log = logging.getLogger(__name__)

MANIFEST_FORMAT = "edge-agent sam onnx 1"
ENCODERS = ("fp32", "int8")  # manifest roles "encoder" and "encoder-int8"
# Names shared by the exporter and this runtime: the ONNX graphs' inputs and outputs.
IMAGE_INPUT = "image"
EMBEDDINGS = ("image_embed", "high_res_0", "high_res_1")
BOXES_INPUT = "boxes"
DECODER_OUTPUTS = ("mask_logits", "scores")


@dataclass(frozen=True)
class Embedding:
    """The encoder's outputs for one image, and the size (w, h) of the image it was made from."""

    features: dict[str, np.ndarray]
    size: tuple[int, int]


@dataclass(frozen=True)
class Decoded:
    """Low-resolution mask logits (n, h', w') and the model's quality score of each mask."""

    logits: np.ndarray
    scores: np.ndarray


@dataclass(frozen=True)
class SamImage:
    """The encoder's input: a square of `size` pixels, normalised per channel (0..1 scale)."""

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize: str = ""


@dataclass(frozen=True)
class SamSpec:
    """The SAM kind's own manifest fields that the runtime opens the model with."""

    model: str  # the SAM2 config it was built from, e.g. "sam2.1_hiera_t"
    image: SamImage


def read_manifest(path: Path) -> tuple[ModelFolder, SamSpec]:
    """The export (`path` is the folder or its manifest.json) and what it was made for;
    everything the model is opened with is checked before any session exists."""
    folder = ModelFolder.read(path, MANIFEST_FORMAT, what="segment model")
    fields = {k: v for k, v in folder.manifest.fields.items() if k in ("model", "image")}
    try:
        return folder, from_plain(SamSpec, fields, "manifest")
    except RecordError as exc:
        raise ModelLoadError(f"{folder.manifest_path} is incomplete or damaged: {exc}") from None


def preprocess(pixels: np.ndarray, side: int, mean, std) -> np.ndarray:
    """Shown pixels (uint8 grey or RGB) → the encoder's (1, 3, side, side) float input."""
    # SAM2 resizes with antialiasing: area averaging when shrinking, bilinear when enlarging.
    shrink = max(pixels.shape[:2]) > side
    interpolation = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    resized = cv2.resize(to_rgb(pixels), (side, side), interpolation=interpolation)
    normalised = (resized.astype(np.float32) / 255.0 - np.float32(mean)) / np.float32(std)
    return np.ascontiguousarray(normalised.transpose(2, 0, 1)[None], dtype=np.float32)


def scale_boxes(boxes: np.ndarray, size: tuple[int, int], side: int) -> np.ndarray:
    """Boxes in pixels of an image of `size` (w, h) → the model's square input frame."""
    w, h = size
    scale = np.array([side / w, side / h, side / w, side / h], np.float32)
    return np.asarray(boxes, np.float32).reshape(-1, 4) * scale


class SamOnnx:
    """Owns the encoder and decoder sessions of one export; `close()` releases both."""

    def __init__(
        self, path: Path, settings: RuntimeSettings | None = None, *, encoder: str = "fp32"
    ) -> None:
        if encoder not in ENCODERS:
            raise ModelLoadError(f"segment encoder {encoder!r} is not one of {', '.join(ENCODERS)}")
        export, spec = read_manifest(path)
        self.folder = export.path
        role = "encoder" if encoder == "fp32" else "encoder-int8"
        encoder_path = export.verified(role)
        decoder_path = export.verified("decoder")
        self._encoder = OnnxModel(encoder_path, settings)
        try:
            self._decoder = OnnxModel(decoder_path, settings)
        except ModelLoadError:
            self._encoder.close()
            raise
        self.side, self.mean, self.std = spec.image.size, spec.image.mean, spec.image.std
        provider = self._encoder.provider
        self.method = f"{spec.model} on ONNX Runtime ({encoder} encoder, {provider})"
        # What a report needs to name the model: the export and the files that ran, by hash;
        # "file" / "sha256" (the encoder, the weights that matter) is what the SR statement names.
        self.provenance = {
            "file": f"{self.folder.name}/{encoder_path.name}",
            "sha256": export.named(encoder_path.name).sha256,
            "export": str(self.folder),
            "files": {p.name: export.named(p.name).sha256 for p in (encoder_path, decoder_path)},
        }
        log.info("segment model %s: %s", self.folder, self.method)

    def embed(self, pixels: np.ndarray) -> Embedding:
        """The expensive half: run once per image, reuse for every box on it."""
        image = preprocess(pixels, self.side, self.mean, self.std)
        features = self._encoder.run({IMAGE_INPUT: image})
        return Embedding(
            {name: features[name] for name in EMBEDDINGS}, (pixels.shape[1], pixels.shape[0])
        )

    def decode(self, embedding: Embedding, boxes: np.ndarray) -> Decoded:
        """Mask logits for each box (pixels of the embedded image), at the decoder's resolution."""
        feeds = {**embedding.features, BOXES_INPUT: scale_boxes(boxes, embedding.size, self.side)}
        out = self._decoder.run(feeds)
        return Decoded(out[DECODER_OUTPUTS[0]][:, 0], out[DECODER_OUTPUTS[1]][:, 0])

    def masks(self, embedding: Embedding, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Boolean masks (n, h, w) on the embedded image's grid, and their scores."""
        decoded = self.decode(embedding, boxes)
        upsampled = [
            cv2.resize(logits, embedding.size, interpolation=cv2.INTER_LINEAR)
            for logits in decoded.logits
        ]
        return np.stack(upsampled) > 0.0, decoded.scores

    def close(self) -> None:
        self._encoder.close()
        self._decoder.close()
