"""HF checkpoint -> ONNX text decoder with KV cache -> verified against transformers."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest

from edge_agent.onnx_decoder import OnnxDecoder
from imaging.errors import ModelLoadError
from tests.support import run_cli
from tools.onnx_runtime import RuntimeSettings


def test_the_onnx_models_match_transformers_text_vision_and_an_image_prompt(onnx_llm):
    report = json.loads((onnx_llm / "verify.json").read_text())
    by_name = {r["name"]: r for r in report["results"]}
    assert report["passed"] and set(by_name) == {
        "onnx (no cache)",
        "onnx (cache)",
        "onnx vision",
        "onnx (image + text)",
    }
    for result in by_name.values():
        # float32 on both sides: only the order of operations differs. 1e-5 is also below what
        # text positions instead of M-RoPE ones give for the image prompt on this model (1.3e-4).
        assert result["cosine"] >= 0.99999 and result["max_abs"] < 1e-5, result
    for name in ("onnx (no cache)", "onnx (cache)", "onnx (image + text)"):
        assert by_name[name]["top1"] == 1.0 and by_name[name]["positions"] >= 40
    assert by_name["onnx vision"]["tokens"] == 16 + 32  # a square and a wide image


def test_the_manifest_hashes_every_file_and_names_the_io(onnx_llm, tiny):
    manifest = json.loads((onnx_llm / "manifest.json").read_text())
    for entry in manifest["files"]:
        data = (onnx_llm / entry["name"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"] and len(data) == entry["bytes"]
    roles = {entry["name"]: entry["role"] for entry in manifest["files"]}
    assert roles["decoder_model_merged.onnx"] == "decoder"
    assert roles["tokenizer.json"] == "tokenizer"
    source = {f["name"]: f["sha256"] for f in manifest["source"]["files"]}
    assert (
        source["model.safetensors"]
        == hashlib.sha256((tiny / "model.safetensors").read_bytes()).hexdigest()
    )
    assert roles["vision_encoder.onnx"] == "vision"
    assert manifest["vision"]["file"] == "vision_encoder.onnx"
    assert manifest["vision"]["spec"]["merge_size"] == 2
    decoder = OnnxDecoder(onnx_llm, RuntimeSettings(providers=("cpu",)))
    try:
        inputs = decoder.model.input_names
        assert inputs[:4] == ("input_ids", "attention_mask", "position_ids", "image_embeds")
        assert inputs[4:] == tuple(decoder.shape.past_names())
        assert decoder.model.output_names == ("logits", *decoder.shape.present_names())
        assert decoder.shape.layers == 2 and decoder.provider == "cpu"
    finally:
        decoder.close()


def test_verify_fails_against_a_different_checkpoint(onnx_llm, tmp_path):
    from export.tiny_vlm import build_tiny_vlm
    from export.verify import verify

    other = build_tiny_vlm(tmp_path / "other", seed=1)
    copy = tmp_path / "onnx"
    shutil.copytree(onnx_llm, copy)
    report = verify(copy, other)  # `export verify` dispatches on the manifest's format
    assert report["passed"] is False
    assert not any(r["passed"] for r in report["results"])
    assert json.loads((copy / "verify.json").read_text())["passed"] is False


def test_a_changed_decoder_file_is_refused(onnx_llm, tmp_path):
    copy = tmp_path / "onnx"
    shutil.copytree(onnx_llm, copy)
    weights = copy / "decoder_model_merged.onnx.data"
    data = bytearray(weights.read_bytes())
    data[100] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match="does not match the SHA-256"):
        OnnxDecoder(copy, RuntimeSettings(providers=("cpu",)))


def test_a_folder_without_a_checkpoint_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    done = run_cli("export", "onnx-llm", tmp_path / "empty", "--out", tmp_path / "out")
    assert done.returncode == 2 and "no config.json" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "out").exists()


def test_an_incomplete_manifest_is_refused(onnx_llm, tmp_path):
    copy = tmp_path / "onnx"
    shutil.copytree(onnx_llm, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    del manifest["decoder"]["kv_heads"]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelLoadError, match=r"manifest\.json is incomplete: KeyError"):
        OnnxDecoder(copy, RuntimeSettings(providers=("cpu",)))


@pytest.mark.parametrize(("height", "width"), [(112, 224), (100, 150), (512, 512), (300, 90)])
def test_the_runtime_prepares_images_as_transformers_does(tiny, height, width):
    """numpy (runtime) vs the checkpoint's image processor and transformers' index helpers,
    resized sizes included."""
    import numpy as np
    from PIL import Image
    from transformers import AutoImageProcessor
    from transformers.vision_utils import get_vision_position_ids, get_vision_window_index

    from edge_agent.vision_inputs import VisionSpec, image_inputs
    from export.onnx_llm import vision_record

    spec = VisionSpec.from_record(
        vision_record(tiny, json.loads((tiny / "config.json").read_text()))["spec"]
    )
    image = np.random.default_rng(height).integers(0, 256, (height, width, 3), dtype=np.uint8)
    want = AutoImageProcessor.from_pretrained(tiny)(
        images=[Image.fromarray(image)], return_tensors="pt"
    )
    got, grid = image_inputs(image, spec)
    assert [list(grid)] == want["image_grid_thw"].tolist()
    assert np.array_equal(got["pixel_values"], want["pixel_values"].numpy())
    thw = want["image_grid_thw"]
    assert np.array_equal(got["position_ids"], get_vision_position_ids(thw, 2).numpy())
    window_index, bounds = get_vision_window_index(thw, 2, spec.window_size, 14)
    assert np.array_equal(got["window_index"], window_index.numpy())
    assert np.array_equal(got["cu_window_seqlens"], bounds.numpy())


def test_image_positions_follow_transformers_rope_index(tiny):
    import numpy as np
    import torch

    from edge_agent.vision_inputs import mrope_positions
    from export.reference import load_hf

    model = load_hf(tiny)
    pad = model.config.image_token_id
    grids = [(1, 8, 16), (1, 12, 8)]
    ids = [1, 5, 9, *[pad] * 32, 10, 7, 9, *[pad] * 24, 10, 8]
    tokens = torch.tensor([ids])
    want, _ = model.model.get_rope_index(
        tokens, (tokens == pad).to(torch.int32), image_grid_thw=torch.tensor(grids)
    )
    assert np.array_equal(mrope_positions(ids, 0, pad, grids, 2), want[:, 0].numpy())
