"""SAM2 → ONNX: two graphs, a manifest whose hashes hold, a check against PyTorch that passed."""

from __future__ import annotations

import json

import onnx
import pytest

from export.gguf import ExportError
from export.sam2_model import config_path
from imaging.checksum import sha256_file
from tests.support import run_cli


def test_export_writes_encoder_decoder_and_int8_encoder_with_hashes(sam_onnx):
    manifest = json.loads((sam_onnx / "manifest.json").read_text())
    roles = {entry["role"]: entry for entry in manifest["files"]}
    assert set(roles) == {"encoder", "decoder", "encoder-int8"}
    for entry in manifest["files"]:
        assert sha256_file(sam_onnx / entry["name"]) == entry["sha256"]
    assert manifest["source"]["sha256"] and not manifest["source"]["random_weights"]
    assert manifest["image"]["size"] == 256 and manifest["config"].endswith("sam2.1_hiera_t.yaml")
    decoder = onnx.load(sam_onnx / roles["decoder"]["name"], load_external_data=False)
    assert all(o.version >= 17 for o in decoder.opset_import if o.domain in ("", "ai.onnx"))
    boxes = next(i for i in decoder.graph.input if i.name == "boxes")
    count, corners = boxes.type.tensor_type.shape.dim
    assert count.dim_param and not count.dim_value and corners.dim_value == 4  # any number


def test_verification_compared_onnx_with_pytorch_within_tolerance(sam_onnx):
    verify = json.loads((sam_onnx / "verify.json").read_text())
    fp32, int8 = verify["results"]
    assert verify["passed"] and fp32["passed"] and int8["passed"]
    assert min(fp32["mask_iou"]) >= 0.99
    assert fp32["embedding_max_abs_diff"] <= 1e-3 * max(1.0, fp32["embedding_max_abs"])
    # int8 changes the numbers measurably but keeps the masks: the change is reported.
    assert int8["embedding_max_abs_diff"] > fp32["embedding_max_abs_diff"]
    assert min(int8["mask_iou"]) >= 0.8


def test_a_checkpoint_of_another_model_is_a_clear_error(sam_checkpoint, tmp_path):
    done = run_cli(
        "export",
        "onnx",
        "sam2",
        "--checkpoint",
        sam_checkpoint,
        "--config",
        "sam2.1_hiera_t",
        "--out",
        tmp_path / "out",
    )  # fmt: skip  (the tiny checkpoint does not fit the full-size config)
    assert done.returncode == 2
    assert "is not a SAM2 checkpoint for configs/sam2.1/sam2.1_hiera_t.yaml" in done.stderr
    assert not (tmp_path / "out").exists()


def test_config_names_resolve_to_the_packaged_configs():
    want = "configs/sam2.1/sam2.1_hiera_t.yaml"
    for name in ("sam2.1_hiera_t", "sam2.1/sam2.1_hiera_t", want):
        assert config_path(name) == want
    with pytest.raises(ExportError, match=r"unknown SAM2 config 'sam3_x'.*sam2\.1_hiera_l"):
        config_path("sam3_x")
