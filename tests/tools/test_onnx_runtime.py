"""The ONNX Runtime owner: provider fall-back is reported, a corrupt model fails at start-up."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from imaging.errors import ModelLoadError
from tools.onnx_runtime import OnnxModel, RuntimeSettings, provider_chain


def doubling_model(path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n"])
    node = helper.make_node("Add", ["x", "x"], ["y"])
    graph = helper.make_graph([node], "double", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_unavailable_providers_fall_back_to_cpu_and_the_one_that_ran_is_reported(tmp_path):
    model = OnnxModel(
        doubling_model(tmp_path / "m.onnx"), RuntimeSettings(("tensorrt", "cuda", "cpu"))
    )
    assert model.provider == "cpu"
    assert model.run({"x": np.array([1.5], np.float32)})["y"].tolist() == [3.0]
    model.close()


def test_tensorrt_options_carry_the_engine_cache(tmp_path):
    available = ["TensorrtExecutionProvider", "CPUExecutionProvider"]
    chain = provider_chain(
        RuntimeSettings(trt_engine_cache=str(tmp_path)), available, tmp_path / "m"
    )
    assert [p for p, _ in chain] == ["TensorrtExecutionProvider", "CPUExecutionProvider"]
    assert chain[0][1]["trt_engine_cache_path"] == str(tmp_path)


def test_no_configured_provider_available_is_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="none of the configured providers"):
        OnnxModel(doubling_model(tmp_path / "m.onnx"), RuntimeSettings(("cuda",)))


def test_a_corrupt_model_fails_when_opened(tmp_path):
    path = doubling_model(tmp_path / "m.onnx")
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(ModelLoadError, match="not a loadable ONNX model"):
        OnnxModel(path)
    with pytest.raises(ModelLoadError, match="does not exist"):
        OnnxModel(tmp_path / "missing.onnx")


def test_unknown_provider_names_are_refused():
    with pytest.raises(ValueError, match="providers"):
        RuntimeSettings(("tpu",))
