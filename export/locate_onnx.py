"""Text-prompted locate models -> the ONNX folder `tools.locate_model` runs (contract in its doc).

`export_locate` takes any torch module with the contract's signature,
`forward(image [B,3,H,W], text_embedding [B,T,D]) -> (mask_logits [B,1,h,w], score [B,1])`, plus
the embeddings of its supported prompts, already computed by the model's own text encoder. It
exports the graph with dynamic batch, height and width, checks ONNX Runtime against torch on a
random input, writes the embeddings and a manifest with every file's SHA-256, and finally opens
the folder the way the workstation will (`LocateModel`), so an export that would not load is
never left behind.

`build_tiny_locate` makes a tiny random-weight network with the same interface and a random
"text side" for a handful of BiomedParse-style prompts: the tests run the whole path on it.

The real BiomedParse (v1) is not exported here: its weights are a gated download we never make,
and its code (X-Decoder / SEEM lineage, detectron2-style modules) is not a package. From reading
the public repository, the path is: a wrapper module whose forward takes the 1024 x 1024 image
(normalised by this contract with its PIXEL_MEAN / PIXEL_STD, `BIOMEDPARSE_MEAN` / `_STD` below)
and the prompt's text rows, runs backbone, pixel decoder (its multi-scale deformable attention
has a pure PyTorch grid_sample path, which ONNX opset >= 16 and TensorRT support) and grounding
decoder, picks the query whose caption embedding best matches the prompt's class embedding (as
its `interactive_infer_image` does) and returns that query's mask logits and the similarity as
`score`; the prompt rows come from the model's own language encoder run once over the prompt
list (token embeddings zero-padded, the pooled class embedding as the last row: a convention of
that wrapper). Its per-target existence test (a statistical test of the mask against reference
distributions) is post-processing that the `score` threshold stands in for until it is ported.
"""

from __future__ import annotations

import importlib.metadata
import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from export.gguf import ExportError, prepare_out_dir
from imaging.model_folder import MANIFEST, ModelFolder
from imaging.records import to_plain
from tools.locate_model import (
    FORMAT,
    ImageInput,
    LocateManifest,
    LocateModel,
    TextInput,
    Thresholds,
)
from tools.onnx_runtime import OnnxModel, RuntimeSettings

log = logging.getLogger(__name__)

MODEL_FILE = "locate.onnx"
OPSET = 18
TOLERANCE = 1e-3  # largest |torch - ONNX Runtime| accepted on the check input (float32 graph)
CONTRACT = (
    "image float32 [1,3,H,W]: shown pixels as RGB 0..255 resized to image.size, (v-mean)/std; "
    "text_embedding float32 [1,T,D]: one row of text.file (zero vectors = padding); "
    "mask_logits float32 [1,1,h,w]: per-pixel logit of the prompted structure, any h,w (resized "
    "to the shown image); score float32 [1] or [1,1]: logit that the structure is present. "
    "Candidates: sigmoid(mask) >= thresholds.mask, only when sigmoid(score) >= thresholds.score."
)
# BiomedParse-style targets ("target" or "target in organ"); the tiny model knows these.
TINY_PROMPTS = ("liver", "kidney", "spleen", "liver tumor", "lung nodule", "pleural effusion")
# BiomedParse v1's normalisation (configs/biomedparse_inference.yaml, INPUT.PIXEL_MEAN/STD).
BIOMEDPARSE_MEAN = (64.284, 59.293, 59.962)
BIOMEDPARSE_STD = (62.484, 60.865, 59.835)


@dataclass(frozen=True)
class LocateExport:
    out_dir: Path
    name: str  # how observations and reports name the model
    prompts: tuple[str, ...]
    image: ImageInput
    encoder: str  # what computed the prompt embeddings
    thresholds: Thresholds = field(default_factory=Thresholds)
    source: dict | None = None  # checkpoint files and hashes, when there is one
    force: bool = False


def export_locate(module, embeddings: np.ndarray, request: LocateExport) -> dict:
    """Export, check against torch, write embeddings + manifest; returns the manifest."""
    import torch

    embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
    if embeddings.ndim != 3 or embeddings.shape[0] != len(request.prompts):
        raise ExportError(
            f"embeddings must be [prompts={len(request.prompts)}, tokens, dim], "
            f"got {list(embeddings.shape)}"
        )
    prepare_out_dir(request.out_dir, request.force)
    try:
        module = module.eval()
        height, width = request.image.size
        generator = torch.Generator().manual_seed(0)
        image = torch.randn(1, 3, height, width, generator=generator)
        text = torch.from_numpy(embeddings[:1])
        _check_outputs(module, (image, text))
        _export_graph(module, (image, text), request.out_dir / MODEL_FILE)
        np.save(request.out_dir / "prompts.npy", embeddings, allow_pickle=False)
        difference = _compare(module, (image, text), request.out_dir / MODEL_FILE)
        folder = _write_manifest(request, embeddings.shape, difference)
        LocateModel(request.out_dir, RuntimeSettings(providers=("cpu",))).close()
    except BaseException:
        shutil.rmtree(request.out_dir, ignore_errors=True)  # no partial export is left behind
        raise
    return folder.manifest.to_plain()


def _check_outputs(module, example: tuple) -> None:
    """The module answers as the contract says before anything is exported."""
    import torch

    with torch.no_grad():
        outputs = module(*example)
    shapes = [list(getattr(t, "shape", [])) for t in outputs] if isinstance(outputs, tuple) else []
    mask_ok = len(shapes) == 2 and len(shapes[0]) == 4 and shapes[0][:2] == [1, 1]
    if not mask_ok or shapes[1] not in ([1], [1, 1]):
        raise ExportError(
            f"the module returns {shapes or type(outputs).__name__}; the locate contract needs "
            "(mask_logits [1, 1, h, w], score [1] or [1, 1]) for one image and one prompt"
        )


def _export_graph(module, example: tuple, path: Path) -> None:
    import torch

    batch = torch.export.Dim("batch", min=1, max=64)
    height = torch.export.Dim("height", min=16, max=4096)
    width = torch.export.Dim("width", min=16, max=4096)
    torch.onnx.export(
        module,
        example,
        str(path),
        input_names=["image", "text_embedding"],
        output_names=["mask_logits", "score"],
        dynamic_shapes={"image": {0: batch, 2: height, 3: width}, "text_embedding": {0: batch}},
        opset_version=OPSET,
        dynamo=True,
        verbose=False,
        external_data=False,
    )


def _compare(module, example: tuple, path: Path) -> float:
    """Largest absolute difference between torch and ONNX Runtime (CPU) on `example`."""
    import torch

    with torch.no_grad():
        expected = [t.numpy() for t in module(*example)]
    session = OnnxModel(path, RuntimeSettings(providers=("cpu",)))
    try:
        got = session.run({"image": example[0].numpy(), "text_embedding": example[1].numpy()})
    finally:
        session.close()
    difference = max(
        float(np.abs(got[name] - want).max())
        for name, want in zip(("mask_logits", "score"), expected, strict=True)
    )
    if not difference <= TOLERANCE:
        raise ExportError(
            f"ONNX Runtime differs from torch by {difference:.2e} (> {TOLERANCE:g}) on the check "
            "input: the export is not faithful"
        )
    return difference


def _write_manifest(request: LocateExport, shape: Sequence[int], difference: float) -> ModelFolder:
    files = sorted(p.name for p in request.out_dir.iterdir() if p.is_file() and p.name != MANIFEST)
    text = TextInput(tokens=int(shape[1]), dim=int(shape[2]), encoder=request.encoder)
    kind = LocateManifest(
        name=request.name,
        model=MODEL_FILE,
        prompts=tuple(request.prompts),
        image=request.image,
        text=text,
        thresholds=request.thresholds,
        contract=CONTRACT,
        verify={"max_abs_diff_vs_torch": difference, "tolerance": TOLERANCE},
    )
    return ModelFolder.write(
        request.out_dir,
        format=FORMAT,
        roles={n: "model" if n.startswith(MODEL_FILE) else "text embeddings" for n in files},
        source=request.source,
        versions={name: _version(name) for name in ("torch", "onnx", "onnxruntime")},
        fields=to_plain(kind),
    )


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def tiny_locate_net(seed: int = 0, dim: int = 32, channels: int = 16):
    """A tiny random network with the contract's interface (mask at 1/4 of the input grid)."""
    import torch
    from torch import nn

    class TinyLocateNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = nn.Sequential(
                nn.Conv2d(3, channels, 3, stride=2, padding=1),
                nn.ReLU(),
                nn.Conv2d(channels, channels, 3, stride=2, padding=1),
                nn.ReLU(),
            )
            self.film = nn.Linear(dim, 2 * channels)  # the prompt scales and shifts each feature
            self.mask = nn.Conv2d(channels, 1, 1)
            self.score = nn.Linear(channels, 1)

        def forward(self, image, text_embedding):
            features = self.encoder(image)
            scale, shift = self.film(text_embedding.mean(1)).chunk(2, dim=-1)
            features = features * scale[..., None, None] + shift[..., None, None]
            return self.mask(features), self.score(features.mean(dim=(2, 3)))

    torch.manual_seed(seed)
    return TinyLocateNet()


def build_tiny_locate(out_dir: Path, seed: int = 0, *, size: int = 64, force: bool = False):
    """Tiny random locate model folder, for tests and for trying the path without weights."""
    dim = 32
    embeddings = np.random.default_rng(seed).normal(0, 1, (len(TINY_PROMPTS), 4, dim))
    request = LocateExport(
        out_dir=Path(out_dir),
        name="tiny-locate (random weights, not a model)",
        prompts=TINY_PROMPTS,
        image=ImageInput(size=(size, size), mean=BIOMEDPARSE_MEAN, std=BIOMEDPARSE_STD),
        encoder=f"random normal embeddings, seed {seed} (no text encoder)",
        thresholds=Thresholds(mask=0.5, score=0.0),  # random scores: report every prompt
        source={"kind": "random weights", "seed": seed},
        force=force,
    )
    return export_locate(tiny_locate_net(seed, dim), embeddings.astype(np.float32), request)
