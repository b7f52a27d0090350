"""Hugging Face Qwen2.5-VL checkpoint -> ONNX text decoder with KV cache + vision encoder, for the
onnx_trt policy.

optimum-onnx (0.1.0) has no Qwen2-VL / Qwen2.5-VL config and pins transformers < 4.58, while the
GGUF path needs transformers 5; so both are exported here with torch.onnx (dynamo). The decoder
uses optimum's names, which ONNX Runtime GenAI and transformers.js also read, plus image_embeds:

    input_ids (batch, seq) int64, attention_mask (batch, past + seq) int64,
    position_ids (3, batch, seq) int64 -- M-RoPE rows t, h, w (equal for text),
    image_embeds (image tokens, hidden) float32 -- one row per <|image_pad|> in input_ids,
    past_key_values.N.key / .value (batch, kv_heads, past, head_dim) float32
    -> logits (batch, seq, vocab), present.N.key / .value (batch, kv_heads, past + seq, head_dim)

One graph serves the first turn (past of length 0) and every later one. The vision encoder takes
the patches and the grid-derived inputs listed in export.vision_encoder.INPUTS."""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import logging
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edge_agent.onnx_decoder import FORMAT, DecoderShape
from export.gguf import DEFAULT_PROFILE, ExportError, check_checkpoint, prepare_out_dir, timed
from imaging.model_folder import MANIFEST, ModelFolder, checkpoint_record

log = logging.getLogger(__name__)

ARCHITECTURE = "Qwen2_5_VLForConditionalGeneration"
DECODER = "decoder_model_merged.onnx"
VISION_FILE = "vision_encoder.onnx"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")
OPSET = 18

Stage = Callable[[str], None]


@dataclass(frozen=True)
class OnnxLlmRequest:
    hf_dir: Path
    out_dir: Path
    force: bool = False
    profile: str = DEFAULT_PROFILE  # the prompt profile the manifest names


def export_onnx_llm(request: OnnxLlmRequest, stage: Stage = lambda name: None) -> dict:
    """Export the decoder, copy the tokenizer, hash; returns the manifest (also manifest.json)."""
    config = check_checkpoint(request.hf_dir)
    if ARCHITECTURE not in config["architectures"]:
        raise ExportError(
            f"export onnx-llm supports {ARCHITECTURE}, not {', '.join(config['architectures'])}"
        )
    if not (request.hf_dir / "tokenizer.json").is_file():
        raise ExportError(f"{request.hf_dir} has no tokenizer.json (a fast tokenizer)")
    prepare_out_dir(request.out_dir, request.force)
    try:
        stage("loading the checkpoint")
        model = _load(request.hf_dir)
        shape = decoder_shape(model.config.text_config)
        stage("exporting the text decoder with KV cache")
        timings = {"export_decoder_s": timed(lambda: _export_decoder(model, shape, request))}
        stage("exporting the vision tower")
        timings["export_vision_s"] = timed(lambda: _export_vision(model, request.out_dir))
        for name in TOKENIZER_FILES:
            if (request.hf_dir / name).is_file():
                shutil.copy2(request.hf_dir / name, request.out_dir / name)
        stage("hashing")
        folder = _write_manifest(request, config, shape, timings)
    except BaseException:
        shutil.rmtree(request.out_dir, ignore_errors=True)  # no partial export is left behind
        raise
    return folder.manifest.to_plain()


def _load(hf_dir: Path):
    from export.reference import load_hf

    try:
        return load_hf(hf_dir)
    except (OSError, ValueError) as exc:
        raise ExportError(f"transformers cannot load {hf_dir}: {exc}") from None


def _export_decoder(model, shape: DecoderShape, request: OnnxLlmRequest) -> None:
    import torch

    from export.text_decoder import TextDecoder

    batch, seq, past, images = 1, 4, 2, 2  # example sizes; every axis below is dynamic
    image_token = model.config.image_token_id
    example = (
        torch.tensor([[0, image_token, image_token, 0]]),
        torch.ones(batch, past + seq, dtype=torch.int64),
        torch.arange(past, past + seq).view(1, 1, seq).expand(3, batch, seq).contiguous(),
        torch.zeros(images, model.config.text_config.hidden_size),
        tuple(torch.zeros(batch, shape.kv_heads, past, shape.head_dim) for _ in shape.past_names()),
    )
    cache_axes = {0: "batch_size", 2: "past_sequence_length"}
    dynamic = (
        {0: "batch_size", 1: "sequence_length"},
        {0: "batch_size", 1: "total_sequence_length"},
        {1: "batch_size", 2: "sequence_length"},
        {0: "image_tokens"},
        tuple(cache_axes for _ in shape.past_names()),
    )
    _to_onnx(
        TextDecoder(model, shape),
        example,
        request.out_dir / DECODER,
        ["input_ids", "attention_mask", "position_ids", "image_embeds", *shape.past_names()],
        ["logits", *shape.present_names()],
        dynamic,
    )


def _export_vision(model, out_dir: Path) -> None:
    """The vision tower on an example 8x8-patch image; every axis is dynamic."""
    import torch

    from export.vision_encoder import INPUTS, VisionEncoder

    visual = model.model.visual
    config = visual.config
    patch = config.in_channels * config.temporal_patch_size * config.patch_size**2
    example = (
        torch.zeros(64, patch),
        torch.zeros(64, 2, dtype=torch.int64),
        torch.arange(64 // config.spatial_merge_size**2),
        torch.tensor([0, 64]),
        torch.tensor([0, 64]),
    )
    dynamic = ({0: "patches"}, {0: "patches"}, {0: "merged_patches"}, {0: "images"}, {0: "windows"})
    _to_onnx(
        VisionEncoder(visual), example, out_dir / VISION_FILE, INPUTS, ["image_embeds"], dynamic
    )


def _to_onnx(module, example: tuple, target: Path, inputs, outputs, dynamic: tuple) -> None:
    import torch

    with torch.no_grad(), _quiet():
        torch.onnx.export(
            module.eval(),
            example,
            str(target),
            input_names=list(inputs),
            output_names=list(outputs),
            dynamic_shapes=dynamic,
            opset_version=OPSET,
            dynamo=True,
            external_data=True,  # weights beside the graph: a 7B is far past protobuf's 2 GiB
            verbose=False,
        )
    if not target.is_file():
        raise ExportError(f"torch.onnx wrote no {target.name}")


@contextlib.contextmanager
def _quiet():
    """torch.onnx warns about torchvision ops and axis names it merges: nothing to act on."""
    onnx_log = logging.getLogger("torch.onnx")
    level = onnx_log.level
    onnx_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=UserWarning)
            warnings.simplefilter("ignore", category=FutureWarning)
            yield
    finally:
        onnx_log.setLevel(level)


def decoder_shape(text_config) -> DecoderShape:
    return DecoderShape(
        layers=text_config.num_hidden_layers,
        kv_heads=text_config.num_key_value_heads,
        head_dim=getattr(text_config, "head_dim", None)
        or text_config.hidden_size // text_config.num_attention_heads,
        vocab=text_config.vocab_size,
    )


def _write_manifest(
    request: OnnxLlmRequest, config: dict, shape: DecoderShape, timings: dict
) -> ModelFolder:
    files = sorted(p.name for p in request.out_dir.iterdir() if p.is_file() and p.name != MANIFEST)
    text = config.get("text_config", config)
    return ModelFolder.write(
        request.out_dir,
        format=FORMAT,
        roles={name: _role(name) for name in files},
        source=checkpoint_record(request.hf_dir),
        versions={name: _version(name) for name in ("torch", "transformers", "onnx")},
        profile=request.profile,
        fields={
            "architecture": config["architectures"][0],
            "decoder": {
                "file": DECODER,
                "dtype": "float32",
                "opset": OPSET,
                "layers": shape.layers,
                "kv_heads": shape.kv_heads,
                "head_dim": shape.head_dim,
                "vocab": shape.vocab,
                "hidden_size": text["hidden_size"],
                "position_ids": "(3, batch, seq): M-RoPE t, h, w; equal rows for text",
                "eos_token_ids": _as_list(text.get("eos_token_id")),
                "context_length": text.get("max_position_embeddings"),
            },
            "vision": vision_record(request.hf_dir, config),
            "timings": {name: round(seconds, 2) for name, seconds in timings.items()},
        },
    )


def vision_record(hf_dir: Path, config: dict) -> dict:
    """What the runtime needs to turn an image into the encoder's inputs (VisionSpec)."""
    processor = json.loads((hf_dir / "preprocessor_config.json").read_text())
    size = processor.get("size") or {}
    vision = config["vision_config"]
    return {
        "file": VISION_FILE,
        "spec": {
            "patch_size": vision["patch_size"],
            "merge_size": vision["spatial_merge_size"],
            "temporal_patch_size": vision["temporal_patch_size"],
            "window_size": vision["window_size"],
            "min_pixels": size.get("shortest_edge") or processor.get("min_pixels") or 56 * 56,
            "max_pixels": size.get("longest_edge") or processor.get("max_pixels") or 28 * 28 * 1280,
            "mean": processor["image_mean"],
            "std": processor["image_std"],
        },
        "image_token_id": config["image_token_id"],
        "vision_start_token_id": config["vision_start_token_id"],
        "vision_end_token_id": config["vision_end_token_id"],
    }


def _role(name: str) -> str:
    for stem, role in ((DECODER, "decoder"), (VISION_FILE, "vision")):
        if name.startswith(stem):
            return role if name == stem else f"{role}_weights"
    return "tokenizer"


def _as_list(value) -> list[int]:
    if value is None:
        return []
    return [int(v) for v in value] if isinstance(value, list) else [int(value)]


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "missing"
