"""segment through ONNX Runtime: one embedding per image, a mask per box, the method named."""

from __future__ import annotations

import gc
import json
import shutil

import numpy as np
import pytest

from imaging.errors import ModelLoadError
from imaging.records import to_plain
from tests.support import disc, phantom_frame
from tools.onnx_runtime import RuntimeSettings
from tools.sam_onnx import SamOnnx
from tools.segment import ModelSegmenter, SegmentSettings
from tools.toolbox import ToolSettings, default_toolbox
from tools.workspace import Workspace

CPU = RuntimeSettings(("cpu",))
SPACING = (0.7, 0.7)


def settings(model, encoder: str = "fp32") -> ToolSettings:
    return ToolSettings(segment=SegmentSettings(str(model), encoder), runtime=CPU)


def phantom() -> Workspace:
    values = disc((200, 240), (100, 120), 20, SPACING, 60.0, -20.0)
    ws = Workspace()
    ws.show(phantom_frame(values, SPACING))
    return ws


@pytest.fixture
def workspace() -> Workspace:
    return phantom()


def test_segment_runs_the_onnx_model_on_cpu_and_says_so(sam_onnx, workspace):
    toolbox = default_toolbox(settings(sam_onnx))
    try:
        said = toolbox.call("segment", {"index": 0, "bbox_2d": [80, 60, 160, 140]}, workspace)
    finally:
        toolbox.close()
    method = "sam2.1_hiera_t on ONNX Runtime (fp32 encoder, cpu)"
    assert to_plain(said.payload)["method"] == method and method in said.text
    # The mask is the model's: the same as decoding the box directly, carried to the source grid.
    model = SamOnnx(sam_onnx, CPU)
    image = workspace.get(0)
    masks, scores = model.masks(model.embed(image.pixels), np.array([[80, 60, 160, 140]]))
    model.close()
    assert masks[0].any() and to_plain(said.payload)["score"] == round(float(scores[0]), 3)
    assert np.array_equal(said.image.mask, image.mask_to_source(masks[0]))


def test_each_image_is_embedded_once_per_read(sam_onnx):
    workspace = phantom()
    model = SamOnnx(sam_onnx, CPU)
    segmenter = ModelSegmenter(model)
    first, _ = segmenter(workspace.get(0), (80, 60, 160, 140), workspace)
    embedding = segmenter.embedded(workspace)[0]
    second, _ = segmenter(workspace.get(0), (20, 20, 120, 100), workspace)
    assert segmenter.embedded(workspace)[0] is embedding  # reused for the second box
    assert not np.array_equal(first, second)
    del workspace
    gc.collect()
    assert len(segmenter._cache) == 0  # the read is over: its embeddings are gone
    model.close()


def test_the_int8_encoder_is_chosen_by_config(sam_onnx, workspace):
    toolbox = default_toolbox(settings(sam_onnx, "int8"))
    said = toolbox.call("segment", {"index": 0, "bbox_2d": [80, 60, 160, 140]}, workspace)
    toolbox.close()
    assert to_plain(said.payload)["method"] == "sam2.1_hiera_t on ONNX Runtime (int8 encoder, cpu)"


def test_without_a_model_the_weight_free_method_runs_and_is_named(workspace):
    said = default_toolbox().call("segment", {"index": 0, "bbox_2d": [80, 60, 160, 140]}, workspace)
    assert to_plain(said.payload)["method"] in (
        "grabcut (weight-free)",
        "otsu threshold (weight-free fallback: GrabCut found no foreground)",
    )


def test_a_damaged_model_fails_when_the_toolbox_is_built(sam_onnx, tmp_path):
    copy = shutil.copytree(sam_onnx, tmp_path / "model")
    encoder = copy / "encoder.onnx"
    encoder.write_bytes(encoder.read_bytes()[:1000])
    with pytest.raises(ModelLoadError, match=r"encoder\.onnx does not match the SHA-256"):
        default_toolbox(settings(copy))
    encoder.unlink()
    with pytest.raises(ModelLoadError, match=r"encoder\.onnx does not exist"):
        default_toolbox(settings(copy))
    with pytest.raises(ModelLoadError, match=r"no manifest\.json"):
        default_toolbox(settings(tmp_path / "elsewhere"))


def test_an_unknown_encoder_kind_is_refused():
    with pytest.raises(ValueError, match="encoder must be one of fp32, int8"):
        SegmentSettings("model", "int4")


def test_int8_asked_of_an_export_without_it_is_a_clear_error(sam_onnx, tmp_path):
    copy = shutil.copytree(sam_onnx, tmp_path / "model")
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["files"] = [f for f in manifest["files"] if f["role"] != "encoder-int8"]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelLoadError, match=r"has no encoder-int8 \(it has: encoder, decoder\)"):
        default_toolbox(settings(copy, "int8"))
