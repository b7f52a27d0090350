"""benchmarks/gpu.sh stays working where there is no GPU: its CPU half (the reference every GPU
number is compared with) runs end to end, and the engine shapes it would give TensorRT are ones
`export tensorrt` accepts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

from export.tensorrt import BuildOptions, graph_inputs, parse_shape, profiles

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cpu_half(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    work = tmp_path_factory.mktemp("gpu-sh")
    done = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu.sh"), "--cpu-only", "--tiny", "--work", str(work)],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "PYTHON": sys.executable},
    )
    return done, work


def test_the_cpu_half_measures_every_model_and_both_reads(cpu_half):
    done, _ = cpu_half
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    for line in ("sam2 on cpu:", "locate on cpu:", "llm on cpu:", "llama on 0 GPU layers:"):
        assert line in done.stdout
    assert done.stdout.count("read on cpu:") == 2
    assert done.stdout.rstrip().endswith("the CUDA and TensorRT half is skipped")


def test_a_run_compared_with_itself_shows_no_difference(cpu_half):
    _, work = cpu_half
    lines = subprocess.run(
        [sys.executable, "-P", str(ROOT / "benchmarks" / "gpu_check.py"), "compare",
         str(work / "cpu-sam2.npz"), str(work / "cpu-sam2.npz"), "--label", "cpu"],
        capture_output=True, text=True, check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    ).stdout.splitlines()  # fmt: skip
    assert "cpu mask: IoU 1.0000 with CPU" in lines
    assert any(line.startswith("cpu logits: max |diff| 0 ") for line in lines)
    assert any(line.endswith("speed-up 1.00x") for line in lines)


@pytest.mark.parametrize("part", ["decoder", "vision"])
def test_the_llm_engine_shapes_are_ones_export_tensorrt_accepts(cpu_half, part):
    _, work = cpu_half
    args = subprocess.run(
        [sys.executable, "-P", str(ROOT / "benchmarks" / "gpu_check.py"), "trt-shapes",
         str(work / "onnx-llm"), part],
        capture_output=True, text=True, check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    ).stdout.split()  # fmt: skip
    path, shapes = Path(args[0]), dict(parse_shape(value) for value in args[2::2])
    inputs = graph_inputs(onnx.load(str(path), load_external_data=False))
    ranges = profiles(inputs, BuildOptions(shapes=shapes))
    dynamic = {i.name for i in inputs if i.dynamic}
    assert {r.name for r in ranges} == dynamic and dynamic  # every dynamic input has its range
