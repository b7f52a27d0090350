"""`export gguf` takes paths relative to where it is run, as every command does."""

from __future__ import annotations

import json
import shutil

from tests.support import run_cli


def test_export_gguf_with_relative_folders(tiny, tmp_path):
    shutil.copytree(tiny, tmp_path / "hf")
    done = run_cli(
        "export", "gguf", "hf", "--out", "gguf", "--pre-tokenizer", "qwen2", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    manifest = json.loads((tmp_path / "gguf" / "manifest.json").read_text())
    for entry in manifest["files"]:
        assert (tmp_path / "gguf" / entry["name"]).read_bytes()[:4] == b"GGUF"
