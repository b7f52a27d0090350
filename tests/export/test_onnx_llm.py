"""HF checkpoint -> ONNX text decoder with KV cache -> verified against transformers."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest

from edge_agent.onnx_decoder import OnnxDecoder
from tests.support import run_cli
from tools.onnx_runtime import ModelLoadError, RuntimeSettings


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
