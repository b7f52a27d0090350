"""A read with a configured locate model: exported by `export tiny-locate`, run on ONNX Runtime
(CPU) by the protocol policy; a damaged model stops the command before the read starts."""

from __future__ import annotations

import json
from dataclasses import replace

from edge_agent.cli.config import load_config
from edge_agent.config import Config, PolicySettings, ReportSettings
from edge_agent.policies.protocol import ProtocolSettings
from edge_agent.read import read_study
from edge_agent.report.provenance import Provenance
from imaging.records import to_plain
from tests.support import run_cli
from tools.locate import METHOD, LocateSettings
from tools.onnx_runtime import RuntimeSettings
from tools.toolbox import ToolSettings


def config_with(model) -> Config:
    return Config(
        tools=ToolSettings(
            locate=LocateSettings(model=str(model)), runtime=RuntimeSettings(providers=("cpu",))
        ),
        policy=PolicySettings(protocol=ProtocolSettings(ct_captions=("liver", "hypodense region"))),
        report=ReportSettings(dicom=False),
    )


def test_a_protocol_read_locates_with_the_onnx_model_and_names_the_method(
    tiny_locate, sample_study, tmp_path
):
    result = read_study(sample_study, tmp_path / "out", config_with(tiny_locate))
    [step] = [s for s in result.trajectory.steps if s.tool == "locate"]
    methods = {c["method"] for c in to_plain(step.payload)["candidates"]}
    assert to_plain(step.payload)["candidates"], step.observation
    assert any(m.startswith("tiny-locate") and "ONNX Runtime cpu" in m for m in methods)
    assert (
        "tiny-locate" in to_plain(step.payload)["method"]
        and METHOD in to_plain(step.payload)["method"]
    )
    assert "tiny-locate" in step.observation  # the policy reads which method answered
    shown = next(i for i in result.trajectory.images if i.index == step.arguments["index"])
    for candidate in to_plain(step.payload)["candidates"]:
        x1, y1, x2, y2 = candidate["bbox_2d"]
        assert 0 <= x1 < x2 <= shown.width and 0 <= y1 < y2 <= shown.height
    saved = json.loads((tmp_path / "out" / "trajectory.json").read_text())
    [locate] = [s for s in saved["steps"] if s["tool"] == "locate"]
    manifest = json.loads((tiny_locate / "manifest.json").read_text())
    assert locate["payload"]["model"]["sha256"] == manifest["files"][0]["sha256"]
    assert result.report["findings"]  # the protocol went on to zoom, outline and measure
    statement = Provenance.of(result.trajectory).statement  # the SR's comment carries it
    assert (
        f"locate model {tiny_locate.name}/locate.onnx (SHA-256 {manifest['files'][0]['sha256']})"
        in statement
    )


def test_a_damaged_model_stops_read_serve_and_doctor_at_start_up(
    tiny_locate, sample_study, tmp_path
):
    damaged = tmp_path / "model"
    damaged.mkdir()
    for item in tiny_locate.iterdir():
        (damaged / item.name).write_bytes(item.read_bytes())
    graph = damaged / "locate.onnx"
    graph.write_bytes(graph.read_bytes()[: graph.stat().st_size // 2])
    config = tmp_path / "edge-agent.toml"
    config.write_text(
        f'[tools.locate]\nmodel = "{damaged}"\n[gateway]\nspool_dir = "{tmp_path / "spool"}"\n'
    )
    assert load_config(config).tools.locate == replace(LocateSettings(), model=str(damaged))
    out = tmp_path / "out"
    done = run_cli("read", sample_study, "--out", out, "--config", config)
    assert done.returncode == 2
    assert (
        "locate.onnx does not match the SHA-256 in its manifest" in done.stderr
        and "Traceback" not in done.stderr
    )
    assert not out.exists()  # nothing of a read was started
    done = run_cli("serve", "--config", config)  # the gateway never starts listening
    assert (
        done.returncode == 2
        and "locate.onnx does not match the SHA-256 in its manifest" in done.stderr
    )
    assert "edge-agent gateway" not in done.stderr
    done = run_cli("doctor", "--out", tmp_path, "--config", config)
    assert done.returncode == 1
    assert "tool models" in done.stdout.split("not ready:")[1]
