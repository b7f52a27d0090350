"""A text-prompted locate model (BiomedParse class) on ONNX Runtime: image + prompt -> mask + score.

The contract ("edge-agent locate onnx 1"), written into every export's manifest.json:

A model folder holds `manifest.json`, the ONNX graph and the prompt embeddings (`.npy`).

Inputs of the graph
  image           float32 [1, 3, H, W]  the image as the policy sees it (windowed grey replicated to
                                        RGB, or RGB), resized to `image.size` = [H, W], values
                                        0..255 normalised per channel: (value - mean) / std.
  text_embedding  float32 [1, T, D]     one row of the prompt embeddings file: the text encoder's
                                        output for one supported prompt, T tokens of width D; a
                                        model whose text side needs a mask reads zero vectors as
                                        padding.
Outputs
  mask_logits     float32 [1, 1, h, w]  per-pixel logit that the pixel belongs to the prompted
                                        structure, on the input grid or a coarser one (h, w may be
                                        H/4, W/4): the tool resizes it to the shown image.
  score           float32 [1] or [1,1]  logit that the prompted structure is in the image at all.

Why a fixed vocabulary of prompts instead of an exported tokenizer + text encoder: BiomedParse
was trained on a closed set of "target in organ modality" prompts, its text side (CLIP tokenizer
+ 12-layer transformer) is as large as a second model and is only ever asked the same few dozen
questions; computing those embeddings once at export time keeps the workstation's graph small,
needs no tokenizer at run time, and makes the set of things the tool can find explicit: the
manifest lists every prompt, and a caption outside that list is answered plainly (it falls back
to the weight-free HU / intensity classes of `tools.locate`, or is reported unsupported).

A caption matches a prompt when, lower-cased with spaces collapsed, it equals it or contains it as
a whole phrase ("large liver tumor" matches "liver tumor"); the longest prompt wins.

The model is opened, hash-checked and run once on a blank image when the toolbox is built, so a
missing, corrupt or mismatched model stops start-up with a clear error, never a read in progress.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from imaging.errors import ModelLoadError
from imaging.model_folder import ModelFolder, plain_name
from imaging.records import RecordError, from_plain
from tools.onnx_runtime import OnnxModel, RuntimeSettings

log = logging.getLogger(__name__)

FORMAT = "edge-agent locate onnx 1"


@dataclass(frozen=True)
class ImageInput:
    name: str = "image"
    size: tuple[int, int] = (1024, 1024)  # H, W the graph is fed
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)  # on the 0..255 scale, RGB
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def __post_init__(self) -> None:
        if len(self.size) != 2 or min(self.size) < 1:
            raise ValueError(f"size must be [height, width] in pixels, got {list(self.size)}")
        if len(self.mean) != 3 or len(self.std) != 3 or 0.0 in self.std:
            raise ValueError("mean and std need three values (R, G, B); std must not be 0")


@dataclass(frozen=True)
class TextInput:
    name: str = "text_embedding"
    file: str = "prompts.npy"  # float32 [len(prompts), tokens, dim]
    tokens: int = 1
    dim: int = 512
    encoder: str = ""  # what computed the embeddings (provenance)


@dataclass(frozen=True)
class Outputs:
    mask: str = "mask_logits"
    score: str = "score"


@dataclass(frozen=True)
class Thresholds:
    mask: float = 0.5  # probability a pixel must reach to belong to a candidate
    score: float = 0.5  # probability the structure must reach to be reported at all

    def __post_init__(self) -> None:
        if not (0.0 <= self.mask <= 1.0 and 0.0 <= self.score <= 1.0):
            raise ValueError("thresholds are probabilities: 0 <= mask, score <= 1")


@dataclass(frozen=True)
class LocateManifest:
    """The locate kind's own fields of the manifest (files, source, versions: `ModelFolder`)."""

    name: str
    model: str  # the ONNX file's name inside the folder
    prompts: tuple[str, ...]
    image: ImageInput
    text: TextInput
    outputs: Outputs = Outputs()
    thresholds: Thresholds = Thresholds()
    contract: str = ""
    verify: dict | None = None

    def __post_init__(self) -> None:
        if not self.prompts or len(set(map(normalise, self.prompts))) != len(self.prompts):
            raise ValueError("prompts must be a non-empty list without duplicates")
        plain_name(self.model), plain_name(self.text.file)  # never a path outside the folder


def normalise(text: str) -> str:
    return " ".join(text.lower().split())


def read_manifest(path: Path) -> tuple[ModelFolder, LocateManifest]:
    """The folder's manifest, checked against the contract; any defect is a ModelLoadError."""
    folder = ModelFolder.read(path, FORMAT, what="locate model folder")
    try:
        return folder, from_plain(LocateManifest, dict(folder.manifest.fields), "manifest")
    except RecordError as exc:
        raise ModelLoadError(f"{folder.manifest_path}: {exc}") from None


@dataclass(frozen=True)
class Prediction:
    probability: np.ndarray  # float32, shown image's h x w, 0..1
    score: float  # 0..1


class LocateModel:
    """One locate model: its manifest, prompt embeddings and ONNX session; `close()` frees it."""

    def __init__(self, folder: Path, runtime: RuntimeSettings | None = None) -> None:
        export, self.manifest = read_manifest(Path(folder))
        self.folder = export.path
        self.file = self.folder / self.manifest.model
        export.check_all()
        self.sha256 = export.named(self.manifest.model).sha256
        export.named(self.manifest.text.file)  # the embeddings are hashed like the graph
        self._embeddings = _embeddings(self.folder, self.manifest)
        self._prompts = {normalise(p): row for row, p in enumerate(self.manifest.prompts)}
        self._session = OnnxModel(self.file, runtime)
        try:
            self._check_contract()
        except ModelLoadError:
            self._session.close()
            raise
        log.info(
            "locate model %s: %d prompts, on %s",
            self.manifest.name,
            len(self.manifest.prompts),
            self.provider,
        )

    def _check_contract(self) -> None:
        """Names first (a clear list), then one run on a blank image (shapes and dtypes)."""
        gaps = _contract_gaps(self._session, self.manifest)
        if gaps:
            raise ModelLoadError(
                f"{self.file} lacks {', '.join(gaps)} of the locate contract ({FORMAT}); it has "
                f"inputs {list(self._session.input_names)}, outputs "
                f"{list(self._session.output_names)}"
            )
        try:
            self.predict(np.zeros((8, 8), np.uint8), self.manifest.prompts[0])
        except Exception as exc:  # onnxruntime's own error types; shapes or dtypes off contract
            raise ModelLoadError(
                f"{self.file} does not follow the locate contract ({FORMAT}): {exc}"
            ) from None

    @property
    def provider(self) -> str:
        return self._session.provider

    @property
    def method(self) -> str:
        """How observations name this model: what it is, which file, where it ran."""
        return f"{self.manifest.name} ({self.file.name}, ONNX Runtime {self.provider})"

    @property
    def record(self) -> dict:
        # "<folder>/<file>", like the segment model: reports do not carry local paths.
        name = f"{self.folder.name}/{self.file.name}"
        return {"file": name, "sha256": self.sha256, "provider": self.provider}

    def prompt_for(self, caption: str) -> str | None:
        """The supported prompt a caption names: equal to it, else the longest phrase in it."""
        said = normalise(caption)
        if said in self._prompts:
            return self.manifest.prompts[self._prompts[said]]
        inside = [
            p for p in self._prompts if re.search(rf"(?<!\w){re.escape(p)}(?!\w)", said) is not None
        ]
        if not inside:
            return None
        return self.manifest.prompts[self._prompts[max(inside, key=len)]]

    def predict(self, pixels: np.ndarray, prompt: str) -> Prediction:
        """Probability map on the grid of `pixels` (the shown image) and the presence score."""
        row = self._prompts[normalise(prompt)]
        outputs = self._session.run(
            {
                self.manifest.image.name: preprocess(pixels, self.manifest.image),
                self.manifest.text.name: self._embeddings[row : row + 1],
            }
        )
        logits = np.asarray(outputs[self.manifest.outputs.mask], np.float32)
        score = np.asarray(outputs[self.manifest.outputs.score], np.float32)
        if logits.ndim != 4 or logits.shape[:2] != (1, 1) or score.size != 1:
            raise ValueError(
                f"outputs have shapes {logits.shape} and {score.shape}; "
                "the contract needs [1, 1, h, w] and [1]"
            )
        h, w = pixels.shape[:2]
        probability = cv2.resize(_sigmoid(logits[0, 0]), (w, h), interpolation=cv2.INTER_LINEAR)
        return Prediction(probability, float(_sigmoid(score.reshape(()))))

    def close(self) -> None:
        self._session.close()


def preprocess(pixels: np.ndarray, spec: ImageInput) -> np.ndarray:
    """Shown uint8 pixels -> the graph's normalised NCHW float32 image."""
    rgb = cv2.cvtColor(pixels, cv2.COLOR_GRAY2RGB) if pixels.ndim == 2 else pixels
    height, width = spec.size
    resized = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    normalised = (resized - np.float32(spec.mean)) / np.float32(spec.std)
    return np.ascontiguousarray(normalised.transpose(2, 0, 1)[None])


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-np.clip(x, -60, 60)))).astype(np.float32)


def _embeddings(folder: Path, manifest: LocateManifest) -> np.ndarray:
    path = folder / manifest.text.file
    try:
        embeddings = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot read prompt embeddings {path}: {exc}") from None
    expected = (len(manifest.prompts), manifest.text.tokens, manifest.text.dim)
    if embeddings.shape != expected or embeddings.dtype != np.float32:
        raise ModelLoadError(
            f"{path} holds {embeddings.dtype} {list(embeddings.shape)}; the manifest needs "
            f"float32 {list(expected)} (prompts x tokens x dim)"
        )
    return embeddings


def _contract_gaps(model: OnnxModel, manifest: LocateManifest) -> list[str]:
    """Contract names the graph lacks (empty when it has them all)."""
    wanted = [(manifest.image.name, model.input_names), (manifest.text.name, model.input_names)]
    wanted += [
        (manifest.outputs.mask, model.output_names),
        (manifest.outputs.score, model.output_names),
    ]
    return [name for name, present in wanted if name not in present]
