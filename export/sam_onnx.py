"""SAM2 checkpoint → two ONNX graphs (+ an int8 encoder), a manifest with hashes, and a check.

The interface the segment tool runs is SAM2's image predictor cut in two: the image encoder
(run once per image) and the prompt encoder + mask decoder (run per box, any number of boxes).
The model is built from the `sam2` package's own configs, so the graphs compute what
`SAM2ImagePredictor` computes for a box prompt with a single mask output."""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from export.gguf import ExportError, prepare_out_dir, timed
from export.sam2_model import BoxDecoder, ImageEncoder, build_sam2_model, config_path
from export.sam_onnx_verify import verify_sam2
from imaging.model_folder import ModelFolder, checkpoint_record
from tools.sam_onnx import BOXES_INPUT, DECODER_OUTPUTS, EMBEDDINGS, IMAGE_INPUT, MANIFEST_FORMAT

log = logging.getLogger(__name__)

OPSET = 18  # the exporter's native opset (≥ 17); no version conversion step
MAX_BOXES = 64  # upper bound of the decoder's dynamic box axis
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # SAM2's transforms
# Hiera's attention and MLP matmuls hold most of the encoder's time and weights. Convolutions stay
# fp32: quantizing them too was within noise on CPU (3.6 vs 3.8 s for sam2.1_hiera_t at 1024).
INT8_OPS = ("MatMul",)
FILES = {"encoder": "encoder.onnx", "decoder": "decoder.onnx", "encoder-int8": "encoder-int8.onnx"}

Stage = Callable[[str], None]


@dataclass(frozen=True)
class Sam2Export:
    manifest: dict  # also in OUT/manifest.json
    verify: dict  # also in OUT/verify.json; "passed" is False when a tolerance failed


@dataclass(frozen=True)
class Sam2Request:
    config: str  # a sam2 config: "sam2.1_hiera_t", "sam2.1/sam2.1_hiera_t" or its yaml path
    checkpoint: Path | None  # a SAM2 .pt ({"model": state_dict}); None = random weights
    out_dir: Path
    int8: bool = False
    overrides: tuple[str, ...] = ()  # hydra overrides, e.g. "++model.image_size=512"
    force: bool = False


def export_sam2(request: Sam2Request, stage: Stage = lambda name: None) -> Sam2Export:
    """Build, export, quantize, hash, then check the files against PyTorch on probe inputs."""
    stage(f"building SAM2 from {request.config}")
    model = build_sam2_model(request.config, request.checkpoint, request.overrides)
    prepare_out_dir(request.out_dir, request.force)
    try:
        timings = {}
        encoder, decoder = ImageEncoder(model), BoxDecoder(model)
        stage("exporting the image encoder")
        timings["encoder_s"] = timed(lambda: export_encoder(encoder, request.out_dir))
        stage("exporting the prompt encoder + mask decoder")
        timings["decoder_s"] = timed(lambda: export_decoder(encoder, decoder, request.out_dir))
        if request.int8:
            stage("quantizing the encoder to int8 (dynamic)")
            timings["int8_s"] = timed(lambda: quantize_encoder(request.out_dir))
        stage("hashing")
        folder = _write_manifest(request, model, timings)
    except BaseException:
        shutil.rmtree(request.out_dir, ignore_errors=True)  # no partial export is left behind
        raise
    stage("verifying against PyTorch on probe inputs")
    return Sam2Export(folder.manifest.to_plain(), verify_sam2(request.out_dir, encoder, decoder))


def export_encoder(encoder: ImageEncoder, out_dir: Path) -> None:
    probe = torch.zeros(1, 3, encoder.side, encoder.side)
    _onnx_export(encoder, (probe,), out_dir / FILES["encoder"], [IMAGE_INPUT], list(EMBEDDINGS))


def export_decoder(encoder: ImageEncoder, decoder: BoxDecoder, out_dir: Path) -> None:
    with torch.no_grad():
        embeddings = encoder(torch.zeros(1, 3, encoder.side, encoder.side))
    boxes = torch.tensor([[0.1, 0.1, 0.6, 0.7], [0.3, 0.2, 0.9, 0.8]]) * encoder.side
    count = torch.export.Dim("boxes", min=1, max=MAX_BOXES)
    _onnx_export(
        decoder,
        (*embeddings, boxes),
        out_dir / FILES["decoder"],
        [*EMBEDDINGS, BOXES_INPUT],
        list(DECODER_OUTPUTS),
        dynamic_shapes=({}, {}, {}, {0: count}),
    )


def _onnx_export(module, args, path: Path, inputs, outputs, dynamic_shapes=None) -> None:
    # The exporter reports its progress with print(); keep the CLI's own output readable.
    with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()) as said:
        try:
            torch.onnx.export(
                module,
                args,
                str(path),
                input_names=inputs,
                output_names=outputs,
                opset_version=OPSET,
                dynamo=True,
                external_data=False,
                dynamic_shapes=dynamic_shapes,
            )
        except Exception as exc:  # the exporter raises many types; the cause is in the text
            log.debug("exporter output:\n%s", said.getvalue())
            raise ExportError(f"ONNX export of {path.name} failed: {exc}") from exc
    log.debug("exporter output:\n%s", said.getvalue())


def quantize_encoder(out_dir: Path) -> None:
    """ONNX Runtime dynamic quantization: int8 weights, activations quantized per call."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        out_dir / FILES["encoder"],
        out_dir / FILES["encoder-int8"],
        weight_type=QuantType.QInt8,
        op_types_to_quantize=list(INT8_OPS),
    )


def _write_manifest(request: Sam2Request, model, timings: dict[str, float]) -> ModelFolder:
    return ModelFolder.write(
        request.out_dir,
        format=MANIFEST_FORMAT,
        roles={name: role for role, name in FILES.items() if (request.out_dir / name).is_file()},
        source=checkpoint_record(request.checkpoint),
        versions={
            name: importlib.metadata.version(name)
            for name in ("torch", "onnx", "onnxruntime", "sam2")
        },
        fields={
            "model": config_path(request.config).split("/")[-1].removesuffix(".yaml"),
            "architecture": "SAM2 (sam2 package): image encoder | prompt encoder + mask decoder",
            "config": config_path(request.config),
            "overrides": list(request.overrides),
            "image": {
                "size": int(model.image_size),
                "mean": list(IMAGENET_MEAN),
                "std": list(IMAGENET_STD),
                "resize": "bilinear to size x size (aspect not kept), as SAM2's transforms",
            },
            "decoder": {"boxes": f"1..{MAX_BOXES}", "mask_threshold": 0.0},
            "int8": {"method": "onnxruntime dynamic", "ops": list(INT8_OPS)}
            if request.int8
            else None,
            "opset": OPSET,
            "timings": {k: round(v, 2) for k, v in timings.items()},
        },
    )
