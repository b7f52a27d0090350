"""`doctor` checks model folders through the shared model folder type: damage is a red line."""

from __future__ import annotations

from imaging.model_folder import ModelFolder
from tests.support import run_cli


def test_doctor_is_red_on_a_damaged_manifest_without_a_traceback(tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")  # one table row per check, however long the path
    good, damaged = tmp_path / "models" / "good", tmp_path / "models" / "damaged"
    for folder in (good, damaged):
        folder.mkdir(parents=True)
        (folder / "graph.onnx").write_bytes(b"graph")
        ModelFolder.write(folder, format="edge-agent locate onnx 1", roles={"graph.onnx": "model"})
    (damaged / "manifest.json").write_text('{"format": "edge-agent locate onnx 1", "files": [')
    red, green = doctor_rows(tmp_path, "damaged", "good")
    assert "FAIL" in red and "damaged/manifest.json is not valid JSON" in red
    assert "FAIL" not in green and "1 file(s) match the manifest" in green


def test_doctor_is_red_on_a_manifest_naming_a_profile_this_build_lacks(tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")
    known, unknown = tmp_path / "models" / "known", tmp_path / "models" / "unknown"
    for folder, profile in ((known, "ophiuchus-v1"), (unknown, "ophiuchus-v9")):
        folder.mkdir(parents=True)
        (folder / "model.gguf").write_bytes(b"GGUF")
        ModelFolder.write(
            folder, format="edge-agent gguf export 1", roles={"model.gguf": "text"}, profile=profile
        )
    red, green = doctor_rows(tmp_path, "unknown", "known")
    assert "FAIL" in red and "no profile named 'ophiuchus-v9'" in red
    assert "FAIL" not in green and "profile ophiuchus-v1" in green


def doctor_rows(tmp_path, red: str, green: str) -> tuple[str, str]:
    """`doctor --models tmp_path/models`, red only for the folder `red`: its row and `green`'s."""
    done = run_cli("doctor", "--out", tmp_path, "--models", tmp_path / "models")
    assert done.returncode == 1 and "Traceback" not in done.stdout + done.stderr
    assert f"not ready: model {red}\n" in done.stdout  # and for nothing else
    [red_row], [green_row] = (
        [line for line in done.stdout.splitlines() if f"│ model {name} " in line]
        for name in (red, green)
    )
    return red_row, green_row
