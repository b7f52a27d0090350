"""The `edge-agent` command as a user runs it: a real process, real files, exit codes."""

from __future__ import annotations

import html
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest

from tests.support import bundled, console_script, run_cli


@pytest.fixture
def read_out(sample_study: Path, tmp_path: Path) -> Path:
    out = tmp_path / "out"
    done = run_cli("read", sample_study, "--out", out)
    assert done.returncode == 0, done.stderr
    assert "Protocol demonstration (no AI model)" in done.stdout
    assert "locate(" in done.stdout  # the live view printed the steps
    return out


def test_read_writes_a_report_every_claim_of_which_has_evidence(sample_study, read_out):
    report = json.loads((read_out / "report.json").read_text())
    ct_files = [pydicom.dcmread(p, stop_before_pixels=True) for p in sample_study.glob("CT*")]
    ct_uids = {ds.SOPInstanceUID for ds in ct_files}
    assert report["study_instance_uid"] == ct_files[0].StudyInstanceUID
    assert report["series_instance_uid"] == ct_files[0].SeriesInstanceUID
    assert report["policy"] == "protocol" and report["model"] is None
    assert "Not a diagnosis" in report["disclaimer"]
    assert report["answer"].startswith("Protocol demonstration (no AI model).")
    assert report["findings"], "the sample CT has hyperdense candidates"
    for finding in report["findings"]:
        assert finding["text"] and finding["evidence"]
        for evidence in finding["evidence"]:
            assert (read_out / evidence["image"]).read_bytes()[:4] == b"\x89PNG"
            assert evidence["source"]["sop_instance_uid"] in ct_uids
            assert evidence["source"]["frame"] == 1
            x1, y1, x2, y2 = evidence["bbox_px"]
            assert 0 <= x1 < x2 <= 128 and 0 <= y1 < y2 <= 128
        units = {m["name"]: m["unit"] for m in finding["measurements"]}
        area = next(m["value"] for m in finding["measurements"] if m["name"] == "area")
        assert area > 100, "the candidates (vertebral body, aorta) are hundreds of mm², not specks"
        assert units == {"area": "mm2", "long axis": "mm", "mean": "[hnsf'U]", "SD": "[hnsf'U]"}
    html = (read_out / "report.html").read_text()
    assert "data:image/png;base64," in html and "Not a diagnosis" in html
    assert "<script" not in html and "http" not in html  # self-contained, nothing fetched


def test_replay_reproduces_an_identical_report(read_out, tmp_path):
    again = tmp_path / "again"
    done = run_cli("replay", read_out / "trajectory.json", "--out", again)
    assert done.returncode == 0, done.stderr
    assert (again / "report.json").read_bytes() == (read_out / "report.json").read_bytes()
    assert sorted(p.name for p in (again / "evidence").iterdir()) == sorted(
        p.name for p in (read_out / "evidence").iterdir()
    )


def test_demo_reads_the_sample_study(tmp_path):
    done = run_cli("demo", "--out", tmp_path / "demo")
    assert done.returncode == 0, done.stderr
    folder = tmp_path / "demo" / "report"
    assert f"report: {folder / 'report.html'}" in done.stdout
    report = json.loads((folder / "report.json").read_text())
    page = (folder / "report.html").read_text()
    assert report["findings"], "the demo read found nothing"
    # What a user checks: each finding on the page under its number, and measured.
    for number, finding in enumerate(report["findings"], 1):
        assert (
            f"<h3>Finding {number} <span class='muted'>(AI-generated, not a diagnosis)</span>"
            f"</h3><p class='text'>{html.escape(finding['text'])}</p>" in page
        )
        measured = {m["name"]: (m["value"], m["unit"]) for m in finding["measurements"]}
        assert finding["evidence"] and measured["area"][1] == "mm2" and measured["area"][0] > 0
        assert measured["long axis"][1] == "mm" and measured["long axis"][0] > 0
        assert all(unit for _, unit in measured.values())
        assert f"<td>area</td><td>{measured['area'][0]:g}</td>" in page
    assert html.escape(report["disclaimer"]) in page


def test_doctor_is_green_on_a_working_setup(tmp_path):
    done = run_cli("doctor", "--out", tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    for text in ("JPEG 2000", "GiB free", "smoke read", "2 finding(s)", "ready"):
        assert text in done.stdout, text
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # a check leaves nothing behind


def test_doctor_is_red_on_a_broken_config_or_model(exported, tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text("[gateway]\nport = 'eleven'\n")
    done = run_cli("doctor", "--out", tmp_path, "--config", config)
    assert done.returncode == 1 and "not ready: config" in done.stdout
    damaged = tmp_path / "model"
    shutil.copytree(exported, damaged)
    with open(damaged / "mmproj-f16.gguf", "r+b") as handle:
        handle.seek(100)
        byte = handle.read(1)[0]
        handle.seek(100)
        handle.write(bytes([byte ^ 0xFF]))
    done = run_cli("doctor", "--out", tmp_path, "--models", damaged)
    assert done.returncode == 1 and "mmproj-f16.gguf hash differs" in done.stdout


def _copy(names: list[str], folder: Path) -> Path:
    folder.mkdir()
    for name in names:
        shutil.copy(bundled(name), folder / name)
    return folder


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: tmp / "missing", "does not exist"),
        (lambda tmp: (tmp / "empty").mkdir() or tmp / "empty", "no files found"),
        (
            lambda tmp: _copy(
                ["no_meta.dcm", "MR_truncated.dcm", "rtplan_truncated.dcm"], tmp / "bad"
            ),
            "no readable DICOM images",
        ),
    ],
    ids=["missing", "empty", "only-bad-files"],
)
def test_bad_input_exits_2_with_one_line(tmp_path, make, message):
    done = run_cli("read", make(tmp_path), "--out", tmp_path / "out")
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "out" / "report.json").exists()


def test_bad_files_beside_good_ones_are_named_and_skipped(tmp_path):
    folder = _copy(
        ["CT_small.dcm", "no_meta.dcm", "MR_truncated.dcm", "rtplan_truncated.dcm"],
        tmp_path / "mixed",
    )
    done = run_cli("read", folder, "--out", tmp_path / "out")
    assert done.returncode == 0, done.stderr
    for name in ("no_meta.dcm", "MR_truncated.dcm", "rtplan_truncated.dcm"):
        assert name in done.stderr
    assert (tmp_path / "out" / "report.json").is_file()


def test_bad_config_and_unknown_policy_exit_2(sample_study, tmp_path):
    config = tmp_path / "edge-agent.toml"
    config.write_text("[budget]\nmax_turn = 3\n")
    done = run_cli("read", sample_study, "--out", tmp_path / "o", "--config", config)
    assert done.returncode == 2 and "unknown key(s) max_turn" in done.stderr
    config.write_text("[budget]\nmax_turns = 'three'\n")
    done = run_cli("read", sample_study, "--out", tmp_path / "o", "--config", config)
    assert done.returncode == 2 and "config.budget.max_turns: expected int" in done.stderr
    done = run_cli("read", sample_study, "--out", tmp_path / "o", "--policy", "gpt")
    assert done.returncode == 2 and "policy 'gpt' is not available" in done.stderr
    done = run_cli("read", sample_study, "--out", tmp_path / "o", "--policy", "llama-cpp")
    assert done.returncode == 2
    assert "--policy llama-cpp needs a model file: give --model" in done.stderr
    assert "--mmproj" in done.stderr and "Traceback" not in done.stderr
    done = run_cli("read", sample_study, "--out", tmp_path / "o", "--policy", "onnx-trt")
    assert done.returncode == 2 and "--policy onnx-trt needs a model folder" in done.stderr


def test_a_model_policy_without_its_extra_is_one_line_exit_2(sample_study, tmp_path):
    """As on an install without the `llm` extra: llama_cpp cannot be imported."""
    for name in ("model.gguf", "mmproj.gguf"):
        (tmp_path / name).write_bytes(b"GGUF")
    argv = ["read", str(sample_study), "--out", str(tmp_path / "o"), "--policy", "llama-cpp"]
    argv += ["--model", str(tmp_path / "model.gguf"), "--mmproj", str(tmp_path / "mmproj.gguf")]
    done = console_script("sys.modules['llama_cpp'] = None", *argv)
    assert done.returncode == 2, done.stderr
    assert "--policy llama-cpp needs llama_cpp, which is not installed" in done.stderr
    assert "edge-agent[llm]" in done.stderr and "Traceback" not in done.stderr


# What only a model read needs: prompt formats, the model session, decoders, back ends, sampling.
MODEL_MODULES = (
    "edge_agent.policies.llama_cpp",
    "edge_agent.policies.onnx_trt",
    "edge_agent.policies.session",
    "edge_agent.formats",
    "edge_agent.gguf_model",
    "edge_agent.llama_sampler",
    "edge_agent.grammar",
    "edge_agent.onnx_decoder",
    "edge_agent.vision_inputs",
    "edge_agent.model_followup",
)


def test_a_protocol_read_of_a_folder_loads_neither_network_stack_nor_model_code(
    sample_study, tmp_path
):
    """Only `read --pacs` talks DICOM networking, and the configuration holds every policy's
    settings without their code: a protocol read of a folder runs with pynetdicom and every
    model module unimportable."""
    blocked = "".join(f"sys.modules[{name!r}] = None\n" for name in ("pynetdicom", *MODEL_MODULES))
    out = tmp_path / "o"
    done = console_script(
        blocked, "read", str(sample_study), "--policy", "protocol", "-o", str(out)
    )
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "report.json").read_text())["findings"]


def test_a_read_whose_stderr_is_no_terminal_runs_without_the_progress_bar(sample_study, tmp_path):
    """The loading bar is transient: off a terminal it would show nothing, so a read whose
    stderr is a pipe (a script, a job) runs with rich's progress module unimportable, and
    prints the same trail."""
    argv = ["read", str(sample_study), "--policy", "protocol", "-o"]
    done = console_script("sys.modules['rich.progress'] = None", *argv, str(tmp_path / "a"))
    assert done.returncode == 0, done.stderr
    again = console_script("", *argv, str(tmp_path / "b"))
    assert done.stdout.replace("/a/", "/b/") == again.stdout and "report: " in done.stdout
    assert done.stderr == again.stderr


def test_config_budget_is_obeyed(sample_study, tmp_path):
    config = tmp_path / "edge-agent.toml"
    config.write_text("[budget]\nmax_turns = 2\n")
    done = run_cli("read", sample_study, "--out", tmp_path / "o", "--config", config)
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["answer"] is None and report["findings"] == []
    assert report["end"] == {
        "reason": "max_turns",
        "detail": "2 tool calls without an answer",
        "summary": "Stopped before an answer: the limit on tool calls was reached (2 tool calls "
        "without an answer).",
    }
    page = (tmp_path / "o" / "report.html").read_text()
    assert "No answer. Stopped before an answer: the limit on tool calls was reached" in page


def test_replay_of_a_damaged_trajectory_exits_2(read_out, tmp_path):
    damaged = read_out / "trajectory.json"
    data = json.loads(damaged.read_text())
    data["images"][0]["file"] = "../../etc/passwd.png"
    damaged.write_text(json.dumps(data))
    done = run_cli("replay", damaged, "--out", tmp_path / "r")
    assert done.returncode == 2 and "not an evidence/NAME.png path" in done.stderr
    damaged.write_text("{")
    done = run_cli("replay", damaged, "--out", tmp_path / "r")
    assert done.returncode == 2 and "not JSON" in done.stderr


def test_a_path_like_study_uid_for_pacs_is_bad_input_before_any_association(tmp_path):
    done = run_cli("read", "--pacs", "PACS@127.0.0.1:9", "--study", "../x", "--out", tmp_path)
    assert done.returncode == 2, done.stderr
    assert "Study Instance UID '../x' is not a valid UID" in done.stderr
    assert "internal error" not in done.stderr


def test_read_help_names_the_config_table_and_the_policies():
    done = subprocess.run(
        [str(Path(sys.executable).parent / "edge-agent"), "read", "--help"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert done.returncode == 0, done.stderr
    assert "protocol, llama-cpp or onnx-trt; overrides [policy] name in the config" in done.stdout


def test_the_cli_keeps_pydicoms_value_warnings_out_and_shows_other_warnings():
    # pydicom quotes the value it warns about: a patient's name here, in a field it does not fit
    code = (
        "from pydicom.dataelem import DataElement\n"
        "from edge_agent.cli.terminal import setup\n"
        "setup(None, False)\n"
        "DataElement(0x00080018, 'UI', 'Doe^Jane')\n"
        "import warnings; warnings.warn('another library speaks', RuntimeWarning)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "Doe^Jane" not in done.stderr + done.stdout
    assert "another library speaks" in done.stderr
