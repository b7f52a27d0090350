"""HF checkpoint -> ONNX text decoder with KV cache -> verified against transformers."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest

from edge_agent.onnx_decoder import OnnxDecoder
from tests.support import run_cli
from tools.onnx_runtime import ModelLoadError, RuntimeSettings


def test_the_decoder_matches_transformers_with_and_without_the_cache(onnx_llm):
    report = json.loads((onnx_llm / "verify.json").read_text())
    by_name = {r["name"]: r for r in report["results"]}
    assert report["passed"] and set(by_name) == {"onnx (no cache)", "onnx (cache)"}
    for result in by_name.values():
        # float32 on both sides: only the order of operations differs
        assert result["cosine"] >= 0.99999 and result["max_abs"] < 1e-4, result
        assert result["top1"] == 1.0 and result["positions"] >= 40


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
    assert manifest["vision"]["exported"] is False
    assert "vision attention" in manifest["vision"]["reason"]
    decoder = OnnxDecoder(onnx_llm, RuntimeSettings(providers=("cpu",)))
    try:
        inputs = decoder.model.input_names
        assert inputs[:3] == ("input_ids", "attention_mask", "position_ids")
        assert inputs[3:] == tuple(decoder.shape.past_names())
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
    assert [r["passed"] for r in report["results"]] == [False, False]
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
