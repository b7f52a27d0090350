"""`export tensorrt`: its configuration derived from the graph (no TensorRT needed), and a clear
refusal on a machine without an NVIDIA GPU."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from export.gguf import ExportError
from export.tensorrt import (
    PLAN_FORMAT,
    BuildOptions,
    GraphInput,
    _Cuda,
    builder_flags,
    calibration_batches,
    default_timing_cache,
    graph_inputs,
    parse_shape,
    profiles,
    require_tensorrt,
    resolve_model,
    write_plan_record,
)
from imaging.errors import ModelLoadError
from imaging.model_folder import ModelFolder
from tests.support import run_cli
from tools.onnx_runtime import RuntimeSettings, provider_chain

IMAGE = GraphInput("image", ("batch", 3, "height", "width"), "float32")
TEXT = GraphInput("text_embedding", ("batch", 4, 32), "float32")


def locate_like_graph(path: Path) -> Path:
    """Inputs shaped like the locate contract, plus a weight that ONNX also lists as an input."""
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, "h", "w"])
    text = helper.make_tensor_value_info("text", TensorProto.FLOAT, ["batch", 4, 32])
    weight = numpy_helper.from_array(np.ones(1, np.float32), "weight")
    weight_input = helper.make_tensor_value_info("weight", TensorProto.FLOAT, [1])
    out = helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", 3, "h", "w"])
    node = helper.make_node("Mul", ["image", "weight"], ["out"])
    graph = helper.make_graph([node], "g", [image, text, weight_input], [out], [weight])
    onnx.save(helper.make_model(graph), path)
    return path


def test_graph_inputs_are_the_fed_ones_with_their_dynamic_axes(tmp_path):
    inputs = graph_inputs(onnx.load(locate_like_graph(tmp_path / "m.onnx")))
    assert inputs == (
        GraphInput("image", ("batch", 3, "h", "w"), "float32"),
        GraphInput("text", ("batch", 4, 32), "float32"),
    )
    assert inputs[0].dynamic == (0, 2, 3) and inputs[1].dynamic == (0,)


def test_a_batch_axis_gets_a_profile_up_to_max_batch_and_spatial_axes_need_a_shape():
    [text] = profiles([TEXT], BuildOptions(max_batch=8))
    assert (text.min, text.opt, text.max) == ((1, 4, 32), (1, 4, 32), (8, 4, 32))
    with pytest.raises(ExportError, match=r"'image'.*\['batch', 'height', 'width'\].*Nx3xNxN"):
        profiles([IMAGE, TEXT], BuildOptions())
    shapes = dict([parse_shape("image=1x3x64x64:1x3x512x512:2x3x1024x1024")])
    image, text = profiles([IMAGE, TEXT], BuildOptions(max_batch=2, shapes=shapes))
    assert image.opt == (1, 3, 512, 512) and image.max == (2, 3, 1024, 1024)
    assert text.max == (2, 4, 32)


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ("image=1x1x64x64", "axis 1 is fixed at 3"),
        ("image=1x3x64:1x3x64:1x3x64", "has 4 axes"),
        ("image=1x3x512x512:1x3x64x64:1x3x1024x1024", "min <= opt <= max"),
        ("mask=1x1x64x64", "names mask, not an input; inputs: image"),
    ],
)
def test_a_shape_that_does_not_fit_the_graph_is_refused(shape, message):
    with pytest.raises(ExportError, match=message):
        profiles([IMAGE], BuildOptions(shapes=dict([parse_shape(shape)])))


def test_shape_options_parse_or_say_how_to_write_them():
    assert parse_shape("image=1x3x64x64") == ("image", ((1, 3, 64, 64),) * 3)
    for bad in ("image", "image=1x3:4", "=1x3", "image=1xthree"):
        with pytest.raises(ExportError, match="--shape"):
            parse_shape(bad)


def test_precision_flags_follow_the_options(tmp_path):
    assert builder_flags(BuildOptions()) == ()
    assert builder_flags(BuildOptions(fp16=True)) == ("FP16",)
    assert builder_flags(BuildOptions(fp16=True, int8_calib=tmp_path)) == ("FP16", "INT8")
    with pytest.raises(ExportError, match="at least 1"):
        BuildOptions(workspace_mib=0)


def test_calibration_feeds_are_checked_against_the_profiles(tmp_path):
    [text] = profiles([TEXT], BuildOptions(max_batch=2))
    np.savez(tmp_path / "a.npz", text_embedding=np.zeros((1, 4, 32), np.float32))
    np.savez(tmp_path / "b.npz", text_embedding=np.zeros((2, 4, 32), np.float32))
    feeds = calibration_batches(tmp_path, [TEXT], [text])
    assert [f["text_embedding"].shape[0] for f in feeds] == [1, 2]
    np.savez(tmp_path / "c.npz", text_embedding=np.zeros((3, 4, 32), np.float32))
    with pytest.raises(ExportError, match=r"c.npz: text_embedding is float32 \[3, 4, 32\]"):
        calibration_batches(tmp_path, [TEXT], [text])
    np.savez(tmp_path / "c.npz", other=np.zeros(1))
    with pytest.raises(ExportError, match=r"c\.npz lacks text_embedding"):
        calibration_batches(tmp_path, [TEXT], [text])
    with pytest.raises(ExportError, match=r"no \.npz files"):
        calibration_batches(tmp_path / "empty", [TEXT], [text])


def test_the_timing_cache_is_the_one_onnx_runtimes_tensorrt_provider_uses(tmp_path):
    model = tmp_path / "locate.onnx"
    [(_, options)] = provider_chain(
        RuntimeSettings(("tensorrt",)), ["TensorrtExecutionProvider"], model
    )
    cache = default_timing_cache(model, (8, 9))
    assert cache.parent == Path(options["trt_timing_cache_path"])
    assert cache.name == "TensorrtExecutionProvider_cache_sm89.timing"


def test_a_locate_model_folder_is_built_for_the_one_shape_the_tool_feeds(tiny_locate, tmp_path):
    model, shapes = resolve_model(tiny_locate)
    assert model == tiny_locate / "locate.onnx"
    ranges = profiles(graph_inputs(onnx.load(model)), BuildOptions(shapes=shapes))
    assert {p.name: (p.min, p.max) for p in ranges} == {
        "image": ((1, 3, 64, 64), (1, 3, 64, 64)),
        "text_embedding": ((1, 4, 32), (1, 4, 32)),
    }
    with pytest.raises(ExportError, match=r"not a locate model folder.*give the \.onnx file"):
        resolve_model(tmp_path)


def test_the_plan_record_is_a_manifest_the_plan_is_checked_against(tmp_path):
    onnx_path = locate_like_graph(tmp_path / "g.onnx")
    plan = tmp_path / "engines" / "g.plan"
    plan.parent.mkdir()
    plan.write_bytes(b"serialized engine")  # what TensorRT would write; no GPU needed here
    options = BuildOptions(fp16=True, shapes={"image": ((1, 3, 16, 16),) * 3})
    ranges = profiles(graph_inputs(onnx.load(onnx_path)), options)
    record = write_plan_record(onnx_path, plan, options, ranges, (8, 9), tmp_path / "t.timing")
    assert record["plan"]["bytes"] == len(b"serialized engine")  # what the CLI prints
    read = ModelFolder.read(plan.with_name("g.plan.json"), PLAN_FORMAT)
    assert read.verified("plan") == plan and read.manifest.fields["compute_capability"] == "8.9"
    assert read.manifest.fields["flags"] == ["FP16"]
    plan.write_bytes(b"serialized engine, then changed")
    with pytest.raises(ModelLoadError, match=r"g\.plan does not match the SHA-256"):
        read.verified("plan")


@pytest.mark.skipif(_Cuda().available, reason="this machine has an NVIDIA GPU")
def test_export_tensorrt_without_a_gpu_exits_non_zero_and_says_why(tiny_locate, tmp_path):
    plan = tmp_path / "locate.plan"
    done = run_cli("export", "tensorrt", tiny_locate, "--out", plan, "--fp16")
    assert done.returncode == 2
    assert "needs an NVIDIA GPU" in done.stderr and "none was found" in done.stderr
    assert len(done.stderr.strip().splitlines()) <= 2 and "Traceback" not in done.stderr
    assert not plan.exists()


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="tensorrt installed")
def test_a_missing_tensorrt_package_names_the_extra_to_install():
    with pytest.raises(ExportError, match=r"edge-agent\[gpu\]"):
        require_tensorrt()
