"""A read with a configured segment model: masks come from ONNX Runtime and the record says so."""

from __future__ import annotations

import json
import shutil

import pydicom

from tests.support import run_cli


def config_file(folder, model) -> str:
    path = folder / "edge-agent.toml"
    path.write_text(
        f'[tools.segment]\nmodel = "{model}"\n[tools.runtime]\nproviders = ["cpu"]\n'
        f'[gateway]\nspool_dir = "{folder / "spool"}"\n'
    )
    return str(path)


def test_read_segments_through_the_onnx_model(sample_study, sam_onnx, tmp_path):
    out = tmp_path / "out"
    done = run_cli("read", sample_study, "--out", out, "--config", config_file(tmp_path, sam_onnx))
    assert done.returncode == 0, done.stderr
    steps = json.loads((out / "trajectory.json").read_text())["steps"]
    segmented = [step for step in steps if step["tool"] == "segment"]
    manifest = json.loads((sam_onnx / "manifest.json").read_text())
    hashes = {f["name"]: f["sha256"] for f in manifest["files"] if "int8" not in f["name"]}
    assert segmented
    for step in segmented:
        assert step["payload"]["method"] == "sam2.1_hiera_t on ONNX Runtime (fp32 encoder, cpu)"
        assert "method: sam2.1_hiera_t on ONNX Runtime" in step["observation"]
        assert step["payload"]["model"]["files"] == hashes  # which files made the mask
    sr = pydicom.dcmread(out / "dicom" / "sr.dcm")
    statement = [i.TextValue for i in sr.ContentSequence if i.ValueType == "TEXT"][-1]
    assert f"segment model out/encoder.onnx (SHA-256 {hashes['encoder.onnx']})" in statement


def test_a_damaged_segment_model_stops_the_read_before_it_starts(sample_study, sam_onnx, tmp_path):
    model = shutil.copytree(sam_onnx, tmp_path / "model")
    (model / "decoder.onnx").write_bytes(b"not an onnx file")
    out = tmp_path / "out"
    done = run_cli("read", sample_study, "--out", out, "--config", config_file(tmp_path, model))
    assert done.returncode == 2
    assert "decoder.onnx does not match the SHA-256 in its manifest" in done.stderr
    assert "Traceback" not in done.stderr and not (out / "trajectory.json").exists()
    doctor = run_cli("doctor", "--out", tmp_path, "--config", config_file(tmp_path, model))
    assert doctor.returncode == 1 and "tool models" in doctor.stdout.split("not ready:")[1]
