"""The GGUF pair the llama_cpp policy loads is checked before llama.cpp sees it: not GGUF, or not
what the manifest beside it lists, is a ModelLoadError (exit 2); a bare GGUF loads, unverified."""

from __future__ import annotations

import logging

import pytest

from edge_agent.gguf_model import FORMAT, checked_gguf
from imaging.errors import ModelLoadError
from imaging.model_folder import ModelFolder
from tests.support import run_cli


@pytest.fixture
def export(tmp_path):
    """A folder laid out as `export gguf` writes it (the files only need the GGUF magic here)."""
    folder = tmp_path / "gguf"
    folder.mkdir()
    (folder / "model-f16.gguf").write_bytes(b"GGUF" + b"text weights" * 8)
    (folder / "mmproj-f16.gguf").write_bytes(b"GGUF" + b"vision weights" * 8)
    ModelFolder.write(
        folder,
        format=FORMAT,
        roles={"model-f16.gguf": "text", "mmproj-f16.gguf": "mmproj"},
        profile="ophiuchus-v1",
    )
    return folder


def test_files_matching_their_manifest_are_verified_and_name_the_profile(export):
    files = checked_gguf(export / "model-f16.gguf", export / "mmproj-f16.gguf")
    listed = ModelFolder.read(export).manifest
    assert files.verified and files.profile == "ophiuchus-v1"
    assert (files.sha256, files.mmproj_sha256) == tuple(f.sha256 for f in listed.files)


def test_a_changed_gguf_beside_its_manifest_is_refused(export):
    mmproj = export / "mmproj-f16.gguf"
    data = bytearray(mmproj.read_bytes())
    data[-1] ^= 0xFF
    mmproj.write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match=r"mmproj-f16\.gguf does not match the SHA-256"):
        checked_gguf(export / "model-f16.gguf", mmproj)


def test_swapped_or_unlisted_files_are_refused(export):
    with pytest.raises(ModelLoadError, match=r"is the export's mmproj file, not its text"):
        checked_gguf(export / "mmproj-f16.gguf", export / "model-f16.gguf")
    (export / "model-q2_k.gguf").write_bytes(b"GGUF hand-made")
    with pytest.raises(ModelLoadError, match=r"lists no file 'model-q2_k\.gguf'"):
        checked_gguf(export / "model-q2_k.gguf", export / "mmproj-f16.gguf")


def test_a_bare_gguf_loads_unverified_and_says_so(tmp_path, caplog):
    model, mmproj = tmp_path / "model.gguf", tmp_path / "mmproj.gguf"
    model.write_bytes(b"GGUF model")
    mmproj.write_bytes(b"GGUF mmproj")
    with caplog.at_level(logging.WARNING, logger="edge_agent.gguf_model"):
        files = checked_gguf(model, mmproj)
    assert not files.verified and files.profile == "" and len(files.sha256) == 64
    assert "not verified against an export" in caplog.text


def test_a_file_that_is_not_gguf_exits_2_with_one_line(sample_study, tmp_path):
    model, mmproj = tmp_path / "notgguf", tmp_path / "x"
    model.write_text("these are not model weights\n")
    mmproj.write_bytes(b"GGUF")
    done = run_cli(
        "read", sample_study, "--out", tmp_path / "out",
        "--policy", "llama-cpp", "--model", model, "--mmproj", mmproj,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "notgguf is not a GGUF file" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
